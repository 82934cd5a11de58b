"""Nothing stale outlives what it stands for: a config_sync replica cut off from NATS
serves no config (or keys) of an agent edited or deleted meanwhile once it is back; a
stored API token is refused once a database outage outlasts its staleness cap; and
``keys reencrypt`` gets through every row, listing the ones it cannot open.

Real processes throughout: the cut-off replica reaches NATS through a TCP proxy in this
process (closing it drops the connection, as a network partition does), the database
outage is a PostgreSQL server of the test's own, stopped mid-test.
"""

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from core_voice_cli.servers import NatsServer, PostgresServer
from core_voice_contracts import codec
from core_voice_contracts.permissions import Role
from tests.harness.config_sync import (
    ADMIN_TOKEN,
    RUNTIME_TOKEN,
    fresh_database,
    keyring,
    start_config_sync,
)
from tests.harness.config_sync_api import API, auth, create_agent, error_of, wait_status
from tests.harness.postgres import RestartablePostgres

pytestmark = pytest.mark.integration

CANARY = "sk-canary-STALENESS-do-not-leak-3d7e"
OPENAI_LLM = {"provider": "openai", "model": "gpt-4o-mini"}


class TcpProxy:
    """A loopback TCP proxy in front of a server, on a thread of its own (so it keeps
    forwarding while the test blocks); `cut` drops every connection and refuses new
    ones until `restore`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pipes: set[asyncio.Task[None]] = set()

    def _call(self, step: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(step, self._loop).result(10)

    def start(self) -> None:
        self._thread.start()
        self.restore()

    def restore(self) -> None:
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._cut())

    def stop(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)


@pytest.fixture
def proxy(nats_server: NatsServer) -> Iterator[TcpProxy]:
    proxy = TcpProxy(nats_server.port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


async def runtime_read(client: httpx.AsyncClient, agent_id: str) -> httpx.Response:
    return await client.get(f"{API}/{agent_id}/runtime-config")


async def test_a_replica_cut_off_from_nats_serves_nothing_stale_once_it_is_back(
    nats_server: NatsServer, proxy: TcpProxy, tmp_path: Path
) -> None:
    """Replica B caches two agents, loses NATS, and misses the events of A's edit of one
    and deletion of the other; on reconnect it must drop what it cached."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'replicas.db'}"
    keys = keyring("k1")
    a = start_config_sync(
        nats=nats_server.access(Role.CONFIG_SYNC),
        database_url=url,
        log_dir=tmp_path,
        name="config-sync-a",
        encryption_keys=keys,
    )
    b = start_config_sync(
        nats=nats_server.access(Role.CONFIG_SYNC, url=f"nats://127.0.0.1:{proxy.port}"),
        database_url=url,
        log_dir=tmp_path,
        name="config-sync-b",
        encryption_keys=keys,
    )
    edited, deleted = f"e-{uuid.uuid4().hex[:12]}", f"d-{uuid.uuid4().hex[:12]}"
    try:
        async with (
            httpx.AsyncClient(base_url=a.base_url, headers=auth(ADMIN_TOKEN)) as on_a,
            httpx.AsyncClient(base_url=b.base_url, headers=auth(RUNTIME_TOKEN)) as on_b,
            httpx.AsyncClient(base_url=b.base_url) as b_health,
        ):
            await create_agent(on_a, edited, instructions="v1")
            await create_agent(on_a, deleted, llm=OPENAI_LLM, keys={"openai": CANARY})
            proxy.cut()
            await wait_status(b_health, "/healthz", 503)  # B knows it is cut off
            # Read (and cached) while cut off: the database still has v1 of both.
            assert (
                codec.decode_runtime_config((await runtime_read(on_b, edited)).content).version == 1
            )
            first = codec.decode_runtime_config((await runtime_read(on_b, deleted)).content)
            assert first.keys.get("openai") == CANARY

            # A commits; the events go out on NATS, where B cannot hear them.
            patched = await on_a.patch(f"{API}/{edited}", json={"instructions": "v2"})
            assert patched.status_code == 200, patched.text
            assert (await on_a.delete(f"{API}/{deleted}")).status_code == 204
            await wait_outbox_published(url)

            proxy.restore()
            await wait_status(b_health, "/healthz", 200, timeout=20)
            deadline = time.monotonic() + 5
            while True:
                gone = await runtime_read(on_b, deleted)
                now = codec.decode_runtime_config((await runtime_read(on_b, edited)).content)
                if gone.status_code == 404 and now.version == 2:
                    break
                assert time.monotonic() < deadline, (
                    f"B still serves stale configs: deleted agent {gone.status_code}, "
                    f"edited agent v{now.version}"
                )
                await asyncio.sleep(0.05)
            assert now.instructions == "v2"
            assert CANARY not in gone.text
    finally:
        assert b.process.stop() == 0, b.process.log_tail()
        assert a.process.stop() == 0, a.process.log_tail()


async def wait_outbox_published(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        deadline = time.monotonic() + 10
        while True:
            async with engine.connect() as conn:
                pending = await conn.scalar(
                    sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                )
            if not pending:
                return
            assert time.monotonic() < deadline, "outbox never drained"
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


# --- tokens through a database outage -----------------------------------------------


async def test_a_stored_token_is_refused_once_the_outage_outlasts_its_staleness_cap(
    nats_server: NatsServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Nobody can tell during the outage whether the token was revoked meanwhile, so it
    is trusted for CONFIG_SYNC_TOKEN_MAX_STALE_S at most, then refused with 503."""
    database: RestartablePostgres = request.getfixturevalue("private_postgres")
    cap_s = 3.0
    service = start_config_sync(
        nats=nats_server.access(Role.CONFIG_SYNC),
        database_url=database.server.create_database("tokens"),
        log_dir=tmp_path,
        encryption_keys=keyring("k1"),
        extra_env={"CONFIG_SYNC_TOKEN_MAX_STALE_S": str(cap_s)},
    )
    agent_id = f"t-{uuid.uuid4().hex[:12]}"
    try:
        async with httpx.AsyncClient(base_url=service.base_url, headers=auth(ADMIN_TOKEN)) as c:
            await create_agent(c, agent_id)
            minted = await c.post("/api/v1/tokens", json={"name": "reader", "scope": "read"})
            assert minted.status_code == 201, minted.text
            reader = auth(minted.json()["token"])
            assert (await c.get(f"{API}/{agent_id}", headers=reader)).status_code == 200
            vouched = time.monotonic()

            database.stop()
            await wait_status(c, "/healthz", 503)
            while (answer := await c.get(f"{API}/{agent_id}", headers=reader)).status_code == 200:
                assert time.monotonic() - vouched < cap_s + 2, "the token outlived its cap"
                await asyncio.sleep(0.1)
            assert time.monotonic() - vouched >= cap_s - 0.5
            assert answer.status_code == 503, answer.text
            assert error_of(answer).error == "database_unavailable"
            # The agent view itself is still served from the cache, to a token that
            # needs no database (the bootstrap one).
            assert (await c.get(f"{API}/{agent_id}")).status_code == 200

            database.start()
            await wait_status(c, "/healthz", 200)
            assert (await c.get(f"{API}/{agent_id}", headers=reader)).status_code == 200
    finally:
        assert service.process.stop() == 0, service.process.log_tail()


# --- keys reencrypt --------------------------------------------------------------------


async def test_reencrypt_gets_past_rows_it_cannot_open_and_lists_them(
    nats_server: NatsServer, database_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    postgres: PostgresServer | None = (
        None if database_url.startswith("sqlite") else request.getfixturevalue("postgres_server")
    )
    url = fresh_database(database_url, postgres, tmp_path)
    k1, k2 = keyring("k1"), keyring("k2")
    service = start_config_sync(
        nats=nats_server.access(Role.CONFIG_SYNC),
        database_url=url,
        log_dir=tmp_path,
        encryption_keys=k1,
    )
    suffix = uuid.uuid4().hex[:8]
    bad = [f"a{n}-{suffix}" for n in range(3)]  # sorted first: they fill the first page
    good = [f"b{n}-{suffix}" for n in range(4)]
    try:
        async with httpx.AsyncClient(base_url=service.base_url, headers=auth(ADMIN_TOKEN)) as c:
            for agent_id in bad + good:
                await create_agent(c, agent_id, llm=OPENAI_LLM, keys={"openai": CANARY})
            rekeyed = await c.patch(f"{API}/{good[0]}", json={"keys": {"openai": CANARY + "2"}})
            assert rekeyed.json()["version"] == 2
    finally:
        assert service.process.stop() == 0, service.process.log_tail()

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            update = "UPDATE agent_configs SET {} WHERE agent_id = :id"
            blob = (await conn.execute(
                sa.text("SELECT keys_sealed FROM agent_configs WHERE agent_id = :id"),
                {"id": bad[0]},
            )).scalar_one()  # fmt: skip
            flipped = bytes([blob[0] ^ 1]) + blob[1:]  # one bit off: the tag no longer matches
            await conn.execute(
                sa.text(update.format("keys_sealed = :b")), {"id": bad[0], "b": flipped}
            )
            await conn.execute(
                sa.text(update.format("keys_sealed = :b")), {"id": bad[1], "b": b"\x00" * 5}
            )
            await conn.execute(sa.text(update.format("keys_key_id = 'retired'")), {"id": bad[2]})
    finally:
        await engine.dispose()

    env = {**service.env, "CONFIG_SYNC_ENCRYPTION_KEYS": f"{k2},{k1}"}
    done = reencrypt(env, "--batch", "2")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["resealed"] == len(good) + 1
    assert report["unreadable"] == 3
    listed = {(v["agent_id"], v["version"], v["key_id"]) for v in report["unreadable_versions"]}
    assert listed == {(bad[0], 1, "k1"), (bad[1], 1, "k1"), (bad[2], 1, "retired")}
    assert report["versions_by_key_id"] == {"k2": len(good) + 1, "k1": 2, "retired": 1}
    assert "reencrypt_incomplete" in done.stderr
    for secret in (CANARY, *(entry.split(":", 1)[1] for entry in f"{k1},{k2}".split(","))):
        assert secret not in done.stdout and secret not in done.stderr

    again = reencrypt(env)
    assert json.loads(again.stdout)["resealed"] == 0  # idempotent: only the bad rows left


def reencrypt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core_voice_config_sync", "keys", "reencrypt", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
