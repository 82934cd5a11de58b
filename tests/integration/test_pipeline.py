"""Webhook → JetStream → dispatch → LiveKit, and the metrics of it, on real servers.

A real livekit-server posts real webhooks to the dispatcher; config_sync, dispatcher and
telemetry run as separate processes (the voice worker is not needed here).
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import msgspec
import pytest
from livekit import api
from nats.js import JetStreamContext

from core_voice_cli.demo import demo_agent
from core_voice_cli.stack import Stack
from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import connect, publish
from core_voice_contracts.events import (
    JobDispatched,
    JobEvent,
    JobExpired,
    JobRejected,
    JobRequested,
    RejectReason,
)
from core_voice_contracts.streams import VOICE_JOBS
from tests.fakes.webhooks import room_started_body, sign

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("stack"), worker=False) as running:
        yield running


@pytest.fixture
async def lk(stack: Stack) -> AsyncIterator[api.LiveKitAPI]:
    client = api.LiveKitAPI(stack.livekit.http_url, stack.livekit.api_key, stack.livekit.api_secret)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def js(stack: Stack) -> AsyncIterator[JetStreamContext]:
    nc, js = await connect(stack.nats.url, name="test-pipeline")
    try:
        yield js
    finally:
        await nc.drain()


def admin(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.config_sync_url,
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        timeout=10,
    )


def create_agent(stack: Stack, agent_id: str) -> None:
    body = msgspec.structs.replace(demo_agent(), id=agent_id, name=f"agent {agent_id}")
    with admin(stack) as client:
        resp = client.post(
            "/api/v1/agents",
            content=msgspec.json.encode(body),
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 201, resp.text


async def job_events(
    js: JetStreamContext, subject: str, want: int, timeout: float = 15.0
) -> list[JobEvent]:
    """Read the stream for ``subject`` from the start until ``want`` events are there."""
    sub = await js.subscribe(subject, ordered_consumer=True)
    out: list[JobEvent] = []
    try:
        async with asyncio.timeout(timeout):
            while len(out) < want:
                msg = await sub.next_msg(timeout=timeout)
                out.append(codec.decode_job_event(msg.data))
    finally:
        await sub.unsubscribe()
    return out


async def count_messages(js: JetStreamContext, subject: str) -> int:
    info = await js.stream_info(VOICE_JOBS, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


def post_webhook(stack: Stack, body: bytes, authorization: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/webhook+json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return httpx.post(
        f"{stack.dispatcher_url}/webhook/livekit", content=body, headers=headers, timeout=10
    )


async def test_room_naming_an_agent_is_dispatched_to_the_worker_pool(
    stack: Stack, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = f"a-{uuid.uuid4().hex[:8]}"
    create_agent(stack, agent_id)
    room = f"room-{agent_id}"
    await lk.room.create_room(
        api.CreateRoomRequest(
            name=room, metadata=json.dumps({"agent_id": agent_id, "lead_id": "L1"})
        )
    )

    requested, dispatched = await job_events(
        js, subjects.job_requested(agent_id), 1
    ) + await job_events(js, subjects.job_dispatched(agent_id), 1)
    assert isinstance(requested, JobRequested) and requested.room_name == room
    assert requested.lead_id == "L1" and requested.trigger == "room_started"
    assert isinstance(dispatched, JobDispatched) and dispatched.job_id == requested.job_id
    assert dispatched.worker_agent_name == "core-voice" and not dispatched.already_existed

    # LiveKit really holds the dispatch, with the job as its metadata.
    # (LiveKit also lists its implicit dispatch for unnamed workers, agent_name "".)
    dispatches = [d for d in await lk.agent_dispatch.list_dispatch(room) if d.agent_name]
    assert [d.agent_name for d in dispatches] == ["core-voice"]
    job = codec.decode_job_event(dispatches[0].metadata.encode())
    assert job == requested


async def test_unknown_agent_and_missing_metadata_become_visible_rejections(
    stack: Stack, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    await lk.room.create_room(
        api.CreateRoomRequest(name=f"room-{ghost}", metadata=json.dumps({"agent_id": ghost}))
    )
    (rejected,) = await job_events(js, subjects.job_rejected(ghost), 1)
    assert isinstance(rejected, JobRejected)
    assert rejected.reason == RejectReason.UNKNOWN_AGENT and rejected.room_name == f"room-{ghost}"
    assert [d for d in await lk.agent_dispatch.list_dispatch(f"room-{ghost}") if d.agent_name] == []

    bare = f"bare-{uuid.uuid4().hex[:8]}"
    await lk.room.create_room(api.CreateRoomRequest(name=bare))
    await lk.room.create_room(api.CreateRoomRequest(name=f"{bare}-bad", metadata="not json"))
    sub = await js.subscribe(subjects.job_rejected(subjects.UNROUTED), ordered_consumer=True)
    seen: dict[str, RejectReason] = {}
    async with asyncio.timeout(15):
        while len({bare, f"{bare}-bad"} & seen.keys()) < 2:
            event = codec.decode_job_event((await sub.next_msg(timeout=15)).data)
            assert isinstance(event, JobRejected)
            seen[event.room_name] = event.reason
    await sub.unsubscribe()
    assert seen[bare] == RejectReason.NO_AGENT
    assert seen[f"{bare}-bad"] == RejectReason.INVALID_METADATA


async def test_job_for_a_room_that_is_gone_expires_and_is_never_recreated(
    stack: Stack, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = f"a-{uuid.uuid4().hex[:8]}"
    create_agent(stack, agent_id)
    room = f"gone-{agent_id}"
    job = JobRequested(
        job_id=f"job-RM_{agent_id}", room_name=room, room_sid="RM_gone", agent_id=agent_id
    )
    await publish(js, subjects.job_requested(agent_id), job, msg_id=job.job_id)
    (expired,) = await job_events(js, subjects.job_expired(agent_id), 1)
    assert isinstance(expired, JobExpired) and expired.job_id == job.job_id
    rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))
    assert list(rooms.rooms) == []


async def test_replayed_job_is_not_dispatched_twice(
    stack: Stack, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = f"a-{uuid.uuid4().hex[:8]}"
    create_agent(stack, agent_id)
    room = f"replay-{agent_id}"
    created = await lk.room.create_room(
        api.CreateRoomRequest(name=room, metadata=json.dumps({"agent_id": agent_id}))
    )
    (first,) = await job_events(js, subjects.job_dispatched(agent_id), 1)
    # Re-drive the same job as a replay would (new message id, so dedup does not hide it).
    job = JobRequested(
        job_id=f"job-{created.sid}", room_name=room, room_sid=created.sid, agent_id=agent_id
    )
    await publish(js, subjects.job_requested(agent_id), job, msg_id=f"{job.job_id}-replay")
    await asyncio.sleep(1.5)
    dispatches = [d for d in await lk.agent_dispatch.list_dispatch(room) if d.agent_name]
    assert len(dispatches) == 1
    assert isinstance(first, JobDispatched) and dispatches[0].id == first.dispatch_id


def test_webhook_bad_input_gets_4xx_and_never_5xx(stack: Stack) -> None:
    key, secret = stack.livekit.api_key, stack.livekit.api_secret
    body = room_started_body("r-bad", "RM_bad", json.dumps({"agent_id": "demo"}))
    cases = {
        "unsigned": (body, None, 401),
        "garbage token": (body, "Bearer not.a.jwt", 401),
        "wrong secret": (body, sign(body, key, "not-the-secret-but-long-enough-0123456789"), 401),
        "wrong key": (body, sign(body, "otherkey", secret), 401),
        "tampered body": (body.replace(b"r-bad", b"r-evil"), sign(body, key, secret), 401),
        "malformed json": (b"{not json", sign(b"{not json", key, secret), 400),
        "not utf-8": (b"\xff\xfe", sign(b"\xff\xfe", key, secret), 400),
        "oversized": (b"x" * (200 * 1024), sign(b"x" * (200 * 1024), key, secret), 413),
    }
    for name, (data, auth, status) in cases.items():
        resp = post_webhook(stack, data, auth)
        assert resp.status_code == status, (name, resp.status_code, resp.text)
        assert resp.json()["error"], name
    assert httpx.get(f"{stack.dispatcher_url}/healthz").status_code == 200


async def test_duplicate_webhook_for_a_room_collapses_into_one_job(
    stack: Stack, js: JetStreamContext
) -> None:
    agent_id = f"a-{uuid.uuid4().hex[:8]}"
    body = room_started_body(
        f"dup-{agent_id}", f"RM_{agent_id}", json.dumps({"agent_id": agent_id})
    )
    auth = sign(body, stack.livekit.api_key, stack.livekit.api_secret)
    for _ in range(3):
        resp = post_webhook(stack, body, auth)
        assert resp.status_code == 200 and resp.json()["status"] == "accepted"
    assert await count_messages(js, subjects.job_requested(agent_id)) == 1


def test_other_webhook_events_are_acknowledged_and_ignored(stack: Stack) -> None:
    body = json.dumps(
        {"event": "track_published", "id": "EV_x", "room": {"name": "r", "sid": "RM_x"}}
    ).encode()
    resp = post_webhook(stack, body, sign(body, stack.livekit.api_key, stack.livekit.api_secret))
    assert resp.status_code == 200 and resp.json()["status"] == "ignored"


async def test_metrics_count_jobs_by_agent(
    stack: Stack, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = f"m-{uuid.uuid4().hex[:8]}"
    create_agent(stack, agent_id)
    for i in range(2):
        await lk.room.create_room(
            api.CreateRoomRequest(
                name=f"m{i}-{agent_id}", metadata=json.dumps({"agent_id": agent_id})
            )
        )
    await job_events(js, subjects.job_dispatched(agent_id), 2)
    want = {
        f'corevoice_jobs_requested_total{{agent_id="{agent_id}"}} 2.0',
        f'corevoice_jobs_dispatched_total{{agent_id="{agent_id}"}} 2.0',
    }
    text = ""
    async with httpx.AsyncClient() as client:
        for _ in range(50):
            text = (await client.get(f"{stack.telemetry_url}/metrics")).text
            if want <= set(text.splitlines()):
                break
            await asyncio.sleep(0.1)
    assert want <= set(text.splitlines()), text[-2000:]
