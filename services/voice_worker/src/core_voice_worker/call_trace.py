"""One call's trace, in its job process: a ``call`` span under the dispatch, a span per
greeting and per turn, and the context the call's events are published in.

The ``call`` span's parent is the dispatch span, whose context the dispatcher put in the
dispatch metadata (`JobRequested.traceparent`). Turn spans are made when a turn is over,
with its real start (the end of the caller's speech) and the stage latencies livekit
measured as attributes. Spans carry ids and timings only, never what was said.

livekit-agents makes spans of its own (sessions, turns, LLM requests) whose attributes
hold transcripts, instructions and tool payloads; they are switched off here
(`configure_worker_tracing`), so nothing of a conversation can reach an exporter.
"""

import asyncio
import time
from collections.abc import Mapping

from livekit.agents import llm
from livekit.agents.telemetry import set_tracer_provider as set_livekit_tracer_provider
from livekit.agents.voice import AgentStateChangedEvent, ConversationItemAddedEvent
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from core_voice_contracts.events import JobRequested
from core_voice_contracts.runtime_config import RuntimeConfig
from core_voice_contracts.tracing import (
    ATTR_AGENT_ID,
    ATTR_CALL_ID,
    ATTR_CAMPAIGN_ID,
    ATTR_CONFIG_VERSION,
    ATTR_JOB_ID,
    ATTR_OUTCOME,
    ATTR_ROOM,
    ATTR_TENANT_ID,
    ATTR_WORKER_ID,
    Span,
    SpanKind,
    configure_tracing,
    context_from_traceparent,
    current_traceparent,
    fail,
    flush,
    tracer,
)

SERVICE = "voice_worker"
FLUSH_TIMEOUT_S = 5.0
"""How long a job process waits, as its call ends, for its spans to be exported."""

ATTR_TURN = "corevoice.turn"
ATTR_GREETING_LATENCY = "corevoice.greeting_latency_s"
ATTR_END_REASON = "corevoice.end_reason"
TURN_STAGES = {
    "stt_final_s": ("user", "transcription_delay"),
    "end_of_turn_s": ("user", "end_of_turn_delay"),
    "llm_ttft_s": ("agent", "llm_node_ttft"),
    "tts_ttfb_s": ("agent", "tts_node_ttfb"),
    "e2e_s": ("agent", "e2e_latency"),
}
"""Turn span attribute ``corevoice.<name>`` <- (which message, its livekit metric)."""

_tracer = tracer(__name__)


def configure_worker_tracing() -> None:
    """This process's tracing (the pool, or a job process, which has its own exporter);
    livekit-agents' conversation-bearing spans switched off."""
    configure_tracing(SERVICE)
    set_livekit_tracer_provider(trace.NoOpTracerProvider())


def _ns(wall_s: float) -> int:
    return int(wall_s * 1e9)


class CallTrace:
    def __init__(self, job: JobRequested, call_id: str, worker_id: str) -> None:
        self._span = _tracer.start_span(
            "call",
            context=context_from_traceparent(job.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                ATTR_CALL_ID: call_id,
                ATTR_JOB_ID: job.job_id,
                ATTR_AGENT_ID: job.agent_id,
                ATTR_ROOM: job.room_name,
                ATTR_WORKER_ID: worker_id,
                **({ATTR_CAMPAIGN_ID: job.campaign_id} if job.campaign_id else {}),
            },
        )
        self._context = trace.set_span_in_context(self._span)
        self.traceparent = current_traceparent(self._context)
        """The call's context, for its events (`LinkPublish.traceparent`)."""
        self._version = 0
        self._greeting: Span | None = None
        self._greeting_at = 0.0
        self._greeted = False
        self._user: llm.MetricsReport | None = None
        self._user_done_at = 0.0
        self._turns = 0
        self._ended = False

    def use(self, config: RuntimeConfig) -> None:
        """The config version answering from now on (the first one also names the tenant)."""
        if not self._version:
            self._span.set_attribute(ATTR_TENANT_ID, config.tenant_id)
            self._span.set_attribute(ATTR_CONFIG_VERSION, config.version)
        self._version = config.version

    def greeting_started(self) -> None:
        self._greeting_at = time.time()
        self._greeting = _tracer.start_span(
            "greeting", context=self._context, start_time=_ns(self._greeting_at)
        )

    def on_agent_state(self, ev: AgentStateChangedEvent) -> None:
        if ev.new_state == "speaking" and self._greeting is not None and not self._greeted:
            self._greeted = True
            self._greeting.set_attribute(ATTR_GREETING_LATENCY, time.time() - self._greeting_at)

    def on_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage):
            return
        if item.role == "user":
            self._user = item.metrics
            self._user_done_at = item.metrics.get("stopped_speaking_at") or time.time()
        elif item.role == "assistant":
            if self._user is not None:
                self._turn(self._user, item.metrics)
                self._user = None
            elif self._greeting is not None:
                self._greeting.end()
                self._greeting = None

    def _turn(self, user: llm.MetricsReport, agent: llm.MetricsReport) -> None:
        self._turns += 1
        reports: dict[str, Mapping[str, object]] = {"user": user, "agent": agent}
        stages: dict[str, AttributeValue] = {
            f"corevoice.{name}": float(value)
            for name, (which, metric) in TURN_STAGES.items()
            if isinstance(value := reports[which].get(metric), int | float)
        }
        end = max(time.time(), self._user_done_at)
        turn = _tracer.start_span(
            "turn",
            context=self._context,
            start_time=_ns(self._user_done_at),
            attributes={ATTR_TURN: self._turns, ATTR_CONFIG_VERSION: self._version, **stages},
        )
        turn.end(end_time=_ns(end))

    async def end(self, outcome: str, *, error: str = "", reason: str = "") -> None:
        """End the call's spans and export them before the job process goes (once).
        ``error`` is a `CallFailure` code, ``reason`` livekit's end reason: fixed words."""
        if self._ended:
            return
        self._ended = True
        if self._greeting is not None:
            self._greeting.end()
        self._span.set_attribute(ATTR_OUTCOME, outcome)
        if reason:
            self._span.set_attribute(ATTR_END_REASON, reason[:100])
        if error:
            fail(self._span, error)
        self._span.end()
        await asyncio.to_thread(flush, FLUSH_TIMEOUT_S)
