"""LIVEKIT_API_SECRET never leaves the dispatcher: not in its logs, events, answers, errors.

A livekit-server with a distinctive key pair of its own posts real webhooks; the test then
drives the dispatcher through everything that logs: good and forged webhooks, unknown
agents, a LiveKit outage it retries through, one that outlasts the retry budget (the job
is rejected with the reason), a bad configuration that refuses to start, and graceful
stops. Then it scans every byte the dispatcher wrote and every event it stored.
"""

import asyncio
import base64
import json
import secrets
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from livekit import api

from core_voice_contracts import subjects
from core_voice_contracts.bus import connect, publish
from core_voice_contracts.events import (
    JobDispatched,
    JobExpired,
    JobRejected,
    JobRequested,
    RejectReason,
)
from core_voice_contracts.permissions import Role
from core_voice_contracts.streams import VOICE_JOBS
from tests.fakes.webhooks import room_started_body, sign
from tests.harness.dispatcher import Rig, create_agent, livekit_process, post, running_rig, unique
from tests.harness.events import outcome_of

pytestmark = pytest.mark.integration

KEY = "lk-secrets-test"
SECRET = f"sk-canary-{secrets.token_hex(24)}"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(
        tmp_path_factory.mktemp("dispatcher-secrets"),
        keys=(KEY, SECRET),
        DISPATCHER_LIVEKIT_TIMEOUT_S="1",
        DISPATCHER_ACK_WAIT_S="8",
        LOG_LEVEL="DEBUG",
    ) as running:
        yield running


def forms_of(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        raw.hex(),
    ]


async def test_the_livekit_secret_appears_nowhere(rig: Rig) -> None:
    lk = api.LiveKitAPI(rig.livekit_url, KEY, SECRET)
    nc, js = await connect(rig.nats.access(Role.OPERATOR), name="test-secrets")
    try:
        # A real webhook and a real dispatch, signed and verified with the secret.
        agent_id = unique("sec")
        create_agent(rig, agent_id)
        room = await lk.room.create_room(
            api.CreateRoomRequest(
                name=f"room-{agent_id}", metadata=json.dumps({"agent_id": agent_id})
            )
        )
        assert isinstance(await outcome_of(js, f"job-{room.sid}"), JobDispatched)
        ghost = await lk.room.create_room(
            api.CreateRoomRequest(name=unique("ghost"), metadata=json.dumps({"agent_id": "ghost"}))
        )
        assert isinstance(await outcome_of(js, f"job-{ghost.sid}"), JobRejected)

        # Forged, tampered and malformed webhooks, and the answers they get.
        body = room_started_body("r", "RM_forged", json.dumps({"agent_id": agent_id}))
        answers = [
            post(rig, body, sign(body, KEY, SECRET[:-1] + "x")),
            post(rig, body + b" ", sign(body, KEY, SECRET)),
            post(rig, b"{oops", sign(b"{oops", KEY, SECRET)),
            post(rig, body, "Bearer " + SECRET),
        ]
        assert [a.status_code for a in answers] == [401, 401, 400, 401]
        async with httpx.AsyncClient(timeout=5) as client:
            health = await client.get(f"{rig.dispatcher_url}/healthz")

        # LiveKit down while a job is due: the dispatcher retries with backoff, then, with
        # LiveKit back (a fresh server, so the room is gone), records the job expired.
        livekit = next(p for p in rig.processes if p.name == "livekit-server")
        livekit.stop()
        job = JobRequested(
            job_id=f"job-outage-{agent_id}",
            room_name="outage",
            room_sid="RM_outage",
            agent_id=agent_id,
        )
        await publish(js, subjects.job_requested(agent_id), job, msg_id=job.job_id)
        await asyncio.sleep(2.0)
        rig.processes[rig.processes.index(livekit)] = livekit_process(rig).start().wait_ready(30)
        assert isinstance(await outcome_of(js, job.job_id, timeout=30), JobExpired)

        # LiveKit down for longer than the retry budget (here 2 attempts): the job is
        # rejected, with the reason and the last error recorded.
        first = next(p for p in rig.processes if p.name == "dispatcher")
        assert first.stop() == 0  # a graceful stop: one SIGTERM (a second could land after
        # the loop closed and its handler was gone, and kill the exiting process)
        rig.processes.remove(first)
        rig.start(rig.dispatcher_process(DISPATCHER_MAX_DELIVER="2"))
        livekit = next(p for p in rig.processes if p.name == "livekit-server")
        livekit.stop()
        job = msgspec.structs.replace(job, job_id=f"job-budget-{agent_id}")
        await publish(js, subjects.job_requested(agent_id), job, msg_id=job.job_id)
        rejected = await outcome_of(js, job.job_id, timeout=30)
        rig.processes[rig.processes.index(livekit)] = livekit_process(rig).start().wait_ready(30)
        assert isinstance(rejected, JobRejected)
        assert rejected.reason == RejectReason.DISPATCH_FAILED
        assert rejected.detail == "livekit_ClientConnectorError (after 2 attempts)"

        # Every event the dispatcher stored.
        stored: list[bytes] = []
        sub = await js.subscribe(subjects.JOBS_ALL, ordered_consumer=True)
        info = await js.stream_info(VOICE_JOBS)
        for _ in range(info.state.messages):
            msg = await sub.next_msg(timeout=5)
            stored.append(msg.data + json.dumps(msg.headers or {}).encode())
        await sub.unsubscribe()
    finally:
        await lk.aclose()
        await nc.drain()

    # A configuration it refuses: the error names variables, never values.
    refused = rig.dispatcher_process("dispatcher-refused", DISPATCHER_WEBHOOK_MAX_AGE_S="3600")
    refused.ready = None
    refused.start()
    assert refused._proc is not None and refused._proc.wait(timeout=30) == 2
    refused.stop()

    dispatcher = next(p for p in rig.processes if p.name == "dispatcher")
    assert dispatcher.stop() == 0

    logs = (rig.base / "logs" / "dispatcher.log").read_text()
    refused_log = (rig.base / "logs" / "dispatcher-refused.log").read_text()
    assert "dispatch retry" in logs and "livekit_" in logs  # the outage was seen and logged
    assert "webhook rejected" in logs and "dispatcher stopped" in logs
    assert "DISPATCHER_WEBHOOK_MAX_AGE_S" in refused_log
    for form in forms_of(SECRET):
        for name, text in [
            ("dispatcher log", logs),
            ("refused dispatcher log", refused_log),
            ("health", health.text),
            *((f"answer {i}", a.text) for i, a in enumerate(answers)),
        ]:
            assert form not in text, f"secret found in {name}"
        for data in stored:
            assert form.encode() not in data, "secret found in a stored event"
