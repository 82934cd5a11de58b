"""A minimal real livekit-agents worker: registers under an agent name and takes jobs.

For dispatcher tests that need LiveKit to see a worker (one that takes or declines the
jobs LiveKit offers) without the voice worker's providers. Each job joins the room as
``agent-<job id>`` (kind AGENT) with the ``corevoice.*`` attributes and stays until the
room closes or the job is ended.

Run as a child process (configured by environment, no arguments beyond ``start``)::

    MINIMAL_WORKER_AGENT_NAME=core-voice LIVEKIT_URL=... LIVEKIT_API_KEY=... \
        LIVEKIT_API_SECRET=... python -m tests.fakes.minimal_worker start

It logs ``registered worker`` once LiveKit knows it, and ``job accepted`` (with the
job id) or ``job declined`` for each offer. ``MINIMAL_WORKER_FULL=1`` makes it report
itself full, so LiveKit never assigns it anything.
"""

import asyncio
import logging
import os

from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, JobRequest, cli

from core_voice_contracts.codec import decode_job_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import JobRequested
from core_voice_contracts.room import (
    ATTR_AGENT_ID,
    ATTR_CALL_ID,
    ATTR_JOB_ID,
    ATTR_WORKER_ID,
    agent_identity,
)

AGENT_NAME_ENV = "MINIMAL_WORKER_AGENT_NAME"
FULL_ENV = "MINIMAL_WORKER_FULL"
WORKER_ID = "minimal-worker"

log = logging.getLogger("minimal_worker")


def _attributes(request: JobRequest) -> dict[str, str]:
    attrs = {ATTR_CALL_ID: request.job.id, ATTR_WORKER_ID: WORKER_ID}
    try:
        job = decode_job_event(request.job.metadata.encode())
    except DecodeError:
        return attrs
    if isinstance(job, JobRequested):
        attrs |= {ATTR_JOB_ID: job.job_id, ATTR_AGENT_ID: job.agent_id}
    return attrs


async def on_request(request: JobRequest) -> None:
    if os.environ.get(FULL_ENV) == "1":
        log.info("job declined", extra={"job": request.job.id})
        await request.reject()
        return
    log.info("job accepted", extra={"job": request.job.id})
    await request.accept(identity=agent_identity(request.job.id), attributes=_attributes(request))


async def entrypoint(ctx: JobContext) -> None:
    """Join, then stay until the room goes away (module level: job executors import it)."""
    gone = asyncio.Event()
    ctx.room.on("disconnected", lambda *_: gone.set())
    await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
    await gone.wait()


def create_server() -> AgentServer:
    full = os.environ.get(FULL_ENV) == "1"
    server = AgentServer(
        job_executor_type=JobExecutorType.THREAD,
        load_fnc=lambda: 1.0 if full else 0.0,
        load_threshold=0.5,
        num_idle_processes=0,
        port=0,
        host="127.0.0.1",
    )
    server.rtc_session(entrypoint, agent_name=os.environ[AGENT_NAME_ENV], on_request=on_request)
    return server


if __name__ == "__main__":
    cli.run_app(create_server())
