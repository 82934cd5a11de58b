"""SIGKILL the dispatcher mid-stream: every accepted webhook still ends in exactly one dispatch.

A few hundred real LiveKit rooms; the test posts their signed ``room_started`` webhooks
the way LiveKit does (retrying until a 2xx), while the dispatcher process is killed with
SIGKILL twice, once during ingestion and once during dispatch, and restarted each time.
Then LiveKit must hold exactly one dispatch per room and VOICE_JOBS exactly one
`JobDispatched` per job.
"""

import asyncio
import contextlib
import json
import signal
from collections.abc import Iterator

import httpx
import pytest
from livekit import api
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from core_voice_cli.stack import WORKER_AGENT_NAME
from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import connect
from core_voice_contracts.events import JobDispatched, JobRequested
from core_voice_contracts.permissions import Role
from core_voice_contracts.webhooks import JOB_ID_HEADER, OUTCOME_HEADER
from tests.fakes.webhooks import room_started_body, sign
from tests.harness.dispatcher import Rig, count, create_agent, named_dispatches, running_rig, unique

pytestmark = pytest.mark.integration

ROOMS = 300
KILL_AT = (80, 200)  # JobDispatched counts at which the dispatcher is SIGKILLed
SENDERS = 8


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    # Short timeouts so jobs in flight at a kill come back within seconds.
    with running_rig(
        tmp_path_factory.mktemp("dispatcher-crash"),
        webhooks=False,
        DISPATCHER_ACK_WAIT_S="4",
        DISPATCHER_LIVEKIT_TIMEOUT_S="0.5",
        DISPATCHER_ROUTE_TIMEOUT_S="1",
    ) as running:
        yield running


async def post_until_accepted(
    client: httpx.AsyncClient, rig: Rig, body: bytes, accepted: dict[str, str]
) -> None:
    """Post like LiveKit does: the same signed body again until a 2xx answer."""
    auth = sign(body, rig.stack.livekit.api_key, rig.stack.livekit.api_secret)
    while True:
        try:
            resp = await client.post(
                rig.webhook_url,
                content=body,
                headers={"Authorization": auth, "Content-Type": "application/webhook+json"},
            )
        except httpx.TransportError:
            await asyncio.sleep(0.1)
            continue
        if resp.status_code == 204:
            answer = resp.headers[OUTCOME_HEADER]
            assert answer in {"accepted", "duplicate"}, answer
            accepted[resp.headers[JOB_ID_HEADER]] = answer
            return
        assert resp.status_code >= 500, resp.text  # only an outage may refuse a good webhook
        await asyncio.sleep(0.1)


async def dispatched_job_ids(js: JetStreamContext, agent_id: str) -> list[str]:
    """The job id of every JobDispatched of ``agent_id`` in the stream, in order."""
    subject = subjects.job_dispatched(agent_id)
    total = await count(js, subject)
    sub = await js.subscribe(subject, ordered_consumer=True)
    ids: list[str] = []
    try:
        for _ in range(total):
            event = codec.decode_job_event((await sub.next_msg(timeout=10)).data)
            assert isinstance(event, JobDispatched)
            ids.append(event.job_id)
    finally:
        await sub.unsubscribe()
    return ids


async def test_sigkill_mid_stream_loses_nothing_and_dispatches_once(rig: Rig) -> None:
    agent_id = unique("crash")
    create_agent(rig, agent_id)
    lk = api.LiveKitAPI(rig.livekit_url, rig.stack.livekit.api_key, rig.stack.livekit.api_secret)
    nc, js = await connect(rig.nats.access(Role.OPERATOR), name="test-crash")
    try:
        meta = json.dumps({"agent_id": agent_id})
        rooms: dict[str, str] = {}
        for start in range(0, ROOMS, 50):
            created = await asyncio.gather(
                *(
                    lk.room.create_room(
                        api.CreateRoomRequest(name=f"{agent_id}-{i}", metadata=meta)
                    )
                    for i in range(start, min(ROOMS, start + 50))
                )
            )
            rooms.update({room.sid: room.name for room in created})

        bodies = asyncio.Queue[bytes]()
        for sid, name in rooms.items():
            bodies.put_nowait(room_started_body(name, sid, meta))
        accepted: dict[str, str] = {}

        async def sender(client: httpx.AsyncClient) -> None:
            while not bodies.empty():
                await post_until_accepted(client, rig, bodies.get_nowait(), accepted)
                await asyncio.sleep(0.02)  # ~400 webhooks/s overall: kills land mid-stream

        # Watch JobDispatched arrive; thresholds trigger the kills and the end.
        reached = {n: asyncio.Event() for n in (*KILL_AT, ROOMS)}
        seen = 0

        async def on_dispatched(_: Msg) -> None:
            nonlocal seen
            seen += 1
            for n, event in reached.items():
                if seen >= n:
                    event.set()

        watch = await js.subscribe(
            subjects.job_dispatched(agent_id), ordered_consumer=True, cb=on_dispatched
        )
        kills: list[int] = []

        async def killer() -> None:
            for threshold in KILL_AT:
                await reached[threshold].wait()
                dispatcher = rig.processes.pop()
                dispatcher.signal(signal.SIGKILL)
                kills.append(len(accepted))
                # Off the event loop: the senders keep retrying while it is down.
                await asyncio.to_thread(dispatcher.stop, 5)
                await asyncio.to_thread(rig.start, rig.dispatcher_process())

        async with httpx.AsyncClient(timeout=10) as client:
            async with asyncio.timeout(120):
                await asyncio.gather(killer(), *(sender(client) for _ in range(SENDERS)))

        # Both kills happened while webhooks were still arriving or jobs still pending.
        assert len(kills) == 2 and kills[0] < ROOMS, kills
        assert set(accepted) == {f"job-{sid}" for sid in rooms}

        async with asyncio.timeout(60):
            await reached[ROOMS].wait()
        await asyncio.sleep(1.0)  # nothing more may follow
        await watch.unsubscribe()
        ids = await dispatched_job_ids(js, agent_id)
        assert len(ids) == ROOMS and set(ids) == set(accepted)
        assert await count(js, subjects.job_requested(agent_id)) == ROOMS
        assert await count(js, subjects.job_rejected(agent_id)) == 0
        assert await count(js, subjects.job_expired(agent_id)) == 0

        # LiveKit holds exactly one dispatch per room, carrying that room's job.
        async def one_dispatch(sid: str, name: str) -> None:
            dispatches = await named_dispatches(lk, name)
            assert [d.agent_name for d in dispatches] == [WORKER_AGENT_NAME], (name, dispatches)
            job = codec.decode_job_event(dispatches[0].metadata.encode())
            assert isinstance(job, JobRequested) and job.job_id == f"job-{sid}"

        for start in range(0, ROOMS, 50):
            batch = list(rooms.items())[start : start + 50]
            await asyncio.gather(*(one_dispatch(sid, name) for sid, name in batch))

        # A graceful stop after all that is clean.
        assert rig.processes[-1].stop() == 0
    finally:
        with contextlib.suppress(Exception):
            await lk.aclose()
        await nc.drain()
