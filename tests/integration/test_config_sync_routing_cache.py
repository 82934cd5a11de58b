"""``voice.routing.resolve`` answers from memory and never outlives an edit.

Real config_sync processes on a NATS server with users whose permissions make each
claim testable on its own. The module's replica (`service`, once per database backend)
may not subscribe to change events, so an edit can only reach its next answer through
its own commit path, never through its echo. In the two-replica test the writer may not
serve routing, so every answer comes from the other replica, which can only learn of the
edit from the event.
"""

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import create_async_engine

from core_voice_cli.servers import NatsServer, PostgresServer
from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import NatsAccess, connect
from core_voice_contracts.events import RejectReason, RoutingChanged
from core_voice_contracts.permissions import Grant, Role, grants
from core_voice_contracts.routing import (
    RouteRejected,
    RouteReply,
    RouteRequest,
    RouteResolved,
    Target,
    pick_weighted,
)
from core_voice_contracts.rpc import resolve_route
from core_voice_contracts.streams import VOICE_CONFIG
from tests.harness.config_sync import (
    ADMIN_TOKEN,
    ConfigSync,
    config_sync_service,
    keyring,
    start_config_sync,
)
from tests.harness.config_sync_api import (
    API,
    CAMPAIGNS,
    allow_legacy,
    assign_trunk,
    auth,
    create_agent,
    create_campaign,
    link,
    new_agent_id,
    new_number,
    numbers,
    route,
)

pytestmark = pytest.mark.integration

TENANT = "default"
CANARY = "sk-canary-ROUTING-do-not-leak-51c9"
OPENAI_LLM = {"provider": "openai", "model": "gpt-4o-mini"}
DEAF = "deaf"  # hears no change events
WRITER = "writer"  # serves no requests
FULL = "full"  # may do anything (the test's own connections, and replica B)


def _config_sync_less(*denied: str) -> Grant:
    """config_sync's own rights, minus subscribing to ``denied``."""
    return dataclasses.replace(grants()[Role.CONFIG_SYNC], subscribe_deny=denied)


@dataclass
class UsersNats:
    server: NatsServer

    def url(self, user: str) -> NatsAccess:
        """config_sync's access as ``user`` (one of the reduced users above)."""
        return self.server.access(Role.CONFIG_SYNC, user=user)


@contextlib.contextmanager
def users_nats(base: Path) -> Iterator[UsersNats]:
    """nats-server as everywhere else, plus the users above."""
    server = NatsServer(
        data_dir=base / "data",
        log_dir=base,
        extra_users={
            DEAF: _config_sync_less(subjects.CONFIG_CHANGED_ALL, subjects.ROUTING_CHANGED_ALL),
            WRITER: _config_sync_less(subjects.ROUTING_RESOLVE, subjects.CONFIG_GET),
            FULL: Grant(publish=(">",), subscribe=(">",)),
        },
    )
    base.mkdir(parents=True, exist_ok=True)
    process = server.process()
    process.start().wait_ready(20)
    try:
        yield UsersNats(server)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def nats_with_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UsersNats]:
    with users_nats(tmp_path_factory.mktemp("nats-users")) as server:
        yield server


@pytest.fixture(scope="module")
def service(
    nats_with_users: UsersNats, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConfigSync]:
    """config_sync on the module's backend, deaf to change events (its own included)."""
    url = nats_with_users.url(DEAF)
    with config_sync_service(url, database_url, tmp_path_factory) as running:
        yield running
    assert CANARY not in running.process.log_path.read_text(errors="replace")


@pytest.fixture
async def bus(nats_with_users: UsersNats) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc, js = await connect(nats_with_users.url(FULL), name="pytest")
    try:
        yield nc, js
    finally:
        await nc.drain()


async def in_database(database_url: str, statement: str, **params: Any) -> list[Any]:
    """Run one statement on config_sync's database, bypassing config_sync: a change made
    this way announces nothing."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def outbox_drained(database_url: str) -> None:
    """Every event is published and marked, so no relay will publish anything again."""
    deadline = time.monotonic() + 10
    query = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
    while (await in_database(database_url, query))[0][0]:
        assert time.monotonic() < deadline, "outbox not drained"
        await asyncio.sleep(0.05)


async def edited(response: Any) -> None:
    result: httpx.Response = await response
    assert result.is_success, result.text


async def test_answers_come_from_memory_and_this_replica_hears_no_events(
    admin: httpx.AsyncClient, bus: tuple[Client, JetStreamContext], database_url: str
) -> None:
    """The premise of the next test: only this replica's own commits clear its answers."""
    nc, _ = bus
    agent_id = new_agent_id()
    await create_agent(admin, agent_id)
    assert isinstance(await route(nc, room_key="r", agent_id=agent_id), RouteResolved)
    await in_database(
        database_url, "UPDATE agents SET status = 'disabled' WHERE id = :id", id=agent_id
    )
    event = RoutingChanged(tenant_id=TENANT, agent_id=agent_id)
    await nc.publish(subjects.routing_changed(TENANT), codec.encode(event))
    await nc.flush()
    await asyncio.sleep(0.3)
    assert isinstance(await route(nc, room_key="r", agent_id=agent_id), RouteResolved)
    await create_campaign(admin)  # any routing commit here clears every answer
    assert await route(nc, room_key="r", agent_id=agent_id) == RouteRejected(
        reason=RejectReason.DISABLED_AGENT
    )


async def test_every_routing_edit_changes_the_very_next_answer_of_the_replica_that_made_it(
    admin: httpx.AsyncClient, bus: tuple[Client, JetStreamContext]
) -> None:
    nc, _ = bus
    a, b = new_agent_id(), new_agent_id()
    for agent_id in (a, b):
        await create_agent(admin, agent_id)
    room = next(r for i in range(100) if pick_weighted(r := f"room-{i}", [(a, 1), (b, 1)]) == a)

    async def resolve(**fields: Any) -> Any:
        return await route(nc, room_key=room, **fields)

    async def patch_agent(agent_id: str, **fields: Any) -> None:
        await edited(admin.patch(f"{API}/{agent_id}", json=fields))

    # Agent status.
    assert (await resolve(agent_id=a)).target == Target.POOL
    await patch_agent(a, status="disabled")
    assert await resolve(agent_id=a) == RouteRejected(reason=RejectReason.DISABLED_AGENT)
    await patch_agent(a, status="active")
    assert isinstance(await resolve(agent_id=a), RouteResolved)

    # Legacy share, changed in place (no version, no ConfigChanged).
    await allow_legacy(admin, "old-a")
    await patch_agent(a, legacy_agent_name="old-a", legacy_percent=0)
    assert (await resolve(agent_id=a)).target == Target.POOL
    await patch_agent(a, legacy_percent=100)
    moved = await resolve(agent_id=a)
    assert (moved.target, moved.legacy_agent_name) == (Target.LEGACY, "old-a")
    await patch_agent(a, legacy_percent=0)
    assert (await resolve(agent_id=a)).target == Target.POOL

    # Link weights, link removal, campaign status.
    campaign_id = await create_campaign(admin)
    for agent_id in (a, b):
        assert (await link(admin, campaign_id, agent_id, weight=1)).is_success
    assert (await resolve(campaign_id=campaign_id)).agent_id == a
    assert (await link(admin, campaign_id, a, weight=0)).is_success
    assert (await resolve(campaign_id=campaign_id)).agent_id == b
    assert (await link(admin, campaign_id, a, weight=1)).is_success
    assert (await resolve(campaign_id=campaign_id)).agent_id == a
    await edited(admin.delete(f"{CAMPAIGNS}/{campaign_id}/agents/{a}"))
    assert (await resolve(campaign_id=campaign_id)).agent_id == b
    await edited(admin.patch(f"{CAMPAIGNS}/{campaign_id}", json={"status": "paused"}))
    paused = await resolve(campaign_id=campaign_id)
    assert (paused.reason, paused.detail) == (RejectReason.NO_ROUTE, "campaign paused")
    await edited(admin.patch(f"{CAMPAIGNS}/{campaign_id}", json={"status": "active"}))
    assert (await resolve(campaign_id=campaign_id)).agent_id == b

    # Number mapping.
    number, trunk = new_number(), await assign_trunk(admin)
    mapping = f"{numbers(trunk)}/{number}"
    await edited(admin.put(mapping, json={"agent_id": a}))
    assert (await resolve(dialed_number=number, trunk_id=trunk)).agent_id == a
    await edited(admin.put(mapping, json={"campaign_id": campaign_id}))
    remapped = await resolve(dialed_number=number, trunk_id=trunk)
    assert (remapped.agent_id, remapped.campaign_id) == (b, campaign_id)
    await edited(admin.delete(mapping))
    unmapped = await resolve(dialed_number=number, trunk_id=trunk)
    assert (unmapped.reason, unmapped.detail) == (RejectReason.NO_ROUTE, "number not mapped")

    # Deletes: an agent, and a campaign without links (no agent gets a new version).
    assert isinstance(await resolve(agent_id=a), RouteResolved)
    await edited(admin.delete(f"{API}/{a}"))
    assert await resolve(agent_id=a) == RouteRejected(reason=RejectReason.UNKNOWN_AGENT)
    empty = await create_campaign(admin)
    assert (await resolve(campaign_id=empty)).detail == "no active agent"
    await edited(admin.delete(f"{CAMPAIGNS}/{empty}"))
    assert (await resolve(campaign_id=empty)).detail == "unknown campaign"


async def test_routing_changes_are_announced_on_their_subject_without_keys(
    admin: httpx.AsyncClient, bus: tuple[Client, JetStreamContext]
) -> None:
    nc, js = bus
    raw: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_event(msg: Msg) -> None:
        await raw.put(msg.data)

    subject = subjects.routing_changed(TENANT)
    sub = await nc.subscribe(subject, cb=on_event)
    agent_id = new_agent_id()
    await create_agent(admin, agent_id, llm=OPENAI_LLM, keys={"openai": CANARY})
    number, trunk = new_number(), await assign_trunk(admin)

    await edited(admin.patch(f"{API}/{agent_id}", json={"status": "disabled"}))
    campaign_id = await create_campaign(admin)
    assert (await link(admin, campaign_id, agent_id, weight=1)).is_success  # a new version
    assert (await link(admin, campaign_id, agent_id, weight=4)).is_success
    await edited(admin.patch(f"{CAMPAIGNS}/{campaign_id}", json={"status": "paused"}))
    await edited(admin.patch(f"{CAMPAIGNS}/{campaign_id}", json={"name": "renamed"}))
    await edited(admin.put(f"{numbers(trunk)}/{number}", json={"agent_id": agent_id}))
    await edited(admin.delete(f"{numbers(trunk)}/{number}"))

    expected = [
        (agent_id, None, None),
        (None, campaign_id, None),
        (agent_id, campaign_id, None),
        (None, campaign_id, None),
        (None, None, number),
        (None, None, number),
    ]
    ours = {agent_id, campaign_id, number}
    seen: list[tuple[str | None, str | None, str | None]] = []
    while len(seen) < len(expected):
        data = await asyncio.wait_for(raw.get(), 5)
        assert CANARY.encode() not in data
        event = routing_event(data)
        assert event.tenant_id == TENANT
        if ours & {event.agent_id, event.campaign_id, event.number}:
            seen.append((event.agent_id, event.campaign_id, event.number))
    assert seen == expected
    await sub.unsubscribe()
    stored = await js.get_last_msg(VOICE_CONFIG, subject)
    assert stored.data is not None
    last = routing_event(stored.data)
    assert last == RoutingChanged(tenant_id=TENANT, number=number, trunk_id=trunk, at=last.at)


def routing_event(data: bytes) -> RoutingChanged:
    event = codec.decode_config_stream_event(data)
    assert isinstance(event, RoutingChanged), event
    return event


async def b_answers(nc: Client, agent_id: str) -> RouteReply:
    return await resolve_route(nc, RouteRequest(room_key="room-1", agent_id=agent_id), timeout=5)


async def b_answers_until(
    nc: Client, agent_id: str, done: Callable[[RouteReply], bool], *, within: float
) -> float:
    """Resolve again and again until ``done(answer)``; seconds it took."""
    start = time.monotonic()
    while not done(answer := await b_answers(nc, agent_id)):
        assert time.monotonic() - start < within, answer
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_another_replica_drops_its_answers_on_the_edits_event(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """Replica B has a route in memory (no expiry: a row changed behind config_sync's
    back stays unseen); an edit through replica A reaches B's next answers by the event."""
    url = postgres_server.create_database(f"cs_{uuid.uuid4().hex[:12]}")
    keys = keyring("k1")
    with users_nats(tmp_path / "nats") as nats:
        a = start_config_sync(
            nats=nats.url(WRITER),
            database_url=url,
            log_dir=tmp_path,
            name="config-sync-a",
            encryption_keys=keys,
        )
        b = start_config_sync(
            nats=nats.url(FULL),
            database_url=url,
            log_dir=tmp_path,
            name="config-sync-b",
            encryption_keys=keys,
        )
        nc, _ = await connect(nats.url(FULL), name="pytest")
        try:
            async with httpx.AsyncClient(base_url=a.base_url, headers=auth(ADMIN_TOKEN)) as api:
                await allow_legacy(api, "old")  # the name the row is given below
                agent_id = new_agent_id()
                await create_agent(api, agent_id)
                pool = RouteResolved(agent_id=agent_id, tenant_id=TENANT, via="agent")
                await outbox_drained(url)  # no event of the creation can still arrive
                # Only B serves routing: this answer is B's, and now in B's memory.
                assert await b_answers(nc, agent_id) == pool
                await in_database(
                    url,
                    "UPDATE agents SET legacy_agent_name = 'old', legacy_percent = 100 "
                    "WHERE id = :id",
                    id=agent_id,
                )
                await asyncio.sleep(2.5)
                assert await b_answers(nc, agent_id) == pool

                # Any routing event clears B's answers; B reads the row again and keeps it.
                event = RoutingChanged(tenant_id=TENANT, agent_id=agent_id)
                await nc.publish(subjects.routing_changed(TENANT), codec.encode(event))
                await b_answers_until(
                    nc,
                    agent_id,
                    lambda r: isinstance(r, RouteResolved) and r.target == Target.LEGACY,
                    within=2.0,
                )

                # Just cached, so only the event can make B see this edit in under 2.5 s.
                await edited(api.patch(f"{API}/{agent_id}", json={"status": "disabled"}))
                took = await b_answers_until(
                    nc,
                    agent_id,
                    lambda r: r == RouteRejected(reason=RejectReason.DISABLED_AGENT),
                    within=2.0,
                )
                assert took < 2.0
        finally:
            await nc.drain()
            assert b.process.stop() == 0, b.process.log_tail()
            assert a.process.stop() == 0, a.process.log_tail()
