"""`local` TTS: espeak-ng, offline and keyless.

Non-streaming: espeak-ng speaks a sentence in ~40 ms, so AgentSession's sentence
splitting (``tts.StreamAdapter``, applied by the session to any non-streaming TTS) is
enough to start speaking early.
"""

import asyncio
from typing import Any, Never

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, APIError, tts, utils

from core_voice_contracts.runtime_config import LOCAL, LocalTTSOptions, ProviderSpec
from core_voice_worker.errors import SpeechError
from core_voice_worker.providers.keys import KeySource
from core_voice_worker.providers.registry import TTS_PROVIDERS, decode_options
from core_voice_worker.speech import synthesize

SAMPLE_RATE = 24_000
DEFAULT_VOICE = "en-us"


class LocalTTS(tts.TTS[Never]):
    def __init__(
        self, *, voice: str = DEFAULT_VOICE, options: LocalTTSOptions | None = None
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
        )
        self.voice = voice
        self.options = options or LocalTTSOptions()

    @property
    def model(self) -> str:
        return "espeak-ng"

    @property
    def provider(self) -> str:
        return LOCAL

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> "LocalChunkedStream":
        return LocalChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class LocalChunkedStream(tts.ChunkedStream):
    def __init__(self, *, tts: LocalTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._local_tts = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        options = self._local_tts.options
        try:
            pcm = await asyncio.to_thread(
                synthesize,
                self.input_text,
                voice=self._local_tts.voice,
                speed_wpm=options.speed_wpm,
                pitch=options.pitch,
                sample_rate=SAMPLE_RATE,
            )
        except SpeechError as exc:
            # APIError is what the session reports as a TTS error event.
            raise APIError(str(exc), retryable=False) from exc
        output_emitter.initialize(
            request_id=utils.shortuuid("local_tts_"),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        output_emitter.push(pcm)
        output_emitter.flush()


@TTS_PROVIDERS.register(LOCAL)
def local_tts(spec: ProviderSpec, keys: KeySource) -> tts.TTS[Any]:
    return LocalTTS(
        voice=spec.voice or DEFAULT_VOICE, options=decode_options(spec, "tts", LocalTTSOptions)
    )
