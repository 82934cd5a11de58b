"""The running config_sync process: wires the parts together and owns their lifetime.

Start order: database (migrate) → NATS (streams ensured) → cache evictor → bus
endpoints (``voice.config.get``, ``voice.routing.resolve``) → outbox relay → HTTP. Stop
order is the reverse; NATS is drained last so in-flight replies and acks go out.

Every commit made through the API is followed by ``committed`` before the API answers:
the routing answers are cleared and the outbox relay is woken.
"""

import asyncio
import contextlib
import gc
import logging
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import TypeVar

import uvicorn
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from core_voice_config_sync import __version__
from core_voice_config_sync.agent_repository import AgentRepository
from core_voice_config_sync.agents import AgentService
from core_voice_config_sync.api import create_app
from core_voice_config_sync.auth import StaticTokens, StoredTokens
from core_voice_config_sync.bus_endpoints import BusEndpoints
from core_voice_config_sync.cache import RuntimeConfigCache
from core_voice_config_sync.cache_evictor import CacheEvictor
from core_voice_config_sync.campaign_repository import CampaignRepository
from core_voice_config_sync.campaigns import CampaignService
from core_voice_config_sync.crypto import KeyRing
from core_voice_config_sync.db import Database, create_engine, migrate, ping
from core_voice_config_sync.metrics import ConfigSyncMetrics, MetricsMiddleware
from core_voice_config_sync.number_repository import NumberRepository
from core_voice_config_sync.operators import OperatorRepository, OperatorService
from core_voice_config_sync.outbox import OutboxRepository
from core_voice_config_sync.relay import OutboxRelay
from core_voice_config_sync.route_repository import RouteRepository
from core_voice_config_sync.routing import RoutingService
from core_voice_config_sync.runtime_entries import RuntimeEntries
from core_voice_config_sync.sealed_keys import SealedKeyRepository
from core_voice_config_sync.settings import Settings
from core_voice_config_sync.tokens import TokenRepository, TokenService
from core_voice_config_sync.validator import Validator
from core_voice_contracts import bus
from core_voice_contracts.admin_api import HealthView
from core_voice_contracts.tasks import TaskSet

log = logging.getLogger(__name__)

T = TypeVar("T")

NATS_CLIENT_NAME = "config-sync"
HTTP_DRAIN_S = 5
HEALTH_DB_TIMEOUT_S = 2.0


class HttpServer(uvicorn.Server):
    """uvicorn minus its own signal handling (the service owns SIGTERM/SIGINT), plus a
    callback once the socket is listening, with the real bound address."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[str, int], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.servers and self.servers[0].sockets:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            self._on_started(str(host), int(port))


class _StoppedDuringStartup(Exception):
    """A stop signal arrived while a startup step (e.g. waiting for NATS) was pending."""


async def _unless_stopped(step: Awaitable[T], stop: asyncio.Event) -> T:
    """Await ``step`` unless ``stop`` is set first; startup waits on NATS forever."""
    task = asyncio.ensure_future(step)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise _StoppedDuringStartup
    return task.result()


def health_check(
    engine: AsyncEngine, nc: Client, refused: Mapping[str, int], tasks: TaskSet
) -> Callable[[], Awaitable[HealthView]]:
    """/healthz: the database and NATS answer, and no background task (the outbox relay)
    has died; a dead one is named in ``dead_tasks``."""

    async def check() -> HealthView:
        checks = {
            "database": "ok",
            "nats": "ok" if nc.is_connected else "unavailable",
            "tasks": "dead" if tasks.dead else "ok",
        }
        try:
            await asyncio.wait_for(ping(engine), HEALTH_DB_TIMEOUT_S)
        except Exception:  # any failure means "not healthy", never a 500
            checks["database"] = "unavailable"
        ok = all(v == "ok" for v in checks.values())
        return HealthView(
            status="ok" if ok else "unavailable",
            checks=checks,
            refused=dict(refused),
            dead_tasks=tasks.dead,
        )

    return check


async def _check_sealed_keys(repository: SealedKeyRepository, keyring: KeyRing | None) -> None:
    """Say at startup, by key id only, if stored provider keys cannot be opened."""
    sealed = await repository.sealed_key_ids()
    known = keyring.ids if keyring is not None else frozenset()
    missing = sorted(set(sealed) - known)
    if missing:
        log.error(
            "provider keys sealed with master keys not in the key ring",
            extra={"key_ids": missing, "versions": sum(sealed[k] for k in missing)},
        )
    if keyring is not None:
        stale = sum(n for k, n in sealed.items() if k != keyring.active_id and k in known)
        if stale:
            log.info(
                "provider keys not yet under the active master key; run reencrypt",
                extra={"active_key_id": keyring.active_id, "versions": stale},
            )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (or the HTTP server exits), then shut down cleanly."""
    engine = create_engine(settings.database_url)
    tasks = TaskSet()
    nc: Client | None = None
    endpoints: BusEndpoints | None = None
    evictor: CacheEvictor | None = None
    try:
        await _unless_stopped(migrate(engine), stop)
        db = Database(engine)
        keyring = settings.keyring()
        repository = AgentRepository(db)
        campaign_repository = CampaignRepository(db)
        token_repository = TokenRepository(db)
        if await repository.ensure_tenant(settings.default_tenant):
            log.info("default tenant created", extra={"tenant_id": settings.default_tenant})
        await _check_sealed_keys(SealedKeyRepository(db), keyring)
        metrics = ConfigSyncMetrics()
        routing = RoutingService(RouteRepository(db), metrics)

        entries = RuntimeEntries(repository, keyring)
        cache = RuntimeConfigCache(entries.load, metrics)

        relays: list[OutboxRelay] = []

        def events_missed() -> None:  # change events may be missed while disconnected
            routing.invalidate()
            cache.clear()

        def reconnected() -> None:
            events_missed()
            for waiting in relays:  # edits made during the outage go out now, not next sweep
                waiting.wake()

        client, js = await _unless_stopped(
            bus.connect(
                settings.nats_access(),
                name=NATS_CLIENT_NAME,
                on_disconnected=events_missed,
                on_reconnected=reconnected,
            ),
            stop,
        )
        nc = client
        relay = OutboxRelay(
            OutboxRepository(db),
            js,
            sweep_s=settings.outbox_sweep_s,
            retention_s=settings.outbox_retention_s,
            metrics=metrics,
            echo=nc,
        )
        relays.append(relay)

        def committed() -> None:
            routing.invalidate()
            relay.wake()

        agents = AgentService(
            repository,
            cache,
            entries,
            keyring=keyring,
            validator=Validator(
                platform_keys=settings.platform_keys(),
                outbound=settings.outbound_policy(),
            ),
            on_commit=committed,
        )
        campaigns = CampaignService(
            campaign_repository,
            agents,
            cache,
            numbers=NumberRepository(db),
            on_commit=committed,
        )
        operators = OperatorService(OperatorRepository(db), on_commit=committed)
        authenticator = StoredTokens(
            StaticTokens(
                admin=settings.admin_token,
                runtime=settings.runtime_token,
                default_tenant=settings.default_tenant,
            ),
            token_repository.by_hash,
            max_stale_s=settings.token_max_stale_s,
        )
        refused: Counter[str] = Counter()
        evictor = CacheEvictor(cache, routing, refused=refused, metrics=metrics)
        await evictor.start(client)
        endpoints = BusEndpoints(client, agents, routing, refused, metrics)
        await endpoints.start()
        tasks.spawn(relay.run(), name="outbox-relay")

        app = create_app(
            agents=agents,
            campaigns=campaigns,
            operators=operators,
            tokens=TokenService(token_repository, authenticator),
            authenticator=authenticator,
            health=health_check(engine, client, refused, tasks),
            max_body_bytes=settings.max_body_bytes,
            version=__version__,
            metrics=metrics,
        )

        def ready(host: str, port: int) -> None:
            # Everything built at startup is long-lived: keep it out of the collector's
            # full passes, which otherwise show up as multi-ms pauses in p99 latencies.
            gc.collect()
            gc.freeze()
            log.info("config_sync ready", extra={"host": host, "port": port})

        server = HttpServer(
            uvicorn.Config(
                MetricsMiddleware(app, metrics),
                host=settings.http_host,
                port=settings.http_port,
                lifespan="off",
                http="httptools",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=HTTP_DRAIN_S,
            ),
            on_started=ready,
        )

        async def _stop_http() -> None:
            await stop.wait()
            server.should_exit = True

        tasks.spawn(_stop_http(), name="http-stopper")
        await server.serve()
        log.info("config_sync stopping")
    except _StoppedDuringStartup:
        log.info("config_sync stopped before it was ready")
    finally:
        if endpoints is not None:
            await endpoints.stop()
        if evictor is not None:
            await evictor.stop()
        await tasks.cancel_all()
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.drain(), 5.0)
        await engine.dispose()
        log.info("config_sync stopped")
