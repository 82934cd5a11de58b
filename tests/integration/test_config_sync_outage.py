"""Outages: the bus goes away (edits commit, their events follow), the database goes away
(writes fail with a clear 503, reads keep working from the cache, nothing committed is
lost); and the outbox relay in-process against a real NATS server.

These start private servers (they stop them mid-test), so they do not run per backend:
the database outage is a real PostgreSQL server stopped and started again, the bus
outage uses SQLite.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from core_voice_cli.servers import NatsServer
from core_voice_config_sync.agent_repository import AgentRepository
from core_voice_config_sync.db import Database, create_engine, migrate
from core_voice_config_sync.outbox import OutboxRepository
from core_voice_config_sync.records import ConfigFields, KeysState
from core_voice_config_sync.relay import OutboxRelay
from core_voice_contracts import codec, subjects
from core_voice_contracts.admin_api import AgentStatus, AgentView
from core_voice_contracts.bus import connect
from core_voice_contracts.events import ChangeKind, ConfigChanged, ConfigFound
from core_voice_contracts.permissions import Role
from core_voice_contracts.routing import RouteRequest, RouteResolved
from core_voice_contracts.rpc import get_runtime_config, resolve_route
from core_voice_contracts.runtime_config import ProviderSpec
from core_voice_contracts.streams import VOICE_CONFIG
from tests.harness.config_sync import ADMIN_TOKEN, keyring, start_config_sync
from tests.harness.config_sync_api import (
    API,
    auth,
    create_agent,
    error_of,
    new_agent_id,
    wait_status,
)
from tests.harness.postgres import RestartablePostgres

pytestmark = pytest.mark.integration


async def test_database_outage_fails_writes_clearly_and_serves_reads_from_cache(
    nats_server: NatsServer,
    bus: tuple[Client, JetStreamContext],
    private_postgres: RestartablePostgres,
    tmp_path: Path,
    worker_bus: Client,
) -> None:
    nc, _ = bus
    service = None
    try:
        database_url = private_postgres.server.create_database("outage")
        service = start_config_sync(
            nats=nats_server.access(Role.CONFIG_SYNC),
            database_url=database_url,
            log_dir=tmp_path,
            encryption_keys=keyring("k1"),
        )
        agent_id = new_agent_id()
        events: asyncio.Queue[ConfigChanged] = asyncio.Queue()

        async def on_event(msg: Msg) -> None:
            await events.put(codec.decode_config_event(msg.data))

        sub = await nc.subscribe(subjects.config_changed(agent_id), cb=on_event)
        async with httpx.AsyncClient(base_url=service.base_url, headers=auth(ADMIN_TOKEN)) as c:
            await create_agent(c, agent_id, instructions="before the outage")
            assert (await asyncio.wait_for(events.get(), 5)).version == 1
            warm = await resolve_route(nc, RouteRequest(room_key="r1", agent_id=agent_id))
            assert isinstance(warm, RouteResolved)

            private_postgres.stop()
            await wait_status(c, "/healthz", 503)

            refused = await c.patch(f"{API}/{agent_id}", json={"instructions": "lost?"})
            assert refused.status_code == 503
            assert error_of(refused).error == "database_unavailable"
            assert refused.headers["retry-after"] == "1"
            created = await c.post(API, json={"name": "during outage"})
            assert (created.status_code, error_of(created).error) == (503, "database_unavailable")

            # Reads: the runtime path (NATS and HTTP), the agent view and routing still answer.
            found = await get_runtime_config(worker_bus, agent_id)
            assert isinstance(found, ConfigFound)
            assert (found.config.version, found.config.instructions) == (1, "before the outage")
            view = await c.get(f"{API}/{agent_id}")
            assert view.status_code == 200
            assert msgspec.json.decode(view.content, type=AgentView).version == 1
            runtime = await c.get(f"{API}/{agent_id}/runtime-config")
            assert runtime.status_code == 200
            routed = await resolve_route(nc, RouteRequest(room_key="r1", agent_id=agent_id))
            assert routed == warm

            private_postgres.start()
            await wait_status(c, "/healthz", 200)
            edited = await c.patch(f"{API}/{agent_id}", json={"instructions": "after"})
            assert edited.status_code == 200, edited.text
            assert msgspec.json.decode(edited.content, type=AgentView).version == 2
            event = await asyncio.wait_for(events.get(), 5)
            assert (event.version, event.kind) == (2, ChangeKind.UPDATED)
            assert events.empty()  # the refused edit left no trace
        await sub.unsubscribe()
    finally:
        if service is not None:
            assert service.process.stop() == 0, service.process.log_tail()


async def test_edit_during_nats_outage_is_published_after_it(tmp_path: Path) -> None:
    """A private NATS server is stopped mid-test; the edit commits and its event follows."""
    nats = NatsServer(data_dir=tmp_path / "nats", log_dir=tmp_path)
    nats_process = nats.process().start().wait_ready(20)
    service = start_config_sync(
        nats=nats.access(Role.CONFIG_SYNC),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'outage.db'}",
        log_dir=tmp_path,
    )
    agent_id = new_agent_id()
    try:
        async with httpx.AsyncClient(base_url=service.base_url, headers=auth(ADMIN_TOKEN)) as c:
            await create_agent(c, agent_id)

            nats_process.stop()
            deadline = time.monotonic() + 10
            while (await c.get("/healthz")).status_code != 503:
                assert time.monotonic() < deadline, "healthz never reported the outage"
                await asyncio.sleep(0.1)

            edited = await c.patch(f"{API}/{agent_id}", json={"instructions": "during outage"})
            assert msgspec.json.decode(edited.content, type=AgentView).version == 2

            nats_process = nats.process().start().wait_ready(20)
            nc, js = await connect(nats.access(Role.OPERATOR), name="pytest-outage")
            try:
                subject = subjects.config_changed(agent_id)
                deadline = time.monotonic() + 15
                latest = None
                while time.monotonic() < deadline:
                    try:
                        stored = await js.get_last_msg(VOICE_CONFIG, subject)
                        latest = codec.decode_config_event(stored.data or b"")
                        if latest.version == 2:
                            break
                    except Exception:  # noqa: S110 - not there yet
                        pass
                    await asyncio.sleep(0.2)
                assert latest is not None and latest.version == 2
            finally:
                await nc.drain()

            deadline = time.monotonic() + 10
            while (await c.get("/healthz")).status_code != 200:
                assert time.monotonic() < deadline, "healthz never recovered"
                await asyncio.sleep(0.1)
    finally:
        assert service.process.stop() == 0, service.process.log_tail()
        nats_process.stop()


# --- the outbox relay in-process --------------------------------------------------------


async def create_directly(repository: AgentRepository, agent_id: str) -> None:
    fields = ConfigFields(
        name="Relay",
        instructions="",
        greeting="Hi",
        llm=ProviderSpec(provider="scripted"),
        stt=ProviderSpec(provider="local"),
        tts=ProviderSpec(provider="local"),
    )
    await repository.create(
        "default",
        agent_id,
        fields,
        KeysState(),
        status=AgentStatus.ACTIVE,
        legacy=(None, 0),
        author="test",
    )


@pytest.fixture
async def repository(tmp_path: Path) -> AsyncIterator[AgentRepository]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    await migrate(engine)
    repo = AgentRepository(Database(engine))
    await repo.ensure_tenant("default")
    try:
        yield repo
    finally:
        await engine.dispose()


@pytest.fixture
def outbox(repository: AgentRepository) -> OutboxRepository:
    return OutboxRepository(repository.db)


async def test_relay_publishes_pending_events_in_order(
    repository: AgentRepository,
    outbox: OutboxRepository,
    bus: tuple[Client, JetStreamContext],
) -> None:
    _, js = bus
    agent_id = new_agent_id()
    await create_directly(repository, agent_id)
    pending = await outbox.pending_events()
    assert [p.subject for p in pending] == [subjects.config_changed(agent_id)]

    relay = OutboxRelay(outbox, js)
    assert await relay.drain_once() == 1
    assert await outbox.pending_events() == []
    assert await relay.drain_once() == 0

    stored = await js.get_last_msg(VOICE_CONFIG, subjects.config_changed(agent_id))
    event = codec.decode_config_event(stored.data or b"")
    assert (event.agent_id, event.version, event.kind) == (agent_id, 1, ChangeKind.CREATED)
    assert stored.headers is not None
    assert stored.headers["Nats-Msg-Id"] == pending[0].msg_id


async def test_republishing_an_event_is_deduplicated(
    repository: AgentRepository,
    outbox: OutboxRepository,
    bus: tuple[Client, JetStreamContext],
) -> None:
    _, js = bus
    agent_id = new_agent_id()
    subject = subjects.config_changed(agent_id)
    await create_directly(repository, agent_id)
    [event] = await outbox.pending_events()
    relay = OutboxRelay(outbox, js)
    assert await relay.drain_once() == 1
    first = await js.get_last_msg(VOICE_CONFIG, subject)

    # As after a crash between the publish and the commit that marks it published.
    await outbox.mark_unpublished([event.id])
    assert await relay.drain_once() == 1
    second = await js.get_last_msg(VOICE_CONFIG, subject)
    assert second.seq == first.seq, "the second publish was stored as a new message"
    info = await js.stream_info(VOICE_CONFIG, subjects_filter=subject)
    assert info.state.subjects == {subject: 1}
