"""Routing from the dispatcher's memory while config_sync is stopped or frozen.

Real servers (the dispatcher rig: nats-server, livekit-server posting its webhooks,
config_sync and the dispatcher as processes). A room whose agent or campaign was routed
once before is dispatched at once on the remembered answer, flagged ``route_stale``; a
room naming an agent never routed waits for config_sync as before; an agent disabled or
deleted while config_sync was up is forgotten and never dispatched from memory.
"""

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from livekit import api
from nats.js import JetStreamContext

from core_voice_cli.procs import ManagedProcess
from core_voice_contracts import subjects
from core_voice_contracts.admin_api import AgentPatch, AgentStatus
from core_voice_contracts.events import JobDispatched, JobRejected, RejectReason
from tests.harness.dispatcher import (
    Rig,
    admin,
    count,
    create_agent,
    create_campaign,
    eventually,
    named_dispatches,
    running_rig,
    unique,
)
from tests.harness.events import job_events, outcome_of

pytestmark = pytest.mark.integration

ROUTE_TIMEOUT_S = 1.0
NOT_DISPATCHED_WINDOW_S = 3.0
"""How long a room naming an agent never routed is watched for a (wrong) dispatch."""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(
        tmp_path_factory.mktemp("dispatcher-fallback"),
        DISPATCHER_ROUTE_TIMEOUT_S=str(ROUTE_TIMEOUT_S),
    ) as running:
        yield running


def config_sync_of(rig: Rig) -> ManagedProcess:
    return next(p for p in rig.processes if p.name == "config-sync")


def delete_agent(rig: Rig, agent_id: str) -> None:
    resp = httpx.delete(
        f"{rig.stack.config_sync_url}/api/v1/agents/{agent_id}",
        headers={"Authorization": f"Bearer {rig.stack.admin_token}"},
        timeout=10,
    )
    assert resp.status_code == 204, resp.text


def routing_counts(rig: Rig) -> dict[str, int]:
    found: dict[str, int] = httpx.get(f"{rig.dispatcher_url}/healthz", timeout=5).json()["routing"]
    return found


async def open_room(lk: api.LiveKitAPI, name: str, **meta: str) -> str:
    created = await lk.room.create_room(api.CreateRoomRequest(name=name, metadata=json.dumps(meta)))
    return created.sid


async def routed_once(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext, agent_id: str
) -> JobDispatched:
    """A room for ``agent_id`` dispatched by config_sync (so the dispatcher remembers it)."""
    await open_room(lk, f"first-{agent_id}", agent_id=agent_id)
    (dispatched,) = await job_events(js, subjects.job_dispatched(agent_id), 1)
    assert isinstance(dispatched, JobDispatched) and not dispatched.route_stale
    return dispatched


async def stale_dispatch(
    lk: api.LiveKitAPI, js: JetStreamContext, routed_to: str, room: str, **meta: str
) -> tuple[JobDispatched, float]:
    """Open ``room``; its dispatch (the second event of the agent) and seconds from the
    room's creation to the dispatch being stored, as the test saw it."""
    started = time.monotonic()
    await open_room(lk, room, **meta)
    events = await job_events(js, subjects.job_dispatched(routed_to), 2, timeout=10)
    elapsed = time.monotonic() - started
    dispatched = events[-1]
    assert isinstance(dispatched, JobDispatched) and dispatched.room_name == room
    return dispatched, elapsed


async def assert_not_dispatched(
    lk: api.LiveKitAPI, js: JetStreamContext, agent_id: str, room: str
) -> None:
    """The room's job is stored but nothing dispatches it from memory meanwhile."""
    await job_events(js, subjects.job_requested(agent_id), 1)
    await asyncio.sleep(NOT_DISPATCHED_WINDOW_S)
    assert await count(js, subjects.job_dispatched(agent_id)) == 0
    assert await named_dispatches(lk, room) == []


async def assert_old_behaviour(js: JetStreamContext, agent_id: str) -> None:
    """The never-routed agent's job ends the old way: dispatched by config_sync once it is
    back (not stale), or rejected ``config_unavailable`` if its retries ran out first."""
    (requested,) = await job_events(js, subjects.job_requested(agent_id), 1)
    ended = await outcome_of(js, requested.job_id, timeout=45)
    if isinstance(ended, JobDispatched):
        assert not ended.route_stale
    else:
        assert isinstance(ended, JobRejected), ended
        assert ended.reason == RejectReason.CONFIG_UNAVAILABLE, ended


async def test_with_config_sync_stopped_known_rooms_are_dispatched_from_memory(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    known, never, light, heavy = (unique(p) for p in ("known", "never", "light", "heavy"))
    campaign = unique("camp")
    for agent_id in (known, never, light, heavy):
        create_agent(rig, agent_id)
    create_campaign(rig, campaign, {light: 1, heavy: 3})
    await routed_once(rig, lk, js, known)
    first = await outcome_of(
        js, f"job-{await open_room(lk, f'first-{campaign}', campaign_id=campaign)}"
    )
    assert isinstance(first, JobDispatched) and not first.route_stale
    before = routing_counts(rig)

    config_sync = config_sync_of(rig)
    config_sync.stop()
    try:
        dispatched, elapsed = await stale_dispatch(lk, js, known, f"down-{known}", agent_id=known)
        assert dispatched.route_stale and dispatched.via == "agent" and dispatched.target == "pool"
        assert elapsed < 2.0, f"stale dispatch took {elapsed:.2f} s"
        print(f"stopped config_sync: room created -> stale JobDispatched in {elapsed:.3f} s")
        (dispatch,) = await named_dispatches(lk, f"down-{known}")
        assert dispatch.id == dispatched.dispatch_id

        # A campaign room goes to the agent the campaign was last routed to.
        sid = await open_room(lk, f"down-{campaign}", campaign_id=campaign)
        stale = await outcome_of(js, f"job-{sid}", timeout=5)
        assert isinstance(stale, JobDispatched) and stale.route_stale
        assert stale.campaign_id == campaign and stale.via == "campaign"
        assert stale.agent_id == first.agent_id  # the only answer remembered for it

        await open_room(lk, f"down-{never}", agent_id=never)
        await assert_not_dispatched(lk, js, never, f"down-{never}")
    finally:
        config_sync.start().wait_ready(60)
    await assert_old_behaviour(js, never)

    after = routing_counts(rig)
    assert after["stale_dispatches"] - before.get("stale_dispatches", 0) == 2
    assert after["unavailable"] > before.get("unavailable", 0)
    log = (rig.base / "logs" / "dispatcher.log").read_text()
    assert '"job routed from memory"' in log and '"route_stale": true' in log


async def test_with_config_sync_frozen_a_known_agent_is_dispatched_within_the_route_timeout(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    known, never = unique("known"), unique("never")
    create_agent(rig, known)
    create_agent(rig, never)
    await routed_once(rig, lk, js, known)

    config_sync = config_sync_of(rig)
    os.kill(config_sync.pid, signal.SIGSTOP)
    try:
        dispatched, elapsed = await stale_dispatch(lk, js, known, f"frozen-{known}", agent_id=known)
        assert dispatched.route_stale
        assert elapsed < ROUTE_TIMEOUT_S + 1.5, f"stale dispatch took {elapsed:.2f} s"
        print(f"frozen config_sync: room created -> stale JobDispatched in {elapsed:.3f} s")
        assert len(await named_dispatches(lk, f"frozen-{known}")) == 1

        await open_room(lk, f"frozen-{never}", agent_id=never)
        await assert_not_dispatched(lk, js, never, f"frozen-{never}")
    finally:
        os.kill(config_sync.pid, signal.SIGCONT)
    await assert_old_behaviour(js, never)


async def test_an_agent_disabled_or_deleted_is_never_dispatched_from_memory(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    disabled, deleted, control = unique("off"), unique("gone"), unique("ctl")
    for agent_id in (disabled, deleted, control):
        create_agent(rig, agent_id)
        await routed_once(rig, lk, js, agent_id)
    # Edits while config_sync is up: their change events reach the dispatcher (waited
    # for: under load they can take longer than any fixed sleep).
    remembered = routing_counts(rig)["remembered"]
    admin(rig, "PATCH", f"/agents/{disabled}", AgentPatch(status=AgentStatus.DISABLED))
    delete_agent(rig, deleted)

    async def both_forgotten() -> bool:
        return routing_counts(rig)["remembered"] <= remembered - 2

    await eventually(both_forgotten, timeout=10)

    config_sync = config_sync_of(rig)
    config_sync.stop()
    try:
        dispatched, _ = await stale_dispatch(lk, js, control, f"down-{control}", agent_id=control)
        assert dispatched.route_stale  # the memory works in this window...
        for agent_id in (disabled, deleted):  # ...but has forgotten these two
            await open_room(lk, f"down-{agent_id}", agent_id=agent_id)
        for agent_id in (disabled, deleted):
            await job_events(js, subjects.job_requested(agent_id), 2)
        await asyncio.sleep(NOT_DISPATCHED_WINDOW_S)
        for agent_id in (disabled, deleted):
            assert await count(js, subjects.job_dispatched(agent_id)) == 1  # the first room's
            assert await named_dispatches(lk, f"down-{agent_id}") == []
    finally:
        config_sync.start().wait_ready(60)
