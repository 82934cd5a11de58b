"""Running telemetry: stream consumers plus the /metrics endpoint."""

import asyncio
import contextlib
import logging
import signal

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core_voice_contracts.bus import connect
from core_voice_contracts.settings import settings_or_exit
from core_voice_contracts.tasks import TaskSet
from core_voice_telemetry.consumer import FEEDS, poll_pending, run_feed
from core_voice_telemetry.metrics import Metrics
from core_voice_telemetry.replay import replay_state
from core_voice_telemetry.settings import TelemetrySettings
from core_voice_telemetry.workers import subscribe_workers

SWEEP_S = 1.0
"""How often config propagations past their window are given up on."""
STOP_TIMEOUT_S = 5.0
"""On stop, how long the feeds and chores may take to finish before they are cancelled."""

log = logging.getLogger(__name__)


def make_app(
    metrics: Metrics, feeds: dict[str, str] | None = None, tasks: TaskSet | None = None
) -> web.Application:
    """/metrics, and /healthz: 503 unless every feed in ``feeds`` (name -> state, kept
    by `run_feed`) is ``ok`` and no task in ``tasks`` died, so a consumer or chore that
    failed is visible, not silently gone (named in ``dead_tasks``, absent while none died)."""

    async def handle_metrics(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_health(request: web.Request) -> web.Response:
        states = dict(feeds or {})
        dead = tasks.dead if tasks is not None else []
        ok = all(state == "ok" for state in states.values()) and not dead
        body: dict[str, object] = {"status": "ok" if ok else "degraded", "feeds": states}
        if dead:
            body["dead_tasks"] = dead
        return web.Response(
            body=msgspec.json.encode(body),
            content_type="application/json",
            status=200 if ok else 503,
        )

    app = web.Application()
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", handle_health)
    return app


async def serve(settings: TelemetrySettings, stop: asyncio.Event) -> None:
    nc, js = await connect(settings.nats_access(), name="telemetry")
    metrics = Metrics(
        max_agents=settings.max_agents,
        max_campaigns=settings.max_campaigns,
        max_versions=settings.max_config_versions,
        active_lookback_s=settings.active_lookback_s,
        propagation_window_s=settings.propagation_window_s,
    )
    # State first (routed agents, calls in progress), then the counting consumers.
    await replay_state(js, metrics, settings.active_lookback_s)
    await subscribe_workers(nc, metrics)
    states = {feed.suffix: "starting" for feed in FEEDS}
    tasks = TaskSet()

    def ended(task: "asyncio.Task[None]") -> None:
        if not stop.is_set():  # run_feed returns only on stop: anything else is a bug
            states[task.get_name()] = "stopped"
            log.error("event feed stopped", extra={"feed": task.get_name()})

    for feed in FEEDS:
        tasks.spawn(
            run_feed(js, metrics, feed, settings.consumer_prefix, stop, states=states),
            name=feed.suffix,
        ).add_done_callback(ended)
    tasks.spawn(
        poll_pending(js, metrics, settings.consumer_prefix, stop, settings.pending_interval_s),
        name="pending",
    )
    tasks.spawn(_sweep(metrics, stop), name="sweep")
    runner = web.AppRunner(make_app(metrics, states, tasks), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    log.info("telemetry ready", extra={"host": settings.http_host, "port": settings.http_port})
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await tasks.drain(STOP_TIMEOUT_S)
        await nc.drain()
    log.info("telemetry stopped")


async def _sweep(metrics: Metrics, stop: asyncio.Event) -> None:
    while not stop.is_set():
        metrics.propagation.sweep()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=SWEEP_S)


async def main() -> None:
    settings = settings_or_exit(TelemetrySettings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)
