"""What one call measured: greeting latency, per-turn latency breakdown, usage.

Fed from AgentSession events; turned into `CallEnded` / `CallFailed`. Only timings and
counts are kept, never what was said. Timestamps are monotonic.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from livekit.agents import llm, metrics
from livekit.agents.voice import (
    AgentStateChangedEvent,
    ConversationItemAddedEvent,
    SessionUsageUpdatedEvent,
)

from core_voice_contracts.events import TurnLatency


@dataclass
class CallStats:
    started: float = field(default_factory=time.monotonic)
    greeting_latency_s: float | None = None
    """Session start to the agent's first audio."""
    turn_metrics: list[TurnLatency] = field(default_factory=list)
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0
    tts_characters: int = 0
    tts_audio_s: float = 0.0
    stt_audio_s: float = 0.0
    config_version: int = 0
    """The version answering turns now (set by the call as it applies versions)."""
    on_turn: Callable[[TurnLatency], None] | None = None
    """Told each turn as it completes (the call reports it to its pool at once)."""
    on_greeting: Callable[[float], None] | None = None
    """Told the greeting latency once it is known."""
    _greeting_from: float | None = None
    _user: llm.MetricsReport | None = None

    def greeting_clock(self) -> None:
        """The greeting is asked for now (its latency counts from here)."""
        self._greeting_from = time.monotonic()

    def on_agent_state(self, ev: AgentStateChangedEvent) -> None:
        if ev.new_state == "speaking" and self.greeting_latency_s is None:
            self.greeting_latency_s = time.monotonic() - (self._greeting_from or self.started)
            if self.on_greeting is not None:
                self.on_greeting(self.greeting_latency_s)

    def on_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage):
            return
        if item.role == "user":
            self._user = item.metrics
        elif item.role == "assistant" and self._user is not None:
            user, agent = self._user, item.metrics
            self._user = None
            turn = TurnLatency(
                stt_final_s=user.get("transcription_delay"),
                end_of_turn_s=user.get("end_of_turn_delay"),
                llm_ttft_s=agent.get("llm_node_ttft"),
                tts_ttfb_s=agent.get("tts_node_ttfb"),
                e2e_s=agent.get("e2e_latency"),
                config_version=self.config_version,
            )
            self.turn_metrics.append(turn)
            if self.on_turn is not None:
                self.on_turn(turn)

    def on_usage(self, ev: SessionUsageUpdatedEvent) -> None:
        """The session's running totals per model: the call's usage is their sum."""
        llm_in = llm_out = tts_chars = 0
        tts_s = stt_s = 0.0
        for usage in ev.usage.model_usage:
            if isinstance(usage, metrics.LLMModelUsage):
                llm_in += usage.input_tokens
                llm_out += usage.output_tokens
            elif isinstance(usage, metrics.TTSModelUsage):
                tts_chars += usage.characters_count
                tts_s += usage.audio_duration
            elif isinstance(usage, metrics.STTModelUsage):
                stt_s += usage.audio_duration
        self.llm_prompt_tokens, self.llm_completion_tokens = llm_in, llm_out
        self.tts_characters, self.tts_audio_s, self.stt_audio_s = tts_chars, tts_s, stt_s

    @property
    def turn_latencies_s(self) -> list[float]:
        return [t.e2e_s for t in self.turn_metrics if t.e2e_s is not None]

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self.started
