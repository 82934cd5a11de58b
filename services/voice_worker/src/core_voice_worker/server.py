"""The worker process: one `AgentServer` registered under the pool's agent name, with the
pool runtime (`pool.PoolRuntime`) beside it.

Every agent is served by the same entrypoint; what differs per call is only the runtime
config, which the job gets from its pool over the local link.

Capacity is exact: livekit-agents 1.8.9 already counts offers in flight
(``_reserved_slots``) before it answers the next one, but when no job is running it
estimates each reservation at ``load_threshold / num_idle_processes`` (a whole worker's
load with one idle process), so an idle worker let only one offer through at a time.
`PoolServer` counts slots instead: running jobs plus offers in flight, against
``WORKER_MAX_CONCURRENCY``.
"""

import functools
import gc
import logging
import os
from typing import Any

from livekit.agents import (
    NOT_GIVEN,
    AgentServer,
    JobContext,
    JobExecutorType,
    JobProcess,
    JobRequest,
    NotGivenOr,
    vad,
)
from livekit.agents.cli.log import JsonFormatter as LiveKitJsonFormatter
from livekit.plugins import silero
from livekit.protocol import agent

from core_voice_contracts import room
from core_voice_contracts.codec import decode_job_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import CallFailed, CallFailure, JobAccepted, JobRequested
from core_voice_contracts.logs import setup_logging
from core_voice_worker.call_trace import configure_worker_tracing
from core_voice_worker.link import preconnect
from core_voice_worker.pool import PoolRuntime
from core_voice_worker.session import Call
from core_voice_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

VAD_KEY = "vad"
LINK_KEY = "pool_link"
LINK_PATH_ENV = "WORKER_LINK_PATH"
EXECUTORS = {"process": JobExecutorType.PROCESS, "thread": JobExecutorType.THREAD}
# Loaded once in the forkserver, so every job process starts with them imported.
PRELOAD = ["core_voice_worker.session", "core_voice_worker.providers"]


@functools.cache
def shared_vad() -> vad.VAD:
    """One silero model per process: per call process, or one for all thread jobs."""
    return silero.VAD.load()


def prewarm(proc: JobProcess) -> None:
    configure_worker_tracing()  # a job process: its spans and their export are its own
    proc.userdata[VAD_KEY] = shared_vad()
    if path := os.environ.get(LINK_PATH_ENV):
        proc.userdata[LINK_KEY] = preconnect(path)


@functools.cache
def job_settings() -> WorkerSettings:
    """Settings inside a job, read from the environment the pool set up."""
    return WorkerSettings()


async def entrypoint(ctx: JobContext) -> None:
    """Module-level (picklable): job processes are forked from a forkserver."""
    userdata = ctx.proc.userdata
    await Call(ctx, job_settings(), userdata[VAD_KEY], userdata.pop(LINK_KEY, None)).run()


def log_as_every_service() -> None:
    """Put the pool's logs in the format every service uses (`core_voice_contracts.logs`).

    livekit-agents' ``cli.run_app`` installs its own JSON handler on the root logger (its
    field names, on stdout) just before it runs the server; this swaps it for ours, at the
    level it set. Job processes forward their records to the pool, so they follow. The
    coloured console handler (``dev``, ``--log-format colored``) is left alone.
    """
    root = logging.getLogger()
    if any(isinstance(h.formatter, LiveKitJsonFormatter) for h in root.handlers):
        setup_logging("voice_worker", logging.getLevelName(root.level))


def _job_of(metadata: str) -> JobRequested | None:
    try:
        event = decode_job_event(metadata.encode())
    except DecodeError:
        return None
    return event if isinstance(event, JobRequested) else None


class PoolServer(AgentServer):
    def __init__(self, settings: WorkerSettings, runtime: PoolRuntime | None = None) -> None:
        self.settings = settings
        self.runtime = runtime or PoolRuntime(settings)
        self._registered_id = ""
        self._worker_started = False
        self._drain_announced = False
        super().__init__(
            ws_url=settings.livekit_url,
            api_key=settings.livekit_api_key,
            api_secret=settings.livekit_api_secret.get_secret_value(),
            setup_fnc=prewarm,
            load_fnc=self._load,
            load_threshold=1.0,
            num_idle_processes=settings.num_idle_processes,
            job_executor_type=EXECUTORS[settings.executor],
            drain_timeout=settings.drain_timeout_s,
            preload_modules=PRELOAD,
            # livekit-agents' own health server; ours (`health.py`) is the one to probe.
            host="127.0.0.1",
            port=0,
        )
        self.on("worker_registered", self._on_registered)
        self.rtc_session(entrypoint, agent_name=settings.agent_name, on_request=self._on_request)

    # --- capacity -----------------------------------------------------------------------

    def active_call_count(self) -> int:
        return len(self.active_jobs)

    def _load(self) -> float:
        return self.active_call_count() / self.settings.max_concurrency

    def _get_effective_load(self) -> float:
        """Slots in use (running jobs plus offers in flight) over the cap: full at 1.0."""
        return (self.active_call_count() + self._reserved_slots) / self.settings.max_concurrency

    async def _on_request(self, request: JobRequest) -> None:
        """Accept (the cap was checked before this runs) as the call's participant."""
        call_id = request.job.id
        attributes = {
            room.ATTR_CALL_ID: call_id,
            room.ATTR_WORKER_ID: self.settings.worker_id,
        }
        job = _job_of(request.job.metadata)
        if job is not None:
            attributes[room.ATTR_JOB_ID] = job.job_id
            attributes[room.ATTR_AGENT_ID] = job.agent_id
            if job.campaign_id:
                attributes[room.ATTR_CAMPAIGN_ID] = job.campaign_id
            entry = self.runtime.mirror.peek(job.agent_id, job.campaign_id)
            if entry is not None:
                attributes[room.ATTR_TENANT_ID] = entry.config.tenant_id
                attributes[room.ATTR_CONFIG_VERSION] = str(entry.config.version)
        try:
            # Returns once the job's process runs it: livekit-agents launches it in here.
            await request.accept(identity=room.agent_identity(call_id), attributes=attributes)
        except Exception as exc:
            self._launch_failed(job, call_id, exc)
            raise
        self.runtime.note_active(self.active_call_count())

    def _launch_failed(self, job: JobRequested | None, call_id: str, exc: Exception) -> None:
        """LiveKit assigned us the job (`JobAccepted` is out) but no process could run it
        (livekit-agents: "failed to acquire process"): without this the job would have no
        outcome at all, since no call process exists to report one."""
        if job is None or self.runtime.accepted_at(call_id) is None:
            return  # not assigned (an assignment timeout): LiveKit offers it elsewhere
        log.error(
            "call could not be launched",
            extra={"call_id": call_id, "agent_id": job.agent_id, "error": type(exc).__name__},
        )
        self.runtime.publisher.submit(
            CallFailed(
                call_id=call_id,
                job_id=job.job_id,
                room_name=job.room_name,
                agent_id=job.agent_id,
                campaign_id=job.campaign_id,
                worker_id=self.settings.worker_id,
                error=CallFailure.LAUNCH_FAILED,
                retryable=True,
                detail=f"no job process could be started for the call ({type(exc).__name__})",
            ),
            traceparent=job.traceparent,
        )

    def _handle_assignment(self, assignment: agent.JobAssignment) -> None:
        """LiveKit assigned us a job we accepted: say so on the bus at once, before its
        process joins the room, so the dispatcher never offers it to a second worker."""
        expected = assignment.job.id in self._pending_assignments  # else not launched
        if expected:
            self.runtime.note_accepted(assignment.job.id)
        super()._handle_assignment(assignment)
        job = _job_of(assignment.job.metadata)
        if job is None or not expected:
            return
        self.runtime.publisher.submit(
            JobAccepted(
                job_id=job.job_id,
                room_name=job.room_name,
                agent_id=job.agent_id,
                campaign_id=job.campaign_id,
                call_id=assignment.job.id,
                worker_id=self.settings.worker_id,
                requested_at=job.at,
            ),
            traceparent=job.traceparent,  # the dispatch's: the job's trace goes on
        )

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def registered(self) -> bool:
        return bool(self._registered_id)

    async def _queue_msg(self, msg: agent.WorkerMessage) -> None:
        """Every message to LiveKit passes here: what it says about taking offers (full or
        available, an offer turned away) goes into the pool's heartbeat too."""
        which = msg.WhichOneof("message")
        dropped = self._connecting and which == "update_worker"  # livekit-agents drops it
        await super()._queue_msg(msg)
        if which == "update_worker" and not dropped:
            self.runtime.note_told_full(msg.update_worker.status == agent.WorkerStatus.WS_FULL)
        elif which == "availability" and not msg.availability.available:
            self.runtime.note_turned_away()

    async def _run_ws(self, ws: Any) -> None:
        """One registered LiveKit connection: offers come only while it runs."""
        try:
            await super()._run_ws(ws)
        finally:
            self.runtime.note_registered(False)

    def _on_registered(self, worker_id: str, *_: Any) -> None:
        self.runtime.note_registered(True)
        if not self._registered_id:
            # The start-up heap (livekit, protobuf, plugins: ~10^5 objects) lives as long
            # as the process; a full collection scanning it stalls the loop tens of ms,
            # in the middle of a config push. Frozen, collections scan only newer objects.
            gc.collect()
            gc.freeze()
        self._registered_id = worker_id

    async def run(self, *, devmode: bool = False, unregistered: bool = False) -> None:
        log_as_every_service()
        # Job processes (forked after this) and thread jobs find the link through it.
        os.environ[LINK_PATH_ENV] = str(self.runtime.link_path)
        await self.runtime.start(self)
        self._worker_started = True
        await super().run(devmode=devmode, unregistered=unregistered)

    async def _update_worker_status(self) -> None:
        """Also the moment draining begins (livekit-agents calls this right after setting
        it): the pool's heartbeat says so at once, not an interval later."""
        try:
            await super()._update_worker_status()
        finally:
            if self._draining and not self._drain_announced:
                self._drain_announced = True
                self.runtime.announce_status()

    async def drain(self, timeout: NotGivenOr[int | None] = NOT_GIVEN) -> None:
        if self._worker_started:  # else the LiveKit half never ran: nothing to drain
            await super().drain(timeout)

    async def aclose(self) -> None:
        if self._worker_started:
            await super().aclose()
        await self.runtime.stop()


def create_server(settings: WorkerSettings) -> PoolServer:
    return PoolServer(settings)
