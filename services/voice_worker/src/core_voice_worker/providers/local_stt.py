"""`local` STT: pocketsphinx, offline and keyless.

Batch only (pocketsphinx decodes a whole utterance); in a session it streams through
``stt.StreamAdapter`` with a VAD cutting the utterances, which `registry.build_stt`
arranges. Decoding is exact for the agent's ``LocalSTTOptions.phrases`` and poor
free-form, so offline agents list what callers are expected to say.
"""

import asyncio
import contextlib
from typing import Any, Never

import numpy as np
from livekit import rtc
from livekit.agents import (
    NOT_GIVEN,
    APIConnectOptions,
    APIError,
    LanguageCode,
    NotGivenOr,
    stt,
    utils,
)

from core_voice_contracts.runtime_config import LOCAL, LocalSTTOptions, ProviderSpec
from core_voice_worker.errors import SpeechError
from core_voice_worker.providers.keys import KeySource
from core_voice_worker.providers.registry import STT_PROVIDERS, decode_options
from core_voice_worker.speech import RECOGNIZER_RATE, PhraseRecognizer

LANGUAGE = LanguageCode("en")


class LocalSTT(stt.STT[Never]):
    """Recognizes one buffered utterance at a time with a per-instance decoder."""

    def __init__(self, options: LocalSTTOptions | None = None) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._phrases = list((options or LocalSTTOptions()).phrases)
        # Built once, off the event loop: loading the model takes ~0.1 s with a grammar
        # and ~0.6 s free-form. `prewarm` (called when a session starts) begins it early.
        self._recognizer: PhraseRecognizer | None = None
        self._recognizer_lock = asyncio.Lock()
        self._prewarm_task: asyncio.Task[None] | None = None

    @property
    def model(self) -> str:
        return "pocketsphinx"

    @property
    def provider(self) -> str:
        return LOCAL

    def prewarm(self) -> None:
        if self._prewarm_task is not None or self._recognizer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the first recognition builds it
        self._prewarm_task = loop.create_task(self._warm(), name="LocalSTT.prewarm")

    async def aclose(self) -> None:
        if self._prewarm_task is not None:
            await utils.aio.cancel_and_wait(self._prewarm_task)

    async def _warm(self) -> None:
        # a bad grammar is reported by the first recognition, as an STT error
        with contextlib.suppress(SpeechError):
            await self._get_recognizer()

    async def _get_recognizer(self) -> PhraseRecognizer:
        async with self._recognizer_lock:
            if self._recognizer is None:
                self._recognizer = await asyncio.to_thread(PhraseRecognizer, self._phrases)
            return self._recognizer

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        pcm, sample_rate = _mono_pcm(buffer)
        text = ""
        if pcm:
            try:
                recognizer = await self._get_recognizer()
                text = await asyncio.to_thread(recognizer.recognize, pcm, sample_rate)
            except SpeechError as exc:
                raise APIError(str(exc), retryable=False) from exc
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=utils.shortuuid("local_stt_"),
            alternatives=[
                stt.SpeechData(language=LANGUAGE, text=text, end_time=len(pcm) / 2 / sample_rate)
            ],
        )


def _mono_pcm(buffer: utils.AudioBuffer) -> tuple[bytes, int]:
    """Mono PCM16 and its rate: a VAD segment is many frames, possibly multichannel."""
    if isinstance(buffer, list) and not buffer:
        return b"", RECOGNIZER_RATE
    frame = rtc.combine_audio_frames(buffer)
    if frame.num_channels == 1:
        return frame.data.tobytes(), frame.sample_rate
    samples = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels)
    return samples.mean(axis=1).astype(np.int16).tobytes(), frame.sample_rate


@STT_PROVIDERS.register(LOCAL)
def local_stt(spec: ProviderSpec, keys: KeySource) -> stt.STT[Any]:
    return LocalSTT(decode_options(spec, "stt", LocalSTTOptions))
