"""Running the dispatcher: webhook endpoint + dispatch consumer in one process."""

import asyncio
import contextlib
import logging
import signal

from aiohttp import web
from livekit import api

from core_voice_contracts.bus import connect
from core_voice_dispatcher.dispatch import Dispatcher
from core_voice_dispatcher.ingest import make_app
from core_voice_dispatcher.settings import DispatcherSettings
from core_voice_dispatcher.webhook import WebhookVerifier

log = logging.getLogger(__name__)


async def serve(settings: DispatcherSettings, stop: asyncio.Event) -> None:
    nc, js = await connect(settings.nats_url, name="dispatcher")
    secret = settings.livekit_api_secret.get_secret_value()
    lk = api.LiveKitAPI(settings.livekit_http_url, settings.livekit_api_key, secret)
    verifier = WebhookVerifier(settings.livekit_api_key, secret)
    runner = web.AppRunner(make_app(verifier, js, settings.max_body_bytes), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    dispatcher = Dispatcher(settings, nc, js, lk)
    consumer = asyncio.create_task(dispatcher.run(), name="dispatch-consumer")
    log.info("dispatcher ready", extra={"host": settings.http_host, "port": settings.http_port})
    try:
        await stop.wait()
    finally:
        dispatcher.stop()
        await runner.cleanup()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(consumer, timeout=5)
        await lk.aclose()
        await nc.drain()
    log.info("dispatcher stopped")


async def main() -> None:
    settings = DispatcherSettings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)
