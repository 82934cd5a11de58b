"""The worker process: one `AgentServer` registered under the pool's agent name.

Every agent is served by the same entrypoint; what differs per call is only the runtime
config it loads. The VAD model loads once per job process, at prewarm.
"""

import functools
import logging

from livekit.agents import AgentServer, JobContext, JobProcess, JobRequest
from livekit.plugins import silero

from core_voice_worker.capacity import CallCap
from core_voice_worker.session import Call
from core_voice_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

VAD_KEY = "vad"


def prewarm(proc: JobProcess) -> None:
    proc.userdata[VAD_KEY] = silero.VAD.load()


@functools.cache
def job_settings() -> WorkerSettings:
    """Settings inside a job process, read from the environment it inherited."""
    return WorkerSettings()


async def entrypoint(ctx: JobContext) -> None:
    """Module-level (picklable): job processes are forked from a forkserver."""
    await Call(ctx, job_settings(), ctx.proc.userdata[VAD_KEY]).run()


def create_server(settings: WorkerSettings) -> AgentServer:
    cap = CallCap(settings.max_concurrency)
    server = AgentServer(
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
        setup_fnc=prewarm,
        load_fnc=lambda s: cap.load(len(s.active_jobs)),
        load_threshold=0.999,
        num_idle_processes=settings.num_idle_processes,
        port=settings.http_port,
        host="127.0.0.1",
    )

    async def on_request(request: JobRequest) -> None:
        if not cap.try_reserve(len(server.active_jobs)):
            log.info("job offer declined: at capacity", extra={"limit": cap.limit})
            await request.reject()
            return
        try:
            await request.accept(identity=f"agent-{request.job.id}")
        finally:
            cap.release()

    server.rtc_session(entrypoint, agent_name=settings.agent_name, on_request=on_request)
    return server
