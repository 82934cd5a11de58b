"""Running the dispatcher: webhook endpoint, dispatch consumer and replays in one process.

``DISPATCHER_ROLE`` splits them when ingestion and dispatch should scale apart. SIGTERM
stops taking webhooks and jobs, lets in-flight ones finish for ``drain_timeout_s``, and
hands the rest back to JetStream (they are redelivered, never lost).
"""

import asyncio
import contextlib
import gc
import logging
import signal
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from jwt.warnings import InsecureKeyLengthWarning
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from core_voice_contracts.bus import connect
from core_voice_contracts.events import JobAccepted
from core_voice_contracts.settings import exit_settings, settings_or_exit
from core_voice_contracts.streams import VOICE_JOBS
from core_voice_contracts.tasks import TaskSet
from core_voice_dispatcher.calls import WorkerLostReports
from core_voice_dispatcher.capacity import follow_accepted_jobs
from core_voice_dispatcher.consumer import LiveConsumer
from core_voice_dispatcher.dispatch import Dispatcher
from core_voice_dispatcher.errors import ConfigurationError
from core_voice_dispatcher.livekit_client import LiveKitClient
from core_voice_dispatcher.metrics import METRICS_PATH, DispatcherMetrics
from core_voice_dispatcher.replay import Replays
from core_voice_dispatcher.route_memory import follow_config_events
from core_voice_dispatcher.settings import DispatcherSettings, Role, check_against_stream
from core_voice_dispatcher.unstarted import UnstartedCalls, agent_in_room
from core_voice_dispatcher.webhook_endpoint import WebhookEndpoint, make_app
from core_voice_dispatcher.webhook_verifier import WebhookVerifier

log = logging.getLogger(__name__)

MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash


async def _check_stream(settings: DispatcherSettings, js: JetStreamContext) -> None:
    info = await js.stream_info(VOICE_JOBS)
    window = info.config.duplicate_window
    check_against_stream(settings, float(window or 0.0))


def health_checks(
    connected: bool, consumer: "asyncio.Task[Any] | None", owned: Iterable[TaskSet]
) -> dict[str, str]:
    """/healthz's checks: the bus, the live consumer, and ``tasks: dead`` once an owned
    task died (a process whose background work died must not look healthy; absent while
    none did, so a healthy body is as it was)."""
    checks = {"nats": "ok" if connected else "disconnected"}
    if consumer is not None:
        checks["consumer"] = "ok" if not consumer.done() else "stopped"
    if any(owner.dead for owner in owned):
        checks["tasks"] = "dead"
    return checks


def dead_tasks(owned: Iterable[TaskSet]) -> dict[str, object]:
    """/healthz's ``dead_tasks`` (name and exception type, as every service names them)
    once an owned task died; nothing while none did."""
    dead = [task for owner in owned for task in owner.dead]
    return {"dead_tasks": msgspec.to_builtins(dead)} if dead else {}


async def serve(settings: DispatcherSettings, stop: asyncio.Event) -> None:
    nc, js = await connect(settings.nats_access(), name="dispatcher")
    try:
        await _serve(settings, stop, nc, js)
    finally:
        with contextlib.suppress(NatsError, TimeoutError):
            await nc.drain()


async def _serve(
    settings: DispatcherSettings, stop: asyncio.Event, nc: Client, js: JetStreamContext
) -> None:
    await _check_stream(settings, js)
    secret = settings.livekit_api_secret.get_secret_value()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        # Said once here, instead of PyJWT warning on every request (livekit --dev: 6 bytes).
        log.warning("livekit api secret is short", extra={"min_bytes": MIN_SECRET_BYTES})
    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
    metrics = DispatcherMetrics()
    lk: LiveKitClient | None = None
    dispatcher: Dispatcher | None = None
    if settings.role != Role.INGEST:
        lk = LiveKitClient(
            settings.livekit_http_url,
            settings.livekit_api_key,
            secret,
            timeout=aiohttp.ClientTimeout(total=settings.livekit_timeout_s),
            metrics=metrics,
        )
        dispatcher = Dispatcher(settings, nc, js, lk)
    endpoint: WebhookEndpoint | None = None
    calls = WorkerLostReports(js, settings.worker_lost_grace_s)
    unstarted = UnstartedCalls(calls, agent_in_room=None if lk is None else agent_in_room(lk))
    accepted_sinks: list[Callable[[JobAccepted], None]] = [unstarted.note_accepted]
    capacity = dispatcher.capacity if dispatcher is not None else None
    if capacity is not None:
        unstarted.status_sinks.append(capacity.pools.note_status)
    await unstarted.follow(nc)
    if capacity is not None:
        capacity.taken_unseen = unstarted.note_taken
        accepted_sinks.append(lambda event: capacity.note_accepted(event.job_id))
    accepted = await follow_accepted_jobs(
        nc, accepted_sinks, dispatcher.poison if dispatcher is not None else None
    )
    if settings.role != Role.DISPATCH:
        verifier = WebhookVerifier(
            settings.livekit_api_key,
            secret,
            max_age_s=settings.webhook_max_age_s,
            max_skew_s=settings.max_clock_skew_s,
        )
        prefetcher = dispatcher.prefetches if dispatcher is not None and settings.prefetch else None
        endpoint = WebhookEndpoint(
            verifier, js, prefetcher=prefetcher, calls=calls, metrics=metrics
        )

    live: LiveConsumer | None = None
    replays: Replays | None = None
    tasks = TaskSet()
    consumer: asyncio.Task[Any] | None = None
    consumer_metrics: asyncio.Task[Any] | None = None
    config_events: list[JetStreamContext.PushSubscription] = []
    if dispatcher is not None:
        if dispatcher.memory is not None:
            config_events = await follow_config_events(js, dispatcher.memory, dispatcher.poison)
        if dispatcher.capacity is not None:
            metrics.capacity_waiting.set_function(dispatcher.capacity.waiting)
        live = LiveConsumer(settings, js, dispatcher.handle)
        await live.start()
        replays = Replays(settings, js, dispatcher)
        consumer = tasks.spawn(live.run(), name="dispatch-consumer")
        tasks.spawn(replays.run(), name="replay-watcher")
        consumer_metrics = tasks.spawn(
            metrics.follow_consumer(
                js,
                VOICE_JOBS,
                settings.consumer_name,
                settings.consumer_metrics_interval_s,
            ),
            name="consumer-metrics",
        )

    owned = [tasks]
    owned += [calls.tasks] if calls is not None else []
    owned += [live.retiring] if live is not None else []
    owned += [replays.tasks] if replays is not None else []
    if dispatcher is not None and dispatcher.capacity is not None:
        owned.append(dispatcher.capacity.tasks)

    def health() -> dict[str, str]:
        return health_checks(nc.is_connected, consumer, owned)

    def details() -> dict[str, object]:
        found = dead_tasks(owned)
        found["calls"] = dict(calls.counts) | {"pending_checks": calls.pending()}
        found["unstarted_calls"] = dict(unstarted.counts) | {"followed": unstarted.followed()}
        if dispatcher is None:
            return found
        found["prefetch"] = dict(dispatcher.prefetches.counts)
        found["poison"] = dict(dispatcher.poison)
        found["served_lookups"] = dict(dispatcher.served_lookups)
        listing = dispatcher.lk.room_listing
        found["room_lookups"] = {"looked_up": listing.looked_up, "list_calls": listing.calls}
        found["routing"] = dict(dispatcher.routing_counts) | {
            "remembered": len(dispatcher.memory) if dispatcher.memory is not None else 0
        }
        if dispatcher.capacity is not None:
            found["capacity"] = dict(dispatcher.capacity.counts) | {
                "waiting": dispatcher.capacity.waiting()
            }
        return found

    app = make_app(endpoint, max_body_bytes=settings.max_body_bytes, health=health, details=details)
    app.router.add_get(METRICS_PATH, metrics.handle)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=settings.drain_timeout_s
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port, backlog=1024)
    await site.start()
    log.info(
        "dispatcher ready",
        extra={"host": settings.http_host, "port": settings.http_port, "role": settings.role.value},
    )
    # The startup heap (~65k objects: livekit, protobuf, aiohttp, pydantic) stays for the
    # life of the process; a full collection scanning it stalled every job in flight for
    # 25-35 ms here. Frozen, later full collections scan only what was created since.
    gc.collect()
    gc.freeze()
    try:
        await stop.wait()
    finally:
        log.info("dispatcher stopping")
        await runner.cleanup()  # no new webhooks; in-flight ones finish
        if consumer_metrics is not None:
            consumer_metrics.cancel()
        await unstarted.close()
        await calls.close()
        if live is not None and replays is not None:
            live.stop()
            replays.stop()
            await live.drain(settings.drain_timeout_s)
            await replays.wait()
        await tasks.cancel_all()
        if dispatcher is not None and dispatcher.capacity is not None:
            await dispatcher.capacity.close()  # waiting jobs go back to JetStream at once
        for sub in config_events:
            with contextlib.suppress(NatsError, TimeoutError):
                await sub.unsubscribe()
        with contextlib.suppress(NatsError, TimeoutError):
            await accepted.unsubscribe()
        if lk is not None:
            await lk.aclose()
    log.info("dispatcher stopped")


async def main() -> None:
    settings = settings_or_exit(DispatcherSettings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        settings.check()
        await serve(settings, stop)
    except ConfigurationError as exc:
        exit_settings(str(exc))
