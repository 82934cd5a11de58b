"""The dispatcher on real servers: webhooks in, routing through config_sync, dispatches out.

One rig per module: nats-server, a livekit-server that posts its real webhooks to the
dispatcher, config_sync and the dispatcher as separate processes. Tests isolate
themselves with unique agent ids and room names. Signed synthetic webhooks
(`tests.fakes.webhooks`) are used only where a test needs exact control of the request.
"""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Literal

import httpx
import msgspec
import pytest
from livekit import api, rtc
from nats.aio.client import Client
from nats.js import JetStreamContext

from core_voice_cli.procs import free_port, http_ready
from core_voice_cli.rooms import call_room
from core_voice_cli.stack import WORKER_AGENT_NAME
from core_voice_contracts import codec, subjects
from core_voice_contracts.admin_api import (
    AgentPatch,
    AgentStatus,
    LegacyAgentsSet,
    NumberSet,
    TrunkSet,
)
from core_voice_contracts.bus import connect, publish
from core_voice_contracts.events import (
    JobDispatched,
    JobExpired,
    JobRejected,
    JobRequested,
    RejectReason,
)
from core_voice_contracts.permissions import Role
from core_voice_contracts.room import HOLD_AGENT_NAME
from core_voice_contracts.routing import goes_to_legacy, pick_weighted
from core_voice_contracts.streams import VOICE_JOBS
from core_voice_contracts.webhooks import EVENT_HEADER, OUTCOME_HEADER, REASON_HEADER
from core_voice_dispatcher.lookups import PREFETCH_TTL_S
from tests.fakes.webhooks import (
    participant_body,
    room_finished_body,
    room_started_body,
    sign,
)
from tests.harness.dispatcher import (
    SIP_WAIT_S,
    Rig,
    admin,
    count,
    create_agent,
    create_campaign,
    named_dispatches,
    post,
    running_rig,
    unique,
)
from tests.harness.events import job_events, outcome_of

pytestmark = pytest.mark.integration


# --- the rig ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("dispatcher")) as running:
        yield running


@pytest.fixture
async def bus(rig: Rig) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc, js = await connect(rig.nats.access(Role.OPERATOR), name="test-dispatcher")
    try:
        yield nc, js
    finally:
        await nc.drain()


@pytest.fixture
def js(bus: tuple[Client, JetStreamContext]) -> JetStreamContext:
    return bus[1]


# --- helpers ---------------------------------------------------------------------------


def outcome(resp: httpx.Response) -> str:
    """What the endpoint did with a webhook it took (a 204 carries it in a header)."""
    assert resp.status_code == 204, (resp.status_code, resp.text)
    return resp.headers[OUTCOME_HEADER]


def signed(rig: Rig, body: bytes) -> str:
    return sign(body, rig.stack.livekit.api_key, rig.stack.livekit.api_secret)


@contextlib.asynccontextmanager
async def sip_caller(
    rig: Rig,
    room: str,
    *,
    dialed: str,
    trunk: str = "ST_unassigned",
    kind: Literal["sip", "standard"] = "sip",
) -> AsyncIterator[rtc.Room]:
    """A real participant of kind SIP, as LiveKit SIP creates one for an inbound call
    (or, ``kind="standard"``, a normal participant claiming to be one by its attributes).

    LiveKit itself then posts ``participant_joined`` with the caller's SIP attributes.
    """
    token = (
        api.AccessToken(rig.stack.livekit.api_key, rig.stack.livekit.api_secret)
        .with_identity("sip-caller")
        .with_kind(kind)
        .with_attributes(
            {
                "sip.trunkPhoneNumber": dialed,
                "sip.trunkID": trunk,
                "sip.phoneNumber": "+15550001111",
            }
        )
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )
    caller = rtc.Room()
    await caller.connect(rig.stack.livekit.url, token)
    try:
        yield caller
    finally:
        await caller.disconnect()


# --- webhooks --------------------------------------------------------------------------


def test_bad_input_gets_a_clear_4xx_and_never_a_5xx(rig: Rig) -> None:
    key, secret = rig.stack.livekit.api_key, rig.stack.livekit.api_secret
    body = room_started_body("r-bad", "RM_bad", json.dumps({"agent_id": "demo"}))
    huge = b"x" * (1024 * 1024)
    stale = room_started_body("r-old", "RM_old", created_at=time.time() - 3600)
    cases = {
        "unsigned": (body, None, 401, "missing_signature"),
        "garbage token": (body, "Bearer not.a.jwt", 401, "bad_signature"),
        "wrong secret": (body, sign(body, key, "not-the-secret-but-long-0123456789"), 401, None),
        "wrong key": (body, sign(body, "otherkey", secret), 401, "bad_signature"),
        "tampered body": (body.replace(b"r-bad", b"r-evil"), sign(body, key, secret), 401, None),
        "stale event": (stale, sign(stale, key, secret), 401, "stale_event"),
        "malformed json": (b"{not json", sign(b"{not json", key, secret), 400, "malformed_body"),
        "not utf-8": (b"\xff\xfe", sign(b"\xff\xfe", key, secret), 400, "malformed_body"),
        "not an object": (b"[1]", sign(b"[1]", key, secret), 400, "malformed_body"),
        "oversized": (huge, sign(huge, key, secret), 413, "body_too_large"),
        "oversized unsigned": (huge, None, 401, "missing_signature"),
    }
    for name, (data, auth, status, code) in cases.items():
        resp = post(rig, data, auth)
        assert resp.status_code == status, (name, resp.status_code, resp.text)
        assert resp.json()["error"] == (code or resp.json()["error"]), name
    assert httpx.get(f"{rig.dispatcher_url}/healthz").status_code == 200


async def test_a_replayed_or_resent_webhook_is_stored_once(rig: Rig, js: JetStreamContext) -> None:
    agent_id = unique("dup")
    body = room_started_body(
        f"room-{agent_id}", f"RM_{agent_id}", json.dumps({"agent_id": agent_id})
    )
    auth = signed(rig, body)
    answers = [outcome(post(rig, body, auth)) for _ in range(3)]
    assert answers == ["accepted", "duplicate", "duplicate"]
    # A different event id for the same room (LiveKit re-sending) is the same job too.
    again = room_started_body(
        f"room-{agent_id}", f"RM_{agent_id}", json.dumps({"agent_id": agent_id})
    )
    assert outcome(post(rig, again, signed(rig, again))) == "duplicate"
    assert await count(js, subjects.job_requested(agent_id)) == 1


def test_other_events_are_acknowledged_and_ignored(rig: Rig) -> None:
    now = str(int(time.time()))
    body = json.dumps(
        {"event": "track_published", "id": "EV_x", "createdAt": now, "numDropped": 3}
    ).encode()
    resp = post(rig, body, signed(rig, body))
    assert resp.status_code == 204 and outcome(resp) == "ignored" and resp.content == b""
    # LiveKit says it dropped webhooks before this one (queue overflow): that is visible.
    health = httpx.get(f"{rig.dispatcher_url}/healthz", timeout=5).json()
    assert health["webhooks"]["livekit_dropped"] >= 3
    joined = participant_body(
        "participant_joined", "r", "RM_y", "user-1", participant_kind="STANDARD"
    )
    resp = post(rig, joined, signed(rig, joined))
    assert (outcome(resp), resp.headers[EVENT_HEADER], resp.headers[REASON_HEADER]) == (
        "ignored",
        "participant_joined",
        "not_a_sip_caller",
    )
    finished = room_finished_body("r", "RM_y")
    assert outcome(post(rig, finished, signed(rig, finished))) == "noted"


def test_signed_webhooks_with_control_characters_get_an_answer(rig: Rig) -> None:
    """A value echoed into an answer header (the event name, the room sid's job id) with
    CR, LF or NUL made aiohttp drop the connection without any answer."""
    now = str(int(time.time()))
    room = {"sid": "RM_ctl", "name": "r-ctl"}
    bodies: dict[str, dict[str, object]] = {
        "event with CRLF": {"event": "room_started\r\nX-Evil: 1", "id": "EV_c1", "room": room},
        "event with NUL": {"event": "track\x00published", "id": "EV_c2"},
        "event with DEL": {"event": "x\x7f", "id": "EV_c3"},
        "room sid with CRLF": {
            "event": "room_started",
            "id": "EV_c4",
            "room": {"sid": "RM_\r\nNats-Msg-Id: x", "name": "r-ctl"},
        },
        "agent identity with CRLF": {
            "event": "participant_left",
            "id": "EV_c5",
            "room": room,
            "participant": {"identity": "agent-c\r\nX: y", "kind": "AGENT"},
        },
    }
    answers = {}
    for name, fields in bodies.items():
        body = json.dumps({**fields, "createdAt": now}).encode()
        resp = post(rig, body, signed(rig, body))
        answers[name] = (resp.status_code, resp.headers.get(OUTCOME_HEADER) or resp.json())
    assert answers == {
        "event with CRLF": (204, "ignored"),
        "event with NUL": (204, "ignored"),
        "event with DEL": (204, "ignored"),
        "room sid with CRLF": (400, {"error": "invalid_room"}),
        "agent identity with CRLF": (204, "noted"),
    }
    assert httpx.get(f"{rig.dispatcher_url}/healthz", timeout=5).status_code == 200


# --- routing and dispatch --------------------------------------------------------------


async def test_room_naming_an_agent_is_dispatched_to_the_pool(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = unique("a")
    create_agent(rig, agent_id)
    room = f"room-{agent_id}"
    created = await lk.room.create_room(
        api.CreateRoomRequest(
            name=room, metadata=json.dumps({"agent_id": agent_id, "lead_id": "L1"})
        )
    )
    (requested,) = await job_events(js, subjects.job_requested(agent_id), 1)
    (dispatched,) = await job_events(js, subjects.job_dispatched(agent_id), 1)
    assert isinstance(requested, JobRequested) and requested.room_sid == created.sid
    assert requested.lead_id == "L1" and requested.trigger == "room_started"
    assert isinstance(dispatched, JobDispatched) and dispatched.job_id == requested.job_id
    assert dispatched.worker_agent_name == WORKER_AGENT_NAME and not dispatched.already_existed
    assert dispatched.target == "pool" and dispatched.via == "agent"

    # One trace runs from the webhook through the job to its dispatch.
    traces = [
        (await js.get_last_msg(VOICE_JOBS, subject)).headers or {}
        for subject in (subjects.job_requested(agent_id), subjects.job_dispatched(agent_id))
    ]
    trace_ids = {h["traceparent"].split("-")[1] for h in traces}
    assert len(trace_ids) == 1 and traces[0]["traceparent"] != traces[1]["traceparent"]

    # LiveKit really holds the dispatch, with the job as its metadata.
    (dispatch,) = await named_dispatches(lk, room)
    assert dispatch.agent_name == WORKER_AGENT_NAME and dispatch.id == dispatched.dispatch_id
    in_metadata = codec.decode_job_event(dispatch.metadata.encode())
    assert isinstance(in_metadata, JobRequested)
    assert msgspec.structs.replace(in_metadata, traceparent="") == requested
    # ... and the dispatch's trace context, which the worker's call span continues.
    assert in_metadata.traceparent.split("-")[1] in trace_ids


def prefetch_counts(url: str) -> dict[str, int]:
    counts: dict[str, int] = httpx.get(f"{url}/healthz", timeout=5).json()["prefetch"]
    return counts


async def test_a_job_uses_the_lookups_prefetched_when_its_webhook_was_stored(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    before = prefetch_counts(rig.dispatcher_url)
    agent_id = unique("pre")
    create_agent(rig, agent_id)
    room = f"room-{agent_id}"
    await lk.room.create_room(
        api.CreateRoomRequest(name=room, metadata=json.dumps({"agent_id": agent_id}))
    )
    (dispatched,) = await job_events(js, subjects.job_dispatched(agent_id), 1)
    assert isinstance(dispatched, JobDispatched) and not dispatched.already_existed
    after = prefetch_counts(rig.dispatcher_url)
    assert after.get("started", 0) == before.get("started", 0) + 1
    assert after.get("used", 0) == before.get("used", 0) + 1
    assert len(await named_dispatches(lk, room)) == 1


async def test_with_two_replicas_prefetches_go_unused_and_every_room_is_dispatched_once(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    # LiveKit posts every webhook to the first replica; the shared durable consumer hands
    # the jobs to both. The first one's prefetches for jobs the second one got expire.
    second_port = free_port()
    second = rig.dispatcher_process("dispatcher-2", DISPATCHER_HTTP_PORT=str(second_port))
    second.ready = http_ready(f"http://127.0.0.1:{second_port}/healthz")
    rig.start(second)
    try:
        before = prefetch_counts(rig.dispatcher_url)
        agent_id = unique("two")
        create_agent(rig, agent_id)
        rooms = [f"room-{agent_id}-{i}" for i in range(24)]
        for room in rooms:
            await lk.room.create_room(
                api.CreateRoomRequest(name=room, metadata=json.dumps({"agent_id": agent_id}))
            )
        events = await job_events(js, subjects.job_dispatched(agent_id), len(rooms), timeout=30)
        assert sorted(e.room_name for e in events) == sorted(rooms)
        await asyncio.sleep(PREFETCH_TTL_S + 1)
        after = prefetch_counts(rig.dispatcher_url)
        started, used, expired = (
            after.get(k, 0) - before.get(k, 0) for k in ("started", "used", "expired")
        )
        assert started == len(rooms) and used + expired == started
        assert expired > 0, "the second replica settled none of the jobs"
        assert prefetch_counts(f"http://127.0.0.1:{second_port}") == {}
        for room in rooms:
            assert len(await named_dispatches(lk, room)) == 1
    finally:
        second.stop()
        rig.processes.remove(second)


async def test_unroutable_rooms_become_visible_rejections(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    ghost = unique("ghost")
    await lk.room.create_room(
        api.CreateRoomRequest(name=f"room-{ghost}", metadata=json.dumps({"agent_id": ghost}))
    )
    (rejected,) = await job_events(js, subjects.job_rejected(ghost), 1)
    assert isinstance(rejected, JobRejected) and rejected.reason == RejectReason.UNKNOWN_AGENT
    assert await named_dispatches(lk, f"room-{ghost}") == []

    bare, bad = unique("bare"), unique("bad")
    bare_room = await lk.room.create_room(api.CreateRoomRequest(name=bare))
    bad_room = await lk.room.create_room(api.CreateRoomRequest(name=bad, metadata="not json"))
    no_agent = await outcome_of(js, f"job-{bare_room.sid}", timeout=SIP_WAIT_S + 15)
    invalid = await outcome_of(js, f"job-{bad_room.sid}")
    assert isinstance(no_agent, JobRejected) and no_agent.reason == RejectReason.NO_AGENT
    assert "no SIP caller" in no_agent.detail
    assert isinstance(invalid, JobRejected) and invalid.reason == RejectReason.INVALID_METADATA
    assert invalid.agent_id == subjects.UNROUTED


async def test_a_job_for_a_room_that_is_gone_expires_and_is_never_recreated(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = unique("a")
    create_agent(rig, agent_id)
    room = f"gone-{agent_id}"
    job = JobRequested(
        job_id=f"job-RM_{agent_id}", room_name=room, room_sid="RM_gone", agent_id=agent_id
    )
    await publish(js, subjects.job_requested(agent_id), job, msg_id=job.job_id)
    (expired,) = await job_events(js, subjects.job_expired(agent_id), 1)
    assert isinstance(expired, JobExpired) and expired.job_id == job.job_id
    assert expired.detail == "room_gone"
    assert list((await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))).rooms) == []


async def test_room_finished_before_dispatch_expires_the_pending_job(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    # A room without metadata waits for a SIP caller; it finishes first.
    room = unique("short")
    created = await lk.room.create_room(api.CreateRoomRequest(name=room))
    await asyncio.sleep(0.3)
    await lk.room.delete_room(api.DeleteRoomRequest(room=room))
    expired = await outcome_of(js, f"job-{created.sid}", timeout=SIP_WAIT_S + 15)
    assert isinstance(expired, JobExpired) and expired.detail == "room_gone"
    assert list((await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))).rooms) == []


async def test_a_replayed_job_is_not_dispatched_twice(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = unique("a")
    create_agent(rig, agent_id)
    room = f"replay-{agent_id}"
    created = await lk.room.create_room(
        api.CreateRoomRequest(name=room, metadata=json.dumps({"agent_id": agent_id}))
    )
    (first,) = await job_events(js, subjects.job_dispatched(agent_id), 1)
    # Re-drive the same job as a replay would (new message id, so dedup does not hide it).
    job = JobRequested(
        job_id=f"job-{created.sid}", room_name=room, room_sid=created.sid, agent_id=agent_id
    )
    for n in range(3):
        await publish(js, subjects.job_requested(agent_id), job, msg_id=f"{job.job_id}-replay-{n}")
    await asyncio.sleep(1.5)
    dispatches = await named_dispatches(lk, room)
    assert isinstance(first, JobDispatched) and [d.id for d in dispatches] == [first.dispatch_id]
    assert await count(js, subjects.job_dispatched(agent_id)) == 1


async def dispatched_jobs(
    js: JetStreamContext, rooms: dict[str, str], timeout: float = 30.0
) -> dict[str, JobDispatched]:
    """room sid -> its JobDispatched, for every room in ``rooms`` (sid -> name)."""
    wanted = {f"job-{sid}": sid for sid in rooms}
    out: dict[str, JobDispatched] = {}
    sub = await js.subscribe(subjects.JOBS_ALL, ordered_consumer=True)
    try:
        async with asyncio.timeout(timeout):
            while len(out) < len(wanted):
                event = codec.decode_job_event((await sub.next_msg(timeout=timeout)).data)
                if event.job_id in wanted and not isinstance(event, JobRequested):
                    assert isinstance(event, JobDispatched), event
                    out[wanted[event.job_id]] = event
    finally:
        await sub.unsubscribe()
    return out


async def create_rooms(lk: api.LiveKitAPI, prefix: str, n: int, metadata: str) -> dict[str, str]:
    """``n`` rooms with ``metadata``; returns sid -> name."""
    created = await asyncio.gather(
        *(
            lk.room.create_room(api.CreateRoomRequest(name=f"{prefix}-{i}", metadata=metadata))
            for i in range(n)
        )
    )
    return {room.sid: room.name for room in created}


async def test_rooms_made_with_the_hold_agent_get_no_default_dispatch_and_one_job_each(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    """`rooms.call_room` (every room Core Voice creates): LiveKit makes no default
    (empty-name) dispatch, whose wasted job request is what caps bursts at ~21/s; the
    hold agent gets no job; the dispatcher still routes and dispatches each room once."""
    agent_id = unique("hold")
    create_agent(rig, agent_id)
    metadata = json.dumps({"agent_id": agent_id})
    plain = await lk.room.create_room(api.CreateRoomRequest(name=f"plain-{agent_id}"))
    created = await asyncio.gather(
        *(lk.room.create_room(call_room(f"hold-{agent_id}-{i}", metadata)) for i in range(20))
    )
    rooms = {r.sid: r.name for r in created}
    jobs = await dispatched_jobs(js, rooms)
    for sid, job in jobs.items():
        assert job.agent_id == agent_id and job.target == "pool" and not job.already_existed
        listed = {d.agent_name: d for d in await lk.agent_dispatch.list_dispatch(rooms[sid])}
        assert sorted(listed) == sorted([HOLD_AGENT_NAME, WORKER_AGENT_NAME]), sorted(listed)
        assert not listed[HOLD_AGENT_NAME].state.jobs
    # A room created without it gets LiveKit's default dispatch (agent name "").
    assert "" in {d.agent_name for d in await lk.agent_dispatch.list_dispatch(plain.name)}
    await asyncio.sleep(1.0)
    assert await count(js, subjects.job_dispatched(agent_id)) == len(rooms)


# --- routing through config_sync ---------------------------------------------------------


async def test_campaign_rooms_are_spread_by_weight_the_same_way_every_time(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    light, heavy, campaign = unique("light"), unique("heavy"), unique("camp")
    create_agent(rig, light)
    create_agent(rig, heavy)
    create_campaign(rig, campaign, {light: 1, heavy: 3})
    rooms = await create_rooms(lk, campaign, 24, json.dumps({"campaign_id": campaign}))
    jobs = await dispatched_jobs(js, rooms)
    for sid, job in jobs.items():
        # Deterministic per room: exactly the contract's weighted pick on the room sid.
        assert job.agent_id == pick_weighted(sid, [(light, 1), (heavy, 3)]), sid
        assert job.campaign_id == campaign and job.via == "campaign" and job.target == "pool"
        (dispatch,) = await named_dispatches(lk, rooms[sid])
        routed = codec.decode_job_event(dispatch.metadata.encode())
        assert isinstance(routed, JobRequested) and routed.agent_id == job.agent_id
    assert {job.agent_id for job in jobs.values()} == {light, heavy}


async def test_gradual_migration_sends_its_share_to_the_legacy_worker(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = unique("mig")
    legacy_name = f"legacy-{agent_id}"
    admin(rig, "PUT", "/tenants/default/legacy-agents", LegacyAgentsSet(names=[legacy_name]))
    create_agent(rig, agent_id, legacy_agent_name=legacy_name, legacy_percent=50)
    meta = json.dumps({"agent_id": agent_id})
    rooms = await create_rooms(lk, agent_id, 24, meta)
    jobs = await dispatched_jobs(js, rooms)
    for sid, job in jobs.items():
        legacy = goes_to_legacy(sid, agent_id, 50)
        assert job.target == ("legacy" if legacy else "pool"), sid
        assert job.worker_agent_name == (legacy_name if legacy else WORKER_AGENT_NAME)
        (dispatch,) = await named_dispatches(lk, rooms[sid])
        assert dispatch.agent_name == job.worker_agent_name
    assert {job.target for job in jobs.values()} == {"legacy", "pool"}

    # 10% -> 50% -> 100%: at 100 every new room stays on the legacy worker; at 0 none.
    admin(rig, "PATCH", f"/agents/{agent_id}", AgentPatch(legacy_percent=100))
    done = await dispatched_jobs(js, await create_rooms(lk, f"{agent_id}-all", 4, meta))
    assert {job.target for job in done.values()} == {"legacy"}
    admin(rig, "PATCH", f"/agents/{agent_id}", AgentPatch(legacy_percent=0))
    done = await dispatched_jobs(js, await create_rooms(lk, f"{agent_id}-none", 4, meta))
    assert {job.target for job in done.values()} == {"pool"}


async def test_disabled_agent_and_unmapped_number_are_rejected_with_the_reason(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = unique("off")
    create_agent(rig, agent_id, status=AgentStatus.DISABLED)
    await lk.room.create_room(
        api.CreateRoomRequest(name=f"room-{agent_id}", metadata=json.dumps({"agent_id": agent_id}))
    )
    (rejected,) = await job_events(js, subjects.job_rejected(agent_id), 1)
    assert isinstance(rejected, JobRejected) and rejected.reason == RejectReason.DISABLED_AGENT

    room = unique("sip-unmapped")
    created = await lk.room.create_room(api.CreateRoomRequest(name=room))
    async with sip_caller(rig, room, dialed="+15559870000"):
        outcome = await outcome_of(js, f"job-{created.sid}")
    assert isinstance(outcome, JobRejected) and outcome.reason == RejectReason.NO_ROUTE


async def test_a_sip_caller_is_routed_by_the_number_it_dialed(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = unique("sip")
    create_agent(rig, agent_id)
    number, trunk = f"+1555{uuid.uuid4().int % 10_000_000:07d}", unique("ST")
    admin(rig, "PUT", f"/trunks/{trunk}", TrunkSet(tenant_id="default"))  # an operator's step
    admin(rig, "PUT", f"/trunks/{trunk}/numbers/{number}", NumberSet(agent_id=agent_id))
    room = unique("call")
    created = await lk.room.create_room(api.CreateRoomRequest(name=room))  # no metadata
    async with sip_caller(rig, room, dialed=number, trunk=trunk):
        (dispatched,) = await job_events(js, subjects.job_dispatched(agent_id), 1)
    assert isinstance(dispatched, JobDispatched) and dispatched.job_id == f"job-{created.sid}"
    assert dispatched.via == "dialed_number" and dispatched.room_name == room
    (dispatch,) = await named_dispatches(lk, room)
    job = codec.decode_job_event(dispatch.metadata.encode())
    assert isinstance(job, JobRequested) and job.agent_id == agent_id
    assert job.dialed_number == number and job.participant_identity == "sip-caller"
    assert job.trunk_id == trunk


async def test_a_participant_that_sets_sip_attributes_is_not_a_sip_caller(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    """Only LiveKit's participant kind SIP makes a caller. ``sip.*`` attributes, which a
    normal participant can carry (from its token, or set itself), must not pick the
    number, hence the agent and tenant, that its room is routed to."""
    agent_id = unique("sipfake")
    create_agent(rig, agent_id)
    number, trunk = f"+1555{uuid.uuid4().int % 10_000_000:07d}", unique("ST")
    admin(rig, "PUT", f"/trunks/{trunk}", TrunkSet(tenant_id="default"))
    admin(rig, "PUT", f"/trunks/{trunk}/numbers/{number}", NumberSet(agent_id=agent_id))
    room = unique("fake-sip")
    created = await lk.room.create_room(api.CreateRoomRequest(name=room))  # no metadata
    async with sip_caller(rig, room, dialed=number, trunk=trunk, kind="standard"):
        outcome = await outcome_of(js, f"job-{created.sid}")
    assert isinstance(outcome, JobRejected) and outcome.reason == RejectReason.NO_AGENT
    assert await count(js, subjects.job_dispatched(agent_id)) == 0
    assert await named_dispatches(lk, room) == []


async def test_a_job_whose_sip_caller_hung_up_expires(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = unique("a")
    create_agent(rig, agent_id)
    room = f"hangup-{agent_id}"
    created = await lk.room.create_room(
        api.CreateRoomRequest(name=room, metadata=json.dumps({"agent_id": agent_id}))
    )
    await job_events(js, subjects.job_dispatched(agent_id), 1)  # the room's own job
    # A second job for the live room, triggered by a caller who is no longer there.
    job = JobRequested(
        job_id=f"job-hangup-{agent_id}",
        room_name=room,
        room_sid=created.sid,
        agent_id=agent_id,
        trigger="participant_joined",
        participant_identity="sip_gone",
    )
    await publish(js, subjects.job_requested(agent_id), job, msg_id=job.job_id)
    (expired,) = await job_events(js, subjects.job_expired(agent_id), 1)
    assert isinstance(expired, JobExpired) and expired.detail == "caller_left"
    assert len(await named_dispatches(lk, room)) == 1


async def test_a_config_sync_outage_delays_dispatch_and_loses_nothing(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = unique("outage")
    create_agent(rig, agent_id)
    config_sync = next(p for p in rig.processes if p.name == "config-sync")
    config_sync.stop()
    try:
        room = f"room-{agent_id}"
        await lk.room.create_room(
            api.CreateRoomRequest(name=room, metadata=json.dumps({"agent_id": agent_id}))
        )
        (requested,) = await job_events(js, subjects.job_requested(agent_id), 1)
        await asyncio.sleep(1.0)  # the consumer is retrying meanwhile
        assert await count(js, subjects.job_dispatched(agent_id)) == 0
    finally:
        config_sync.start().wait_ready(60)
    (dispatched,) = await job_events(js, subjects.job_dispatched(agent_id), 1, timeout=30)
    assert dispatched.job_id == requested.job_id
    assert len(await named_dispatches(lk, room)) == 1


# Last in the module: re-creating the consumer re-drives the module's recent jobs.
async def test_a_deleted_consumer_is_recreated_and_nothing_is_lost(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = unique("again")
    create_agent(rig, agent_id)
    await js.delete_consumer(VOICE_JOBS, "dispatcher")  # an operator's slip
    room = f"room-{agent_id}"
    await lk.room.create_room(
        api.CreateRoomRequest(name=room, metadata=json.dumps({"agent_id": agent_id}))
    )
    (dispatched,) = await job_events(js, subjects.job_dispatched(agent_id), 1, timeout=30)
    assert isinstance(dispatched, JobDispatched) and dispatched.room_name == room
    assert (await js.consumer_info(VOICE_JOBS, "dispatcher")).name == "dispatcher"
    assert "dispatch consumer deleted" in (rig.base / "logs" / "dispatcher.log").read_text()
    assert len(await named_dispatches(lk, room)) == 1
