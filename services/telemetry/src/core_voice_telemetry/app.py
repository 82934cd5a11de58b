"""Running telemetry: stream consumers plus the /metrics endpoint."""

import asyncio
import contextlib
import logging
import signal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core_voice_contracts.bus import connect
from core_voice_telemetry.consumer import FEEDS, consume
from core_voice_telemetry.metrics import Metrics
from core_voice_telemetry.settings import TelemetrySettings

log = logging.getLogger(__name__)


def make_app(metrics: Metrics) -> web.Application:
    async def handle_metrics(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", handle_health)
    return app


async def serve(settings: TelemetrySettings, stop: asyncio.Event) -> None:
    nc, js = await connect(settings.nats_url, name="telemetry")
    metrics = Metrics()
    tasks = [
        asyncio.create_task(consume(js, metrics, feed, settings.consumer_prefix, stop))
        for feed in FEEDS
    ]
    runner = web.AppRunner(make_app(metrics), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    log.info("telemetry ready", extra={"host": settings.http_host, "port": settings.http_port})
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        await nc.drain()
    log.info("telemetry stopped")


async def main() -> None:
    settings = TelemetrySettings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)
