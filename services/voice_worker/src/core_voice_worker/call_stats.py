"""What one call measured: greeting latency, turn latencies, usage.

Fed from AgentSession events; turned into `CallEnded`. Timestamps are monotonic.
"""

import time
from dataclasses import dataclass, field

from livekit.agents import metrics
from livekit.agents.voice import (
    AgentStateChangedEvent,
    MetricsCollectedEvent,
    UserStateChangedEvent,
)


@dataclass
class CallStats:
    started: float = field(default_factory=time.monotonic)
    greeting_latency_s: float | None = None
    turn_latencies_s: list[float] = field(default_factory=list)
    llm_tokens: int = 0
    tts_characters: int = 0
    stt_audio_s: float = 0.0
    _user_stopped: float | None = None

    def on_user_state(self, ev: UserStateChangedEvent) -> None:
        if ev.old_state == "speaking" and ev.new_state != "speaking":
            self._user_stopped = time.monotonic()

    def on_agent_state(self, ev: AgentStateChangedEvent) -> None:
        if ev.new_state != "speaking":
            return
        now = time.monotonic()
        if self.greeting_latency_s is None:
            self.greeting_latency_s = now - self.started
        elif self._user_stopped is not None:
            self.turn_latencies_s.append(now - self._user_stopped)
            self._user_stopped = None

    def on_metrics(self, ev: MetricsCollectedEvent) -> None:
        m = ev.metrics
        if isinstance(m, metrics.LLMMetrics):
            self.llm_tokens += m.total_tokens
        elif isinstance(m, metrics.TTSMetrics):
            self.tts_characters += m.characters_count
        elif isinstance(m, metrics.STTMetrics):
            self.stt_audio_s += m.audio_duration

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self.started
