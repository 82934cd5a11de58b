"""The pool's event-driven Prometheus metrics (histograms and error counts), beside the
gauges `health.PoolCollector` reads from the pool's state at scrape time.

Job processes do not serve metrics of their own: a job process lives for one call and
is not scraped. They report each turn's latencies and the greeting latency over the pool
link (`pool_link.LinkTurn`, `LinkGreeting`) as they happen, and the pool observes them
here, so a long call's turns show up before it ends. Labels are the pool's worker id and
fixed codes, never agent ids (those are telemetry's, with its cardinality guard).
"""

from collections import Counter
from typing import Final

from prometheus_client import CollectorRegistry, Histogram

from core_voice_contracts.events import TurnLatency

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_FETCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class Stage:
    """``stage`` label values of ``corevoice_worker_turn_latency_seconds``."""

    STT: Final = "stt"
    END_OF_TURN: Final = "end_of_turn"
    LLM_TTFT: Final = "llm_ttft"
    TTS_TTFB: Final = "tts_ttfb"
    E2E: Final = "e2e"


class ErrorType:
    """`corevoice_worker_errors_total` ``type`` values (a fixed set)."""

    CONFIG_FETCH: Final = "config_fetch"
    """A config_sync request failed or was refused (down, frozen, database unavailable)."""
    EVENT_PUBLISH: Final = "event_publish"
    """A call event publish attempt failed (retried: nothing lost)."""
    EVENT_DROPPED: Final = "event_dropped"
    """A call event dropped: the queue was full for that long."""
    CALL_LOST: Final = "call_lost"
    """A job process ended without reporting its call's end."""
    LINK_PROTOCOL: Final = "link_protocol"
    """A job process sent the pool something it did not understand."""
    STATUS_PUBLISH: Final = "status_publish"
    """A heartbeat (`WorkerStatus`) or `ConfigHeld` could not be sent."""


ERROR_TYPES: Final = (
    ErrorType.CONFIG_FETCH,
    ErrorType.EVENT_PUBLISH,
    ErrorType.EVENT_DROPPED,
    ErrorType.CALL_LOST,
    ErrorType.LINK_PROTOCOL,
    ErrorType.STATUS_PUBLISH,
)


class PoolMetrics:
    def __init__(self, worker_id: str, registry: CollectorRegistry | None = None) -> None:
        self.worker_id = worker_id
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.config_fetch_seconds = Histogram(
            "corevoice_worker_config_fetch_seconds",
            "The pool's requests to config_sync (voice.config.get), answered or not.",
            ["worker_id"],
            buckets=_FETCH_BUCKETS,
            registry=r,
        )
        self.turn_latency = Histogram(
            "corevoice_worker_turn_latency_seconds",
            "Per-turn latency by stage: stt (speech end to final transcript), end_of_turn, "
            "llm_ttft, tts_ttfb, e2e (speech end to the agent's first audio).",
            ["worker_id", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.greeting_latency = Histogram(
            "corevoice_worker_greeting_latency_seconds",
            "A call's greeting asked for to its first audio.",
            ["worker_id"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors: Counter[str] = Counter()
        """Errors only counted here; ``corevoice_worker_errors_total`` adds those the
        pool's parts count themselves (`health.PoolCollector`)."""

    def error(self, type_: str) -> None:
        self.errors[type_] += 1

    def fetched(self, seconds: float) -> None:
        self.config_fetch_seconds.labels(self.worker_id).observe(seconds)

    def turn(self, turn: TurnLatency) -> None:
        stages = (
            (Stage.STT, turn.stt_final_s),
            (Stage.END_OF_TURN, turn.end_of_turn_s),
            (Stage.LLM_TTFT, turn.llm_ttft_s),
            (Stage.TTS_TTFB, turn.tts_ttfb_s),
            (Stage.E2E, turn.e2e_s),
        )
        for stage, seconds in stages:
            if seconds is not None and seconds >= 0:
                self.turn_latency.labels(self.worker_id, stage).observe(seconds)

    def greeting(self, seconds: float) -> None:
        if seconds >= 0:
            self.greeting_latency.labels(self.worker_id).observe(seconds)
