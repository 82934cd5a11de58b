"""The keyless providers: espeak-ng TTS, pocketsphinx STT, scripted LLM, and all three
together inside a real AgentSession (text turns, and audio in → audio out)."""

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import (
    Agent,
    AgentSession,
    ConversationItemAddedEvent,
    RunResult,
    function_tool,
    llm,
    stt,
    tts,
)
from livekit.agents.vad import VAD
from livekit.agents.voice import io
from livekit.plugins import silero

from core_voice_contracts.runtime_config import (
    LocalSTTOptions,
    LocalTTSOptions,
    ProviderKeys,
    ProviderSpec,
    ScriptedOptions,
    ScriptRule,
)
from core_voice_worker.errors import ProviderConfigError
from core_voice_worker.providers import build_llm, build_stt, build_tts
from core_voice_worker.providers.local_stt import LocalSTT
from core_voice_worker.providers.local_tts import SAMPLE_RATE, LocalTTS
from core_voice_worker.providers.scripted_llm import ScriptedLLM
from core_voice_worker.speech import PhraseRecognizer, synthesize

pytestmark = pytest.mark.unit

PHRASES = ["what are your opening hours", "i would like to book a table", "good bye"]
OPTIONS = ScriptedOptions(
    rules=[
        ScriptRule(match="opening hours", reply="We open at nine."),
        ScriptRule(match="book table", reply="For how many people?"),
        ScriptRule(match="book", reply="What would you like to book?"),
    ],
    fallback="Sorry, I did not catch that.",
)
SPEC_OPTIONS: dict[str, Any] = {
    "rules": [{"match": r.match, "reply": r.reply} for r in OPTIONS.rules],
    "fallback": OPTIONS.fallback,
}
KEYS = ProviderKeys()


@pytest.fixture(scope="module")
def vad() -> VAD:
    return silero.VAD.load()


async def synthesize_frames(speaker: tts.TTS[Any], text: str) -> list[rtc.AudioFrame]:
    return [event.frame async for event in speaker.synthesize(text)]


def duration(frames: list[rtc.AudioFrame]) -> float:
    return sum(frame.duration for frame in frames)


def user_turn(text: str) -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="system", content="Answer from the script.")
    ctx.add_message(role="user", content=text)
    return ctx


# --- TTS ------------------------------------------------------------------------------


async def test_local_tts_speaks_a_phrase_as_mono_pcm_frames() -> None:
    speaker = LocalTTS()
    frames = await synthesize_frames(speaker, "What are your opening hours?")

    assert {(f.sample_rate, f.num_channels) for f in frames} == {(SAMPLE_RATE, 1)}
    assert 1.0 < duration(frames) < 4.0
    samples = np.frombuffer(rtc.combine_audio_frames(frames).data, dtype=np.int16)
    assert np.abs(samples).max() > 1000  # speech, not silence
    await speaker.aclose()


async def test_local_tts_honours_speed_and_voice_from_the_spec() -> None:
    def spec(wpm: int) -> ProviderSpec:
        return ProviderSpec(provider="local", voice="en-gb", options={"speed_wpm": wpm})

    slow, fast = build_tts(spec(100), KEYS), build_tts(spec(250), KEYS)
    assert isinstance(slow, LocalTTS)
    assert (slow.voice, slow.options) == ("en-gb", LocalTTSOptions(speed_wpm=100))

    text = "I would like to book a table"
    slow_s = duration(await synthesize_frames(slow, text))
    fast_s = duration(await synthesize_frames(fast, text))
    assert slow_s > 1.8 * fast_s


# --- STT ------------------------------------------------------------------------------


async def test_local_stt_recognizes_the_tts_phrase_exactly() -> None:
    speaker, recognizer = LocalTTS(), LocalSTT(LocalSTTOptions(phrases=PHRASES))
    for phrase in PHRASES:
        frames = await synthesize_frames(speaker, phrase.capitalize() + ".")
        event = await recognizer.recognize(frames)

        assert event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
        assert [a.text for a in event.alternatives] == [phrase]
        assert event.alternatives[0].end_time == pytest.approx(duration(frames), abs=0.01)


async def test_local_stt_hears_nothing_in_silence() -> None:
    recognizer = LocalSTT(LocalSTTOptions(phrases=PHRASES))
    silence = rtc.AudioFrame(bytes(2 * 16_000), 16_000, 1, 16_000)

    assert (await recognizer.recognize(silence)).alternatives[0].text == ""
    assert (await recognizer.recognize([])).alternatives[0].text == ""


async def test_local_stt_downmixes_stereo() -> None:
    mono = np.frombuffer(synthesize("good bye", sample_rate=48_000), dtype=np.int16)
    stereo = np.repeat(mono, 2)
    frame = rtc.AudioFrame(stereo.tobytes(), 48_000, 2, len(mono))
    recognizer = build_stt(ProviderSpec(provider="local", options={"phrases": PHRASES}), KEYS, None)

    assert (await recognizer.recognize(frame)).alternatives[0].text == "good bye"


def test_local_stt_rejects_unknown_options() -> None:
    with pytest.raises(ProviderConfigError, match="stt provider 'local' has invalid options"):
        build_stt(ProviderSpec(provider="local", options={"phrase": ["typo"]}), KEYS, None)


# --- scripted LLM ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heard", "reply"),
    [
        ("What are your opening hours?", "We open at nine."),
        ("OPENING... HOURS!!!", "We open at nine."),
        ("hours of opening, please", "We open at nine."),  # every word, any order
        ("Can I book a table?", "For how many people?"),  # first matching rule wins
        ("I'd like to book.", "What would you like to book?"),
        ("When do you open?", "Sorry, I did not catch that."),  # "opening" ≠ "open"
        ("", "Sorry, I did not catch that."),
    ],
)
async def test_scripted_llm_replies_by_rule_or_fallback(heard: str, reply: str) -> None:
    scripted = ScriptedLLM(OPTIONS)
    response = await scripted.chat(chat_ctx=user_turn(heard)).collect()

    assert response.text == reply
    assert response.tool_calls == []


async def test_scripted_llm_answers_the_last_user_turn_and_reports_word_usage() -> None:
    ctx = user_turn("what are your opening hours")
    ctx.add_message(role="assistant", content="We open at nine.")
    ctx.add_message(role="user", content="ok, book a table")

    response = await ScriptedLLM(OPTIONS).chat(chat_ctx=ctx).collect()

    assert response.text == "For how many people?"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (4, 4)
    assert response.usage.total_tokens == 8


async def test_scripted_llm_ignores_tools() -> None:
    @function_tool
    async def lookup_hours() -> str:
        """Look up the opening hours."""
        return "nine"

    stream = ScriptedLLM(OPTIONS).chat(
        chat_ctx=user_turn("opening hours"), tools=[lookup_hours], tool_choice="required"
    )
    response = await stream.collect()

    assert (response.text, response.tool_calls) == ("We open at nine.", [])


def test_scripted_llm_from_spec_and_its_config_errors() -> None:
    scripted = build_llm(ProviderSpec(provider="scripted", options=SPEC_OPTIONS), KEYS)
    assert isinstance(scripted, ScriptedLLM)
    assert (scripted.model, scripted.reply_for("opening hours")) == ("scripted", "We open at nine.")

    no_words = {"rules": [{"match": "?!", "reply": "always"}]}
    with pytest.raises(ProviderConfigError, match="has no words"):
        build_llm(ProviderSpec(provider="scripted", options=no_words), KEYS)
    with pytest.raises(ProviderConfigError, match="invalid options"):
        build_llm(ProviderSpec(provider="scripted", options={"rulez": []}), KEYS)


# --- inside a real AgentSession -------------------------------------------------------


async def test_agent_session_text_turns_get_the_scripted_replies() -> None:
    scripted = build_llm(ProviderSpec(provider="scripted", options=SPEC_OPTIONS), KEYS)
    session: AgentSession[None] = AgentSession(llm=scripted)
    async with session:
        await session.start(Agent(instructions="Answer from the script."))

        for heard, reply in [
            ("What are your opening hours?", "We open at nine."),
            ("Something else entirely", "Sorry, I did not catch that."),
        ]:
            result: RunResult[None] = await session.run(user_input=heard)
            message = result.expect.next_event().is_message(role="assistant").event().item
            assert message.text_content == reply
            result.expect.no_more_events()


RATE = 24_000
FRAME = RATE // 50  # 20 ms


class _PcmSource(io.AudioInput):
    """A caller: plays ``pcm`` in 20 ms frames, then silence for ever."""

    def __init__(self, pcm: bytes) -> None:
        super().__init__(label="test-caller")
        self._frames = iter(self._split(pcm))

    @staticmethod
    def _split(pcm: bytes) -> Iterator[rtc.AudioFrame]:
        step = 2 * FRAME
        for i in range(0, len(pcm) - step + 1, step):
            yield rtc.AudioFrame(pcm[i : i + step], RATE, 1, FRAME)

    async def __anext__(self) -> rtc.AudioFrame:
        frame = next(self._frames, None)
        if frame is None:
            await asyncio.sleep(0.02)  # real time once the scripted audio is out
            return rtc.AudioFrame(bytes(2 * FRAME), RATE, 1, FRAME)
        await asyncio.sleep(0)
        return frame


class _CapturingSink(io.AudioOutput):
    """A speaker that "plays" instantly and keeps what it was given."""

    def __init__(self) -> None:
        super().__init__(label="test-sink", capabilities=io.AudioOutputCapabilities(pause=False))
        self.frames: list[rtc.AudioFrame] = []
        self.played = asyncio.Event()
        self._segment = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self._segment == 0.0:
            self.on_playback_started(created_at=time.time())
        await super().capture_frame(frame)
        self.frames.append(frame)
        self._segment += frame.duration

    def flush(self) -> None:
        super().flush()
        played, self._segment = self._segment, 0.0
        self.on_playback_finished(playback_position=played, interrupted=False)
        self.played.set()

    def clear_buffer(self) -> None:
        self._segment = 0.0


@pytest.mark.parametrize("wrap", ["by_registry", "by_session"])
async def test_agent_session_audio_in_audio_out_offline(vad: VAD, wrap: str) -> None:
    """WAV → silero → pocketsphinx → scripted → espeak-ng → audio the caller understands.

    ``by_session`` leaves the batch STT unwrapped: AgentSession 1.8.9 wraps it with the
    session's VAD itself.
    """
    stt_spec = ProviderSpec(provider="local", options={"phrases": PHRASES})
    local_stt = build_stt(stt_spec, KEYS, vad if wrap == "by_registry" else None)
    assert local_stt.capabilities.streaming is (wrap == "by_registry")
    session: AgentSession[None] = AgentSession(
        stt=local_stt,
        llm=build_llm(ProviderSpec(provider="scripted", options=SPEC_OPTIONS), KEYS),
        tts=build_tts(ProviderSpec(provider="local"), KEYS),
        vad=vad,
    )
    sink = _CapturingSink()
    session.input.audio = _PcmSource(
        bytes(2 * RATE // 2) + synthesize(PHRASES[0], sample_rate=RATE) + bytes(2 * RATE)
    )
    session.output.audio = sink
    messages: list[llm.ChatMessage] = []
    answered = asyncio.Event()

    @session.on("conversation_item_added")
    def _on_item(event: ConversationItemAddedEvent) -> None:
        if isinstance(event.item, llm.ChatMessage):
            messages.append(event.item)
            if event.item.role == "assistant":
                answered.set()

    async with session:
        await session.start(Agent(instructions="Answer from the script."))
        await asyncio.wait_for(answered.wait(), timeout=20)
        await asyncio.wait_for(sink.played.wait(), timeout=10)

    assert [(m.role, m.text_content) for m in messages] == [
        ("user", PHRASES[0]),
        ("assistant", "We open at nine."),
    ]
    spoken = rtc.combine_audio_frames(sink.frames)
    heard = PhraseRecognizer(["we open at nine", "sorry i did not catch that"])
    assert heard.recognize(spoken.data.tobytes(), spoken.sample_rate) == "we open at nine"
