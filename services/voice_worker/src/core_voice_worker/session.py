"""One call: its config from the pool, its pipeline, greeting, conversation, report.

Runs in a job (its own process, or a thread of the pool). Lifecycle events go to the
pool over the local link, which publishes them to VOICE_CALLS; they carry ids, versions,
timings and usage, never transcripts or keys.

While the call runs, the pool pushes newer versions of its config:
- new instructions apply at the next turn (``Agent.update_instructions``);
- a new provider, model, voice or key is swapped in at the next turn boundary (a new
  `Agent` with the new components, handed over with ``session.update_agent``, keeping
  the conversation so far); if the new components cannot be built, the call keeps its
  old ones;
- a new greeting applies from the next call (this one has greeted).
A version is never applied over a newer one. If the agent is disabled or deleted, the
running call finishes on what it has (docs/voice_worker.md); new calls are refused.

One cohesive thing past ~450 lines: `Call` is one call's state machine (start, live
edits, failure, end); splitting it would pass that state between modules. What a call
measures (`call_stats`) and traces (`call_trace`) already live apart.
"""

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import time
from typing import Any

from livekit.agents import (
    Agent,
    AgentSession,
    APIConnectOptions,
    JobContext,
    vad,
)
from livekit.agents.voice import (
    CloseEvent,
    CloseReason,
    ErrorEvent,
)
from livekit.agents.voice.agent_session import SessionConnectOptions

from core_voice_contracts.codec import decode_job_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import (
    CallEnded,
    CallFailed,
    CallFailure,
    CallStarted,
    JobRequested,
    TurnLatency,
)
from core_voice_contracts.pool_link import LinkGetConfig, LinkGreeting, LinkRefused, LinkTurn
from core_voice_contracts.runtime_config import ProviderKeys, RuntimeConfig
from core_voice_worker.call_stats import CallStats
from core_voice_worker.call_trace import CallTrace
from core_voice_worker.errors import CallFailedError, ProviderConfigError
from core_voice_worker.link import LinkClosedError, PoolLink
from core_voice_worker.providers.keys import KeySource
from core_voice_worker.providers.registry import build_llm, build_stt, build_tts, redact
from core_voice_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

LINK_TIMEOUT_S = 5.0


def parse_job(metadata: str) -> JobRequested:
    """The dispatcher puts the routed `JobRequested` in the dispatch metadata."""
    try:
        event = decode_job_event(metadata.encode())
    except DecodeError:
        raise CallFailedError(CallFailure.BAD_JOB, "dispatch metadata is not a job") from None
    if not isinstance(event, JobRequested):
        raise CallFailedError(CallFailure.BAD_JOB, "dispatch metadata is not a JobRequested")
    return event


def _components(
    config: RuntimeConfig, vad_model: vad.VAD, settings: WorkerSettings
) -> dict[str, Any]:
    """STT, LLM and TTS for ``config``; raises `CallFailedError` (provider_config)."""
    fallback = settings.key_fallback
    try:
        return {
            "stt": build_stt(config.stt, config.keys, vad_model, key_fallback=fallback),
            "llm": build_llm(config.llm, config.keys, key_fallback=fallback),
            "tts": build_tts(config.tts, config.keys, key_fallback=fallback),
        }
    except ProviderConfigError as exc:
        raise CallFailedError(CallFailure.PROVIDER_CONFIG, str(exc)) from None


def _same_providers(a: RuntimeConfig, b: RuntimeConfig) -> bool:
    return (a.llm, a.stt, a.tts, a.keys.values) == (b.llm, b.stt, b.tts, b.keys.values)


def build_session(
    config: RuntimeConfig, vad_model: vad.VAD, settings: WorkerSettings
) -> AgentSession[None]:
    conn = APIConnectOptions(
        max_retry=settings.provider_max_retry,
        retry_interval=settings.provider_retry_interval_s,
        timeout=settings.provider_timeout_s,
    )
    return AgentSession(
        **_components(config, vad_model, settings),
        vad=vad_model,
        turn_handling={
            "turn_detection": settings.turn_detection,
            "endpointing": {"min_delay": settings.min_endpointing_delay_s},
        },
        conn_options=SessionConnectOptions(
            stt_conn_options=conn,
            llm_conn_options=conn,
            tts_conn_options=conn,
            max_unrecoverable_errors=1,
        ),
    )


class Call:
    def __init__(
        self,
        ctx: JobContext,
        settings: WorkerSettings,
        vad_model: vad.VAD,
        link_socket: socket.socket | None = None,
    ) -> None:
        self.ctx = ctx
        self._link_socket = link_socket
        self.settings = settings
        self.vad = vad_model
        self.stats = CallStats()
        self.call_id = ctx.job.id
        self.link: PoolLink | None = None
        self.job: JobRequested | None = None
        self.trace: CallTrace | None = None
        self.config: RuntimeConfig | None = None
        self.versions: list[int] = []
        self.stale = False
        self.session: AgentSession[None] | None = None
        self.agent: Agent | None = None
        self._newest: RuntimeConfig | None = None
        self._applying: asyncio.Task[None] | None = None
        self._outcome_sent = False
        self._boundary = asyncio.Event()

    # --- start ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._start()
        except CallFailedError as failure:
            await self.fail(failure.code, failure.detail, retryable=failure.retryable)

    async def _start(self) -> None:
        entered = time.monotonic()
        entered_at = dt.datetime.now(dt.UTC)
        self.job = job = parse_job(self.ctx.job.metadata)
        self.trace = CallTrace(job, self.call_id, self.settings.worker_id)
        request = LinkGetConfig(
            req=1,
            call_id=self.call_id,
            job_id=job.job_id,
            room_name=job.room_name,
            agent_id=job.agent_id,
            campaign_id=job.campaign_id,
        )
        try:
            self.link, reply = await PoolLink.open_call(
                self.settings.link_path,
                self._link_socket,
                request,
                timeout=self.settings.config_timeout_s + LINK_TIMEOUT_S,
                on_update=self._on_update,
                on_gone=self._on_gone,
            )
        except (OSError, TimeoutError, DecodeError) as exc:
            raise CallFailedError(
                CallFailure.CONFIG_UNAVAILABLE, f"pool link: {type(exc).__name__}", retryable=True
            ) from None
        if isinstance(reply, LinkRefused):
            raise CallFailedError(reply.error, reply.detail, retryable=reply.retryable)
        self.stats.on_turn = self._report_turn
        self.stats.on_greeting = self._report_greeting
        config, self.stale = reply.config, reply.stale
        self._use(config)
        config_load_s = time.monotonic() - entered

        session = build_session(config, self.vad, self.settings)
        self.session = session
        session.on("agent_state_changed", self.stats.on_agent_state)
        session.on("agent_state_changed", self._track_boundary)
        session.on("user_state_changed", self._track_boundary)
        session.on("conversation_item_added", self.stats.on_item)
        session.on("session_usage_updated", self.stats.on_usage)
        session.on("error", self._on_error)
        if self.trace is not None:
            session.on("agent_state_changed", self.trace.on_agent_state)
            session.on("conversation_item_added", self.trace.on_item)
        session.on("close", self._on_close)
        self.ctx.add_shutdown_callback(self._on_shutdown)

        try:
            await self.ctx.connect()
        except Exception as exc:
            raise CallFailedError(CallFailure.CONNECT_FAILED, type(exc).__name__) from None
        self.agent = Agent(instructions=config.instructions)
        try:
            await session.start(agent=self.agent, room=self.ctx.room)
        except Exception as exc:
            raise CallFailedError(
                CallFailure.SESSION_FAILED, self._redacted(f"{type(exc).__name__}: {exc}")
            ) from None
        await self._publish(
            CallStarted(
                call_id=self.call_id,
                job_id=self.job.job_id,
                room_name=self.job.room_name,
                agent_id=self.job.agent_id,
                tenant_id=config.tenant_id,
                campaign_id=self.job.campaign_id,
                config_version=config.version,
                worker_id=self.settings.worker_id,
                config_load_s=config_load_s,
                setup_s=time.monotonic() - entered,
                config_stale=self.stale,
                requested_at=job.at,
                accepted_at=entered_at,  # the pool puts its own assignment time instead
            )
        )
        log.info(
            "call started",
            extra={
                "call_id": self.call_id,
                "agent_id": self.job.agent_id,
                "version": config.version,
                "stale": self.stale,
                "config_load_ms": round(config_load_s * 1000, 3),
            },
        )
        # Greet someone: a dispatched agent can be in the room before its caller.
        try:
            await asyncio.wait_for(self.ctx.wait_for_participant(), self.settings.caller_wait_s)
        except TimeoutError:
            raise CallFailedError(
                CallFailure.NO_CALLER, f"no caller within {self.settings.caller_wait_s:g} s"
            ) from None
        self.stats.greeting_clock()
        if self.trace is not None:
            self.trace.greeting_started()
        session.say(config.greeting, allow_interruptions=False)
        if self._newest is not None:  # pushed while the session was starting
            self._schedule_apply()

    def _report_turn(self, turn: TurnLatency) -> None:
        """Live, so a long call's turns show in the pool's metrics before it ends."""
        if self.link is not None:
            self.link.tell(LinkTurn(call_id=self.call_id, turn=turn))

    def _report_greeting(self, latency_s: float) -> None:
        if self.link is not None:
            self.link.tell(LinkGreeting(call_id=self.call_id, latency_s=latency_s))

    def _use(self, config: RuntimeConfig) -> None:
        self.config = config
        self.versions.append(config.version)
        self.stats.config_version = config.version
        if self.trace is not None:
            self.trace.use(config)

    # --- live updates -------------------------------------------------------------------

    def _on_update(self, config: RuntimeConfig, stale: bool) -> None:
        newest = self._newest or self.config
        if newest is not None and config.version <= newest.version:
            return  # never backwards
        self._newest = config
        self.stale = stale
        if self.agent is not None:
            self._schedule_apply()

    def _schedule_apply(self) -> None:
        if self._applying is None or self._applying.done():
            self._applying = asyncio.get_running_loop().create_task(
                self._apply_newest(), name="call.apply-config"
            )

    async def _apply_newest(self) -> None:
        while self._newest is not None:
            config, self._newest = self._newest, None
            try:
                await self._apply(config)
            except Exception:
                log.exception("live config update failed", extra={"call_id": self.call_id})

    async def _apply(self, config: RuntimeConfig) -> None:
        current, agent, session = self.config, self.agent, self.session
        assert current is not None and agent is not None and session is not None
        if config.version <= current.version:
            return
        if _same_providers(current, config):
            if config.instructions != current.instructions:
                await agent.update_instructions(config.instructions)  # the next turn uses it
            self._use(config)
        else:
            try:
                components = _components(config, self.vad, self.settings)
            except CallFailedError as exc:
                log.warning(
                    "new providers cannot be built; the call keeps its own",
                    extra={"call_id": self.call_id, "version": config.version, "error": exc.code},
                )
                if config.instructions != current.instructions:
                    await agent.update_instructions(config.instructions)
                self._use(config)
                return
            await self._turn_boundary()
            self.agent = Agent(
                instructions=config.instructions, chat_ctx=agent.chat_ctx.copy(), **components
            )
            session.update_agent(self.agent)
            self._use(config)
        log.info(
            "call config applied",
            extra={"call_id": self.call_id, "version": config.version},
        )

    async def _turn_boundary(self) -> None:
        """Wait until neither side is speaking nor the agent thinking."""
        self._track_boundary()
        await self._boundary.wait()

    def _track_boundary(self, *_: object) -> None:
        session = self.session
        if session is None:
            return
        if session.agent_state == "listening" and session.user_state != "speaking":
            self._boundary.set()
        else:
            self._boundary.clear()

    def _on_gone(self, agent_id: str, reason: str) -> None:
        log.info(
            "agent gone during a call; the call finishes on what it has",
            extra={"call_id": self.call_id, "agent_id": agent_id, "reason": reason},
        )

    # --- failures -----------------------------------------------------------------------

    def _on_error(self, ev: ErrorEvent) -> None:
        error = ev.error
        if getattr(error, "recoverable", True):
            return
        source = getattr(ev.source, "provider", "") or type(ev.source).__name__
        inner = getattr(error, "error", error)
        detail = self._redacted(f"{getattr(error, 'type', 'provider')} {source}: {inner}")
        asyncio.get_running_loop().create_task(
            self.fail(CallFailure.PROVIDER_UNAVAILABLE, detail, retryable=True),
            name="call.fail",
        )

    def _on_close(self, ev: CloseEvent) -> None:
        """End the job with the session. livekit-agents closes the session when the caller
        leaves but keeps the job in the room until LiveKit closes the empty room (its
        departure timeout, ~20 s): the call would count as active, and its duration grow,
        that long after the hang-up."""
        if ev.reason == CloseReason.ERROR and not self._outcome_sent:
            detail = self._redacted(f"session closed on error: {ev.error}")
            asyncio.get_running_loop().create_task(
                self.fail(CallFailure.PROVIDER_UNAVAILABLE, detail, retryable=True),
                name="call.fail",
            )
        elif ev.reason != CloseReason.ERROR:
            self.ctx.shutdown(reason=ev.reason.value)

    def _redacted(self, text: str) -> str:
        keys = self.config.keys if self.config is not None else ProviderKeys()
        return redact(text, KeySource.from_env(keys).secrets())[:500]

    async def fail(self, error: str, detail: str, *, retryable: bool = False) -> None:
        """Report the call failed, hang up (unless configured not to), end the job."""
        if self._outcome_sent:
            return
        self._outcome_sent = True
        job, config = self.job, self.config
        log.warning(
            "call failed",
            extra={"call_id": self.call_id, "error": error, "detail": detail},
        )
        await self._publish(
            CallFailed(
                call_id=self.call_id,
                job_id=job.job_id if job else "",
                room_name=job.room_name if job else self.ctx.job.room.name,
                agent_id=job.agent_id if job else "_unrouted",
                campaign_id=job.campaign_id if job else None,
                tenant_id=config.tenant_id if config else "",
                config_version=self.versions[0] if self.versions else 0,
                config_versions=self.versions,
                worker_id=self.settings.worker_id,
                error=error,
                detail=detail,
                retryable=retryable,
                duration_s=self.stats.duration_s,
            )
        )
        if self.settings.end_room_on_failure:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ctx.delete_room(), 5.0)
        if self.trace is not None:  # after the hang-up: an export may take a moment
            await self.trace.end("failed", error=error)
        self.ctx.shutdown(reason=error)

    # --- the end ------------------------------------------------------------------------

    async def _on_shutdown(self, reason: str = "") -> None:
        if not self._outcome_sent and self.job is not None and self.config is not None:
            self._outcome_sent = True
            stats = self.stats
            await self._publish(
                CallEnded(
                    call_id=self.call_id,
                    job_id=self.job.job_id,
                    room_name=self.job.room_name,
                    agent_id=self.job.agent_id,
                    campaign_id=self.job.campaign_id,
                    tenant_id=self.config.tenant_id,
                    config_version=self.versions[0],
                    config_versions=self.versions,
                    worker_id=self.settings.worker_id,
                    duration_s=stats.duration_s,
                    greeting_latency_s=stats.greeting_latency_s,
                    turns=len(stats.turn_metrics),
                    turn_latencies_s=stats.turn_latencies_s,
                    turn_metrics=stats.turn_metrics,
                    llm_tokens=stats.llm_prompt_tokens + stats.llm_completion_tokens,
                    llm_prompt_tokens=stats.llm_prompt_tokens,
                    llm_completion_tokens=stats.llm_completion_tokens,
                    tts_characters=stats.tts_characters,
                    tts_audio_s=stats.tts_audio_s,
                    stt_audio_s=stats.stt_audio_s,
                    end_reason=reason,
                    config_stale=self.stale,
                )
            )
        if self.trace is not None:
            await self.trace.end("ended", reason=reason)
        if self.link is not None:
            await self.link.aclose()

    async def _publish(self, event: CallStarted | CallEnded | CallFailed) -> None:
        if self.link is None:  # failed before the link was open (a bad job): open it now
            with contextlib.suppress(OSError):
                self.link = await PoolLink.connect(self.settings.link_path, self._link_socket)
        if self.link is None:
            log.error(
                "call event not reported: no pool link",
                extra={"call_id": self.call_id, "event": type(event).__name__},
            )
            return
        try:
            await self.link.publish(
                event,
                timeout=LINK_TIMEOUT_S,
                traceparent=self.trace.traceparent if self.trace is not None else "",
            )
        except (LinkClosedError, TimeoutError, OSError) as exc:
            log.error(
                "call event not reported: pool link failed",
                extra={
                    "call_id": self.call_id,
                    "event": type(event).__name__,
                    "error": type(exc).__name__,
                },
            )
