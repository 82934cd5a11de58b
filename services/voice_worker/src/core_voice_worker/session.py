"""One call: load the agent's config, build its pipeline, greet, converse, report.

Runs in a job process (one per call). Lifecycle events go to VOICE_CALLS; they carry ids,
versions and timings, never transcripts or keys. While the call runs, a
`ConfigChanged` for its agent applies new instructions at the next turn.
"""

import asyncio
import contextlib
import logging

from livekit.agents import Agent, AgentSession, JobContext, vad
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from core_voice_contracts import subjects
from core_voice_contracts.bus import connect, publish
from core_voice_contracts.codec import decode_config_event, decode_job_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import CallEnded, CallFailed, CallStarted, JobRequested
from core_voice_contracts.runtime_config import RuntimeConfig
from core_voice_worker.call_stats import CallStats
from core_voice_worker.config_loader import load_runtime_config
from core_voice_worker.errors import WorkerError
from core_voice_worker.providers.registry import build_llm, build_stt, build_tts
from core_voice_worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def parse_job(metadata: str) -> JobRequested:
    """The dispatcher puts the `JobRequested` in the dispatch metadata."""
    try:
        event = decode_job_event(metadata.encode())
    except DecodeError:
        raise WorkerError("job metadata is not a JobRequested") from None
    if not isinstance(event, JobRequested):
        raise WorkerError("job metadata is not a JobRequested")
    return event


def build_session(
    config: RuntimeConfig, vad_model: vad.VAD, settings: WorkerSettings
) -> AgentSession[None]:
    return AgentSession(
        stt=build_stt(config.stt, config.keys, vad_model),
        llm=build_llm(config.llm, config.keys),
        tts=build_tts(config.tts, config.keys),
        vad=vad_model,
        turn_handling={
            "turn_detection": settings.turn_detection,
            "endpointing": {"min_delay": settings.min_endpointing_delay_s},
        },
    )


class Call:
    def __init__(self, ctx: JobContext, settings: WorkerSettings, vad_model: vad.VAD) -> None:
        self.ctx = ctx
        self.settings = settings
        self.vad = vad_model
        self.stats = CallStats()
        self.call_id = ctx.job.id
        self.nc: Client | None = None
        self.job: JobRequested | None = None
        self.config: RuntimeConfig | None = None
        self.agent: Agent | None = None
        self._ended = asyncio.Event()

    async def run(self) -> None:
        try:
            self.job = parse_job(self.ctx.job.metadata)
            self.nc, js = await connect(
                self.settings.nats_url, name="voice-worker-job", ensure=False
            )
            self.config = await load_runtime_config(
                self.nc, self.job.agent_id, self.job.campaign_id, self.settings.config_timeout_s
            )
            config_load_s = self.stats.duration_s
            session = build_session(self.config, self.vad, self.settings)
        except WorkerError as exc:
            await self._fail(exc.code, exc.retryable)
            self.ctx.shutdown(reason=exc.code)
            return
        except (NatsError, OSError, TimeoutError):
            await self._fail("bus_unavailable", True)
            self.ctx.shutdown(reason="bus_unavailable")
            return

        session.on("user_state_changed", self.stats.on_user_state)
        session.on("agent_state_changed", self.stats.on_agent_state)
        session.on("metrics_collected", self.stats.on_metrics)
        self.ctx.add_shutdown_callback(self._on_shutdown)

        await self.ctx.connect()
        self.agent = Agent(instructions=self.config.instructions)
        await session.start(agent=self.agent, room=self.ctx.room)
        await publish(
            js,
            subjects.call_started(self.job.agent_id),
            CallStarted(
                call_id=self.call_id,
                job_id=self.job.job_id,
                room_name=self.job.room_name,
                agent_id=self.job.agent_id,
                tenant_id=self.config.tenant_id,
                config_version=self.config.version,
                worker_id=self.settings.worker_id,
                config_load_s=config_load_s,
            ),
            msg_id=f"{self.call_id}-started",
        )
        await self.nc.subscribe(subjects.config_changed(self.job.agent_id), cb=self._on_change)
        # Greet someone: a dispatched agent can be in the room before its caller.
        await self.ctx.wait_for_participant()
        session.say(self.config.greeting, allow_interruptions=False)
        log.info(
            "call started",
            extra={
                "call_id": self.call_id,
                "agent_id": self.job.agent_id,
                "version": self.config.version,
            },
        )

    async def _on_change(self, msg: Msg) -> None:
        """A live edit: new instructions take effect at the call's next turn."""
        if self.job is None or self.nc is None or self.agent is None or self.config is None:
            return
        try:
            change = decode_config_event(msg.data)
        except DecodeError:
            return
        if change.version <= self.config.version:
            return
        try:
            fresh = await load_runtime_config(
                self.nc, self.job.agent_id, self.job.campaign_id, self.settings.config_timeout_s
            )
        except WorkerError:
            log.warning("live config refresh failed", extra={"call_id": self.call_id})
            return
        self.config = fresh
        await self.agent.update_instructions(fresh.instructions)
        log.info("call config refreshed", extra={"call_id": self.call_id, "version": fresh.version})

    async def _on_shutdown(self, reason: str = "") -> None:
        if self.nc is None or self.job is None or self.config is None:
            return
        ended = CallEnded(
            call_id=self.call_id,
            job_id=self.job.job_id,
            room_name=self.job.room_name,
            agent_id=self.job.agent_id,
            tenant_id=self.config.tenant_id,
            config_version=self.config.version,
            duration_s=self.stats.duration_s,
            greeting_latency_s=self.stats.greeting_latency_s,
            turns=len(self.stats.turn_latencies_s),
            turn_latencies_s=self.stats.turn_latencies_s,
            llm_tokens=self.stats.llm_tokens,
            tts_characters=self.stats.tts_characters,
            stt_audio_s=self.stats.stt_audio_s,
            end_reason=reason,
        )
        with contextlib.suppress(NatsError, TimeoutError):
            await publish(
                self.nc.jetstream(),
                subjects.call_ended(self.job.agent_id),
                ended,
                msg_id=f"{self.call_id}-ended",
            )
        with contextlib.suppress(NatsError):
            await self.nc.drain()

    async def _fail(self, error: str, retryable: bool) -> None:
        log.warning("call failed", extra={"call_id": self.call_id, "error": error})
        if self.nc is None:
            return
        job = self.job
        failed = CallFailed(
            call_id=self.call_id,
            job_id=job.job_id if job else "",
            room_name=job.room_name if job else self.ctx.job.room.name,
            agent_id=job.agent_id if job else subjects.UNROUTED,
            error=error,
            retryable=retryable,
            duration_s=self.stats.duration_s,
        )
        with contextlib.suppress(NatsError, TimeoutError):
            await publish(
                self.nc.jetstream(),
                subjects.call_failed(failed.agent_id),
                failed,
                msg_id=f"{self.call_id}-failed",
            )
        with contextlib.suppress(NatsError):
            await self.nc.drain()
