"""``CallFailed(worker_lost)`` for a call whose worker died, seen by the dispatcher.

Real servers (the dispatcher rig, LiveKit posting its webhooks to the dispatcher). A
call's agent participant (kind AGENT, identity ``agent-<call id>``, the ``corevoice.*``
attributes a worker sets) joins from a child process, which is then SIGKILLed: its
connection dies the way a killed worker's does, LiveKit notices (~20 s) and posts
``participant_left``, and after the grace period the dispatcher reports the call lost
on VOICE_CALLS. A call whose worker reported its end first gets no second report.
"""

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from livekit import api
from nats.js import JetStreamContext

from core_voice_cli.procs import ManagedProcess
from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import MSG_ID_HEADER, connect, publish
from core_voice_contracts.events import (
    CallEnded,
    CallFailed,
    CallFailure,
    CallStarted,
    JobAccepted,
    WorkerStatus,
    call_outcome_msg_id,
    call_started_msg_id,
    job_accepted_msg_id,
)
from core_voice_contracts.permissions import Role
from core_voice_contracts.room import (
    ATTR_AGENT_ID,
    ATTR_CALL_ID,
    ATTR_CAMPAIGN_ID,
    ATTR_CONFIG_VERSION,
    ATTR_JOB_ID,
    ATTR_TENANT_ID,
    ATTR_WORKER_ID,
    agent_identity,
)
from core_voice_contracts.streams import VOICE_CALLS
from tests.harness.dispatcher import Rig, eventually, running_rig, unique

pytestmark = pytest.mark.integration

GRACE_S = 2.0
LOST_WITHIN_S = 60.0
"""LiveKit notices a killed participant's dead connection after ~20 s (ICE + ping timeouts)."""

AGENT_SCRIPT = """
import asyncio, os
from livekit import rtc

async def main() -> None:
    room = rtc.Room()
    await room.connect(os.environ["LK_URL"], os.environ["LK_TOKEN"])
    print("joined", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(
        tmp_path_factory.mktemp("dispatcher-worker-lost"),
        DISPATCHER_WORKER_LOST_GRACE_S=str(GRACE_S),
    ) as running:
        yield running


def call_counts(rig: Rig) -> dict[str, int]:
    found: dict[str, int] = httpx.get(f"{rig.dispatcher_url}/healthz", timeout=5).json()["calls"]
    return found


def attributes(call_id: str, agent_id: str) -> dict[str, str]:
    return {
        ATTR_CALL_ID: call_id,
        ATTR_JOB_ID: f"job-RM_{call_id}",
        ATTR_AGENT_ID: agent_id,
        ATTR_TENANT_ID: "tenant-wl",
        ATTR_CAMPAIGN_ID: "camp-wl",
        ATTR_WORKER_ID: "worker-7",
        ATTR_CONFIG_VERSION: "3",
    }


@contextlib.asynccontextmanager
async def agent_in_room(
    rig: Rig, room: str, call_id: str, agent_id: str
) -> AsyncIterator[ManagedProcess]:
    """A call's agent participant, joined from its own process (SIGKILL it to lose it)."""
    token = (
        api.AccessToken(rig.stack.livekit.api_key, rig.stack.livekit.api_secret)
        .with_identity(agent_identity(call_id))
        .with_kind("agent")
        .with_attributes(attributes(call_id, agent_id))
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )
    process = ManagedProcess(
        f"agent-{call_id}",
        [sys.executable, "-c", AGENT_SCRIPT],
        log_dir=rig.base / "logs",
        env=rig.dispatcher_env(LK_URL=rig.stack.livekit.url, LK_TOKEN=token),
        ready=lambda: "joined" in process.log_tail(5),
    )
    process.start()
    try:
        await asyncio.to_thread(process.wait_ready, 30)
        yield process
    finally:
        process.stop(grace=1)


async def kill_and_wait_until_gone(
    lk: api.LiveKitAPI, process: ManagedProcess, room: str, identity: str
) -> None:
    process.signal(signal.SIGKILL)
    async with asyncio.timeout(LOST_WITHIN_S):
        while True:
            listed = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            if all(p.identity != identity for p in listed.participants):
                return
            await asyncio.sleep(0.5)


async def call_events(js: JetStreamContext, subject: str) -> list[tuple[object, str]]:
    """Every stored event on ``subject`` with its message id."""
    info = await js.stream_info(VOICE_CALLS, subjects_filter=subject)
    stored = (info.state.subjects or {}).get(subject, 0)
    if not stored:
        return []
    sub = await js.subscribe(subject, ordered_consumer=True)
    out: list[tuple[object, str]] = []
    try:
        while len(out) < stored:
            msg = await sub.next_msg(timeout=5)
            out.append(
                (codec.decode_call_event(msg.data), (msg.headers or {}).get(MSG_ID_HEADER, ""))
            )
    finally:
        await sub.unsubscribe()
    return out


async def test_a_killed_worker_s_call_is_reported_lost_with_its_ids(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id, call_id = unique("wl"), f"AJ_{unique('lost')}"
    room = f"room-{call_id}"
    await lk.room.create_room(api.CreateRoomRequest(name=room))
    before = call_counts(rig)
    async with agent_in_room(rig, room, call_id, agent_id) as agent:
        await kill_and_wait_until_gone(lk, agent, room, agent_identity(call_id))

    subject = subjects.call_failed(agent_id)

    async def reported() -> bool:
        return bool(await call_events(js, subject))

    await eventually(reported, timeout=GRACE_S + 10)
    ((failed, msg_id),) = await call_events(js, subject)
    assert isinstance(failed, CallFailed) and msg_id == call_outcome_msg_id(call_id)
    assert failed.error == CallFailure.WORKER_LOST and not failed.retryable
    assert (failed.call_id, failed.job_id, failed.room_name) == (call_id, f"job-RM_{call_id}", room)
    assert (failed.agent_id, failed.tenant_id, failed.campaign_id) == (
        agent_id,
        "tenant-wl",
        "camp-wl",
    )
    assert (failed.worker_id, failed.config_version) == ("worker-7", 3)
    assert "agent participant left the room" in failed.detail and failed.duration_s > 0
    after = call_counts(rig)
    assert after["worker_lost"] == before.get("worker_lost", 0) + 1
    log = (rig.base / "logs" / "dispatcher.log").read_text()
    assert '"call worker lost"' in log


async def test_a_call_that_ended_normally_is_not_reported_lost(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id, call_id = unique("wl"), f"AJ_{unique('ended')}"
    room = f"room-{call_id}"
    await lk.room.create_room(api.CreateRoomRequest(name=room))
    before = call_counts(rig)
    async with agent_in_room(rig, room, call_id, agent_id) as agent:
        # The worker reports the end first (then its process dies before it left the room).
        ended = CallEnded(
            call_id=call_id,
            job_id=f"job-RM_{call_id}",
            room_name=room,
            agent_id=agent_id,
            tenant_id="tenant-wl",
            config_version=3,
            duration_s=1.0,
        )
        ack = await publish(
            js, subjects.call_ended(agent_id), ended, msg_id=call_outcome_msg_id(call_id)
        )
        assert not ack.duplicate
        await kill_and_wait_until_gone(lk, agent, room, agent_identity(call_id))

    async def checked() -> bool:
        return call_counts(rig).get("ended_normally", 0) > before.get("ended_normally", 0)

    await eventually(checked, timeout=GRACE_S + 10)
    after = call_counts(rig)
    assert after.get("worker_lost", 0) == before.get("worker_lost", 0)
    assert await call_events(js, subjects.call_failed(agent_id)) == []
    assert [e for e, _ in await call_events(js, subjects.call_ended(agent_id))] == [ended]


async def test_a_call_whose_pool_vanished_before_it_started_is_reported_lost(
    rig: Rig, js: JetStreamContext
) -> None:
    """A pool killed between LiveKit's assignment (its `JobAccepted`) and its agent joining
    the room leaves no participant, so no webhook comes. The dispatcher follows the pools'
    heartbeats: a call accepted by a pool silent for 3 intervals plus the grace period,
    never started, is reported `worker_lost`. A started call, and a call on a pool that
    keeps its heartbeat, are not."""
    agent_id = unique("us")
    lost, started, alive = (f"AJ_{unique(name)}" for name in ("lost", "started", "alive"))
    before = call_counts(rig)
    pool, pool_js = await connect(rig.nats.access(Role.WORKER), name="test-pools", ensure=False)
    try:

        async def heartbeat(worker_id: str) -> None:
            status = WorkerStatus(worker_id=worker_id, capacity=4, active_calls=1, interval_s=0.5)
            await pool.publish(subjects.WORKER_STATUS, codec.encode(status))

        for worker_id in ("pool-gone", "pool-live"):
            await heartbeat(worker_id)
        await pool.flush()
        for call_id, worker_id in (
            (lost, "pool-gone"),
            (started, "pool-gone"),
            (alive, "pool-live"),
        ):
            accepted = JobAccepted(
                job_id=f"job-{call_id}",
                room_name=f"room-{call_id}",
                agent_id=agent_id,
                call_id=call_id,
                worker_id=worker_id,
                campaign_id="camp-us",
            )
            await publish(
                pool_js,
                subjects.job_accepted(agent_id),
                accepted,
                msg_id=job_accepted_msg_id(call_id),
            )
        call = CallStarted(
            call_id=started,
            job_id=f"job-{started}",
            room_name=f"room-{started}",
            agent_id=agent_id,
            tenant_id="tenant-us",
            config_version=1,
            worker_id="pool-gone",
        )
        await publish(
            pool_js, subjects.call_started(agent_id), call, msg_id=call_started_msg_id(started)
        )
        subject = subjects.call_failed(agent_id)

        async def reported() -> bool:
            await heartbeat("pool-live")  # pool-gone is silent from here on
            return bool(await call_events(js, subject))

        await eventually(reported, timeout=3 * 0.5 + GRACE_S + 10, interval=0.25)
        for _ in range(8):  # the live pool's call stays unreported
            await heartbeat("pool-live")
            await asyncio.sleep(0.5)
    finally:
        await pool.drain()
    ((failed, msg_id),) = await call_events(js, subject)
    assert isinstance(failed, CallFailed) and msg_id == call_outcome_msg_id(lost)
    assert failed.error == CallFailure.WORKER_LOST
    assert (failed.call_id, failed.job_id, failed.room_name) == (
        lost,
        f"job-{lost}",
        f"room-{lost}",
    )
    assert (failed.worker_id, failed.campaign_id) == ("pool-gone", "camp-us")
    assert "was not heard from" in failed.detail and "before the call started" in failed.detail
    after = call_counts(rig)
    assert after["worker_lost"] == before.get("worker_lost", 0) + 1
    async with httpx.AsyncClient(timeout=5) as client:
        health = (await client.get(f"{rig.dispatcher_url}/healthz")).json()
    unstarted = health["unstarted_calls"]
    assert unstarted["lost"] == 1 and unstarted["started"] >= 1
    assert unstarted["followed"] == 1  # the live pool's call
