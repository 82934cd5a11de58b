"""A job the pool took but could start no process for ends in `CallFailed(launch_failed)`.

livekit-agents launches the job's process inside `JobRequest.accept`, after LiveKit's
assignment (when the pool has already said `JobAccepted`). When no process becomes
available ("failed to acquire process for job after 3 attempts", seen in the cluster
tests on a loaded machine) nothing runs the call, so nothing would ever report its end:
the pool reports it. Real NATS and the pool's real runtime and publisher; the launch
failure is the `RuntimeError` livekit-agents' process pool raises.
"""

import asyncio
from pathlib import Path

import pytest
from livekit.agents import JobRequest
from livekit.agents.job import JobAcceptArguments
from livekit.protocol import agent, models
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from core_voice_cli.servers import NatsServer
from core_voice_contracts import subjects
from core_voice_contracts.codec import decode_call_event, decode_job_event, encode
from core_voice_contracts.events import CallFailed, CallFailure, JobAccepted, JobRequested
from core_voice_contracts.streams import VOICE_CALLS, VOICE_JOBS
from core_voice_worker.server import PoolServer
from tests.harness.pool import pool_settings, running_pool

pytestmark = pytest.mark.integration


def _offer(agent_id: str, n: int) -> tuple[JobRequested, agent.Job]:
    job = JobRequested(
        job_id=f"job-{agent_id}-{n}",
        room_name=f"room-{agent_id}-{n}",
        room_sid=f"RM_{agent_id}_{n}",
        agent_id=agent_id,
    )
    lk_job = agent.Job(
        id=f"AJ_{agent_id}_{n}",
        metadata=encode(job).decode(),
        room=models.Room(name=job.room_name, sid=job.room_sid),
    )
    return job, lk_job


async def _request(server: PoolServer, lk_job: agent.Job, *, assigned: bool) -> None:
    """Offer ``lk_job`` to the server; its accept fails as the process pool does, after
    LiveKit's assignment (``assigned``) or before it."""

    async def on_accept(_: JobAcceptArguments) -> None:
        if assigned:  # what livekit-agents does when LiveKit answers the acceptance
            # (run() creates this table; the server is not run here)
            pending = server.__dict__.setdefault("_pending_assignments", {})
            pending[lk_job.id] = asyncio.get_running_loop().create_future()
            server._handle_assignment(agent.JobAssignment(job=lk_job))
        raise RuntimeError("no process became available after 3 attempts")

    async def on_reject(_: bool) -> None:
        raise AssertionError("the pool never rejects here")

    request = JobRequest(job=lk_job, on_reject=on_reject, on_accept=on_accept)
    with pytest.raises(RuntimeError, match="no process became available"):
        await server._on_request(request)


async def test_a_taken_job_whose_launch_fails_ends_in_call_failed(
    nats_server: NatsServer, bus: tuple[Client, JetStreamContext], tmp_path: Path
) -> None:
    _, js = bus
    settings = pool_settings(nats_server, "w-launch")
    async with running_pool(settings, tmp_path / "link") as runtime:
        server = PoolServer(settings, runtime)
        job, lk_job = _offer("launch-fails", 1)
        await _request(server, lk_job, assigned=True)
        assert await runtime.publisher.flush(5)

    accepted = decode_job_event(
        (await js.get_last_msg(VOICE_JOBS, subjects.job_accepted(job.agent_id))).data or b""
    )
    assert isinstance(accepted, JobAccepted) and accepted.call_id == lk_job.id
    failed = decode_call_event(
        (await js.get_last_msg(VOICE_CALLS, subjects.call_failed(job.agent_id))).data or b""
    )
    assert isinstance(failed, CallFailed)
    assert (failed.call_id, failed.job_id, failed.room_name) == (
        lk_job.id,
        job.job_id,
        job.room_name,
    )
    assert failed.error == CallFailure.LAUNCH_FAILED
    assert failed.worker_id == "w-launch"
    assert "RuntimeError" in failed.detail


async def test_a_launch_failing_before_the_assignment_reports_no_call(
    nats_server: NatsServer, bus: tuple[Client, JetStreamContext], tmp_path: Path
) -> None:
    """Not assigned: LiveKit offers the job to another worker, so there is no call here."""
    _, js = bus
    settings = pool_settings(nats_server, "w-launch-2")
    async with running_pool(settings, tmp_path / "link") as runtime:
        server = PoolServer(settings, runtime)
        job, lk_job = _offer("launch-unassigned", 1)
        await _request(server, lk_job, assigned=False)
        assert await runtime.publisher.flush(5)
    with pytest.raises(NotFoundError):
        await js.get_last_msg(VOICE_CALLS, subjects.call_failed(job.agent_id))
