"""config_sync: runtime-config reads and edit → ``ConfigChanged``, on loopback.

Real and local: nats-server with JetStream, config_sync as its own process on SQLite
(the embedded default), an agent with a sealed provider key linked to a campaign, so
every read is the full merged runtime config a worker receives.

Measured, in one run:

- reads over NATS (``voice.config.get``, the workers' path) and over HTTP
  (``GET /api/v1/agents/{id}/runtime-config``): one at a time for p50 / p99, then many
  in flight for throughput;
- the baseline: the same read straight from the database (config_sync's own repository
  query on the same SQLite file, keys opened), as a cache miss would do it;
- edit → event: ``PATCH`` an agent over HTTP and time until its ``ConfigChanged``
  arrives on ``voice.config.changed.<agent_id>``, p50 / p99.

Targets: NATS read p99 <= 2 ms; edit → event p99 <= 20 ms (SQLite). Edit → event is also
measured on PostgreSQL (a local server with fsync on), for comparison.
"""

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from nats.aio.client import Client
from nats.aio.msg import Msg

from core_voice_cli.bench import Measure, percentile
from core_voice_cli.procs import ManagedProcess, free_port, http_ready
from core_voice_cli.servers import NatsServer, PostgresServer
from core_voice_cli.stack import config_sync_env
from core_voice_config_sync.agent_repository import AgentRepository
from core_voice_config_sync.crypto import KeyRing, generate_key
from core_voice_config_sync.db import Database, create_engine
from core_voice_config_sync.records import KeysState
from core_voice_config_sync.route_repository import RouteRepository
from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import NatsAccess, connect
from core_voice_contracts.events import ConfigFound, ConfigGetRequest
from core_voice_contracts.permissions import Role
from core_voice_contracts.routing import RouteRequest, RouteResolved
from core_voice_contracts.rpc import resolve_route
from core_voice_contracts.runtime_config import ProviderKeys

AGENT_ID = "bench-agent"
CAMPAIGN_ID = "bench-campaign"
ADMIN_TOKEN = "bench-admin-token-throwaway-0123456789"  # noqa: S105 - a throwaway server's
RUNTIME_TOKEN = "bench-runtime-token-throwaway-0123456789"  # noqa: S105
WARMUP = 200
READS = 3000
THROUGHPUT_S = 3.0
IN_FLIGHT = 32
EDITS = 300
NATS_P99_TARGET_MS = 2.0
EDIT_P99_TARGET_MS = 20.0


def _ms(values: list[float], pct: float) -> float:
    return percentile(values, pct) * 1000


async def _latencies(call: Callable[[], Awaitable[None]], n: int) -> list[float]:
    for _ in range(WARMUP):
        await call()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


async def _throughput(call: Callable[[], Awaitable[None]]) -> float:
    done = 0
    deadline = time.perf_counter() + THROUGHPUT_S

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return done / (time.perf_counter() - started)


def _start(
    workdir: Path, nats: NatsAccess, database_url: str, keys: str
) -> tuple[ManagedProcess, str]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **nats.env(),
        **config_sync_env(
            port=port,
            database_url=database_url,
            admin_token=ADMIN_TOKEN,
            runtime_token=RUNTIME_TOKEN,
            encryption_keys=keys,
            log_level="WARNING",
        ),
    }
    process = ManagedProcess(
        "config-sync",
        [sys.executable, "-m", "core_voice_config_sync"],
        env=env,
        log_dir=workdir,
        cwd=workdir,
        ready=http_ready(f"{base_url}/healthz"),
    )
    process.start().wait_ready(60)
    return process, base_url


async def _seed(admin: aiohttp.ClientSession) -> None:
    agent = {
        "id": AGENT_ID,
        "name": "Bench agent",
        "instructions": "You are a benchmark. " * 50,
        "llm": {"provider": "openai", "model": "gpt-4o-mini", "options": {"temperature": 0.3}},
        "tts": {"provider": "cartesia", "model": "sonic-3"},
        "keys": {"openai": "sk-bench-0000000000000000", "cartesia": "ck-bench-000000000000"},
    }
    link = {"weight": 1, "overrides": {"greeting": "Hello from the campaign."}}
    for method, path, body in (
        ("POST", "/api/v1/agents", agent),
        ("POST", "/api/v1/campaigns", {"id": CAMPAIGN_ID, "name": "Bench"}),
        ("PUT", f"/api/v1/campaigns/{CAMPAIGN_ID}/agents/{AGENT_ID}", link),
    ):
        async with admin.request(method, path, json=body) as response:
            response.raise_for_status()


async def run(workdir: Path) -> list[Measure]:
    nats_server = NatsServer(data_dir=workdir / "nats", log_dir=workdir)
    nats_process = nats_server.process().start().wait_ready(20)
    keys = f"k1:{generate_key()}"
    database_url = f"sqlite+aiosqlite:///{workdir / 'config_sync.db'}"
    service, base_url = _start(workdir, nats_server.access(Role.CONFIG_SYNC), database_url, keys)
    # As the services ask: a worker reads configs, the dispatcher routes, an operator watches.
    nc, _ = await connect(nats_server.access(Role.WORKER), name="bench-worker", ensure=False)
    router, _ = await connect(
        nats_server.access(Role.DISPATCHER), name="bench-dispatcher", ensure=False
    )
    watcher, _ = await connect(
        nats_server.access(Role.OPERATOR), name="bench-operator", ensure=False
    )
    engine = create_engine(database_url)
    try:
        async with (
            aiohttp.ClientSession(
                base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ) as admin,
            aiohttp.ClientSession(
                base_url=base_url,
                headers={"Authorization": f"Bearer {RUNTIME_TOKEN}"},
                connector=aiohttp.TCPConnector(limit=IN_FLIGHT),
            ) as runtime,
        ):
            await _seed(admin)
            request = codec.encode(ConfigGetRequest(agent_id=AGENT_ID, campaign_id=CAMPAIGN_ID))

            async def nats_read() -> None:
                reply = codec.decode_config_reply(
                    (await nc.request(subjects.CONFIG_GET, request, timeout=5)).data
                )
                assert isinstance(reply, ConfigFound)

            path = f"/api/v1/agents/{AGENT_ID}/runtime-config"
            params = {"campaign_id": CAMPAIGN_ID}

            async def http_read() -> None:
                async with runtime.get(path, params=params) as response:
                    await response.read()
                    assert response.status == 200

            repository = AgentRepository(Database(engine))
            ring = KeyRing.parse(keys)

            async def db_read() -> None:
                found = await repository.with_links(AGENT_ID)
                assert found is not None
                record, _links = found
                assert record.sealed is not None
                ProviderKeys(values=ring.open(record.sealed, agent_id=AGENT_ID))
                KeysState(sealed=record.sealed, hints=record.key_hints)

            route = RouteRequest(room_key="RM_bench", campaign_id=CAMPAIGN_ID)
            routes = RouteRepository(Database(engine))

            async def route_read() -> None:
                reply = await resolve_route(router, route, timeout=5)
                assert isinstance(reply, RouteResolved)

            async def route_db_read() -> None:  # what every routing answer read before
                assert await routes.campaign(CAMPAIGN_ID) is not None

            route_lat = await _latencies(route_read, READS)
            route_db_lat = await _latencies(route_db_read, READS // 3)
            nats_lat = await _latencies(nats_read, READS)
            http_lat = await _latencies(http_read, READS // 3)
            db_lat = await _latencies(db_read, READS // 3)
            nats_rate = await _throughput(nats_read)
            http_rate = await _throughput(http_read)
            db_rate = await _throughput(db_read)
            edit_lat = await _edit_to_event(watcher, admin)
        service.stop()
        pg_edit_lat = await _postgresql_edits(
            workdir, nats_server.access(Role.CONFIG_SYNC), watcher, keys
        )
    finally:
        for conn in (nc, router, watcher):
            await conn.close()
        await engine.dispose()
        service.stop()
        nats_process.stop()

    db_p50, db_p99 = _ms(db_lat, 50), _ms(db_lat, 99)
    nats_p99 = _ms(nats_lat, 99)
    edit_p99 = _ms(edit_lat, 99)
    return [
        Measure("read over NATS, p50", _ms(nats_lat, 50), "ms", baseline=db_p50),
        Measure(
            "read over NATS, p99",
            nats_p99,
            "ms",
            baseline=db_p99,
            target=f"<= {NATS_P99_TARGET_MS:g} ms",
            met=nats_p99 <= NATS_P99_TARGET_MS,
        ),
        Measure("read over HTTP, p50", _ms(http_lat, 50), "ms", baseline=db_p50),
        Measure("read over HTTP, p99", _ms(http_lat, 99), "ms", baseline=db_p99),
        Measure("read from the database (baseline), p50", db_p50, "ms"),
        Measure("read from the database (baseline), p99", db_p99, "ms"),
        Measure(f"NATS reads, {IN_FLIGHT} in flight", nats_rate, "req/s", baseline=db_rate),
        Measure(f"HTTP reads, {IN_FLIGHT} in flight", http_rate, "req/s", baseline=db_rate),
        Measure(f"database reads, {IN_FLIGHT} in flight (baseline)", db_rate, "req/s"),
        Measure(
            "routing answer over NATS (voice.routing.resolve), p50",
            _ms(route_lat, 50),
            "ms",
            baseline=_ms(route_db_lat, 50),
        ),
        Measure(
            "routing answer over NATS, p99",
            _ms(route_lat, 99),
            "ms",
            baseline=_ms(route_db_lat, 99),
        ),
        Measure("edit -> ConfigChanged, p50", _ms(edit_lat, 50), "ms"),
        Measure(
            "edit -> ConfigChanged, p99",
            edit_p99,
            "ms",
            target=f"<= {EDIT_P99_TARGET_MS:g} ms (SQLite)",
            met=edit_p99 <= EDIT_P99_TARGET_MS,
        ),
        Measure("edit -> ConfigChanged on PostgreSQL, p50", _ms(pg_edit_lat, 50), "ms"),
        Measure("edit -> ConfigChanged on PostgreSQL, p99", _ms(pg_edit_lat, 99), "ms"),
    ]


def _cluster_dir() -> Path:
    """Under /tmp, not the (0700) work dir: as root, PostgreSQL runs as another user."""
    cluster = Path(tempfile.mkdtemp(prefix="corevoice-bench-pg-"))
    cluster.chmod(0o755)
    return cluster


async def _postgresql_edits(workdir: Path, nats: NatsAccess, nc: Client, keys: str) -> list[float]:
    """The production backend, for comparison: a local PostgreSQL 15 with fsync on."""
    cluster = _cluster_dir()
    postgres = PostgresServer(data_dir=cluster / "data", log_dir=workdir, fsync=True)
    pg = postgres.process().start().wait_ready(60)
    try:
        url = postgres.create_database("bench")
        service, base_url = _start(workdir, nats, url, keys)
        try:
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with aiohttp.ClientSession(base_url=base_url, headers=headers) as admin:
                await _seed(admin)
                return await _edit_to_event(nc, admin)
        finally:
            service.stop()
    finally:
        pg.stop()
        shutil.rmtree(cluster, ignore_errors=True)


async def _edit_to_event(nc: Client, admin: aiohttp.ClientSession) -> list[float]:
    """PATCH sent → its ``ConfigChanged`` received (includes the HTTP round trip)."""
    arrived: asyncio.Queue[tuple[float, int]] = asyncio.Queue()

    async def on_event(msg: Msg) -> None:
        event = codec.decode_config_event(msg.data)
        arrived.put_nowait((time.perf_counter(), event.version))

    sub = await nc.subscribe(subjects.config_changed(AGENT_ID), cb=on_event)
    out = []
    try:
        for i in range(EDITS + 20):
            started = time.perf_counter()
            body = {"instructions": f"edit {i}"}
            async with admin.patch(f"/api/v1/agents/{AGENT_ID}", json=body) as response:
                response.raise_for_status()
                version = (await response.json())["version"]
            while True:
                at, seen = await asyncio.wait_for(arrived.get(), 5)
                if seen == version:
                    break
            if i >= 20:  # warm-up edits are not counted
                out.append(at - started)
    finally:
        await sub.unsubscribe()
    return out
