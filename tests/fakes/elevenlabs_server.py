"""ElevenLabs' TTS API on loopback, for `livekit-plugins-elevenlabs`.

Endpoints (under ``/v1``, key in ``xi-api-key``):

- ``GET /text-to-speech/{voice_id}/multi-stream-input`` (websocket), what
  ``elevenlabs.TTS().stream()`` uses for the classic models: per context an init packet
  ``{"text": " ", "voice_settings", "context_id"}``, text packets (``"flush": true`` forces
  generation), ``{"context_id", "close_context": true}``; ``{"close_socket": true}``. Out:
  ``{"audio", "alignment", "normalizedAlignment", "contextId"}`` then ``{"isFinal": true,
  "contextId"}`` once a closed context is spoken.
- ``GET /text-to-speech/{voice_id}/stream-input`` (websocket): the older single-context
  form (``{"text": ""}`` ends the input).
- ``GET /text-to-dialogue/multi-stream-input`` (websocket): what the plugin uses for the
  dialogue models (eleven_v3, eleven_v4...): ``{"context_id", "voices"}`` init,
  ``{"context_id", "inputs": [{"text", "voice_id"}]}``, snake_case answers with
  ``is_final``.
- ``POST /text-to-speech/{voice_id}[/stream]`` and ``POST /text-to-dialogue/stream``:
  one-shot synthesis (``elevenlabs.TTS().synthesize()``).
- ``GET /voices``.

Audio is espeak-ng in the ``output_format`` asked for: ``pcm_<rate>`` or
``mp3_<rate>_<kbps>`` (the plugin's default is ``mp3_22050_32``). Text is spoken when a
sentence ends (``auto_mode``), when ``chunk_length_schedule[0]`` characters are buffered,
on flush, or when the context closes.

    async with ElevenLabsFake() as fake:
        tts = elevenlabs.TTS(api_key="xi-key", base_url=fake.base_url)

As a process: ``python -m tests.fakes.elevenlabs_server --port 8104``.
"""

import base64
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.provider_base import (
    ProviderFake,
    Recorded,
    chunks,
    cli_parser,
    common_kwargs,
    encode_audio_async,
    pcm_seconds,
    query_bool,
    request_id,
    serve_forever,
    speak,
    speakable,
)

SENTENCE_END = (".", "!", "?")
DEFAULT_SCHEDULE = 120
"""ElevenLabs' first ``chunk_length_schedule`` entry: characters buffered before speaking."""


@dataclass(frozen=True)
class OutputFormat:
    fmt: str
    """``pcm`` or ``mp3``."""
    rate: int
    bit_rate: int | None = None

    @classmethod
    def parse(cls, value: str) -> "OutputFormat | None":
        parts = value.split("_")
        try:
            if parts[0] == "pcm" and len(parts) == 2:
                return cls("pcm", int(parts[1]))
            if parts[0] == "mp3" and len(parts) == 3:
                return cls("mp3", int(parts[1]), int(parts[2]) * 1000)
        except ValueError:
            return None
        return None

    @property
    def content_type(self) -> str:
        return "audio/mpeg" if self.fmt == "mp3" else "audio/pcm"


class ElevenLabsFake(ProviderFake):
    name: ClassVar[str] = "elevenlabs"
    base_path: ClassVar[str] = "/v1"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/voices", self._voices),
            web.get("/v1/text-to-speech/{voice}/multi-stream-input", self._multi_stream),
            web.get("/v1/text-to-speech/{voice}/stream-input", self._single_stream),
            web.get("/v1/text-to-dialogue/multi-stream-input", self._dialogue_stream),
            web.post("/v1/text-to-speech/{voice}/stream", self._synthesize),
            web.post("/v1/text-to-speech/{voice}", self._synthesize),
            web.post("/v1/text-to-dialogue/stream", self._synthesize),
        ]

    def key_of(self, request: web.Request) -> str | None:
        return request.headers.get("xi-api-key")

    def error_response(self, status: int, message: str) -> web.Response:
        code = {400: "invalid_request", 401: "invalid_api_key", 429: "too_many_requests"}
        return web.json_response(
            {"detail": {"status": code.get(status, "internal_error"), "message": message}},
            status=status,
            headers={"request-id": request_id()},
        )

    def refusal(self, key: str | None) -> web.Response:
        return self.error_response(401, "Invalid API key" if key else "Missing API key")

    async def _voices(self, request: web.Request) -> web.Response:
        _, error = self.admit(request)
        if error is not None:
            return error
        voices = [{"voice_id": "fake-voice", "name": "Fake", "category": "premade"}]
        return web.json_response({"voices": voices})

    async def _synthesize(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        options = body if isinstance(body, dict) else {}
        inputs = options.get("inputs")
        dialogue = isinstance(inputs, list)
        voice = request.match_info.get("voice", "")
        text = options.get("text")
        if dialogue and inputs and isinstance(inputs[0], dict):
            voice = str(inputs[0].get("voice_id", ""))
            text = " ".join(str(i.get("text", "")) for i in inputs if isinstance(i, dict))
        record, error = self.admit(request, model=str(options.get("model_id", "")), voice=voice)
        if error is not None:
            return error
        output = OutputFormat.parse(request.query.get("output_format", "mp3_44100_128"))
        if output is None:
            return self.error_response(400, "the fake speaks pcm_<rate> and mp3_<rate>_<kbps>")
        if not isinstance(text, str) or not text:
            return self.error_response(400, "'text' is required")
        record.add_text(text)
        pcm = await speak(text, output.rate, speed=_speed(options.get("voice_settings")))
        audio = await encode_audio_async(pcm, output.rate, output.fmt, bit_rate=output.bit_rate)
        response = web.StreamResponse(headers={"Content-Type": output.content_type})
        await response.prepare(request)
        size = max(
            1, math.ceil(len(audio) / max(1, math.ceil(pcm_seconds(pcm, output.rate) / 0.1)))
        )
        for i, piece in enumerate(chunks(audio, size)):
            await self.pace(i)
            await response.write(piece)
        await response.write_eof()
        return response

    async def _multi_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, _Style.MULTI)

    async def _single_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, _Style.SINGLE)

    async def _dialogue_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, _Style.DIALOGUE)

    async def _stream(self, request: web.Request, style: "_Style") -> web.StreamResponse:
        query = request.query
        record, error = self.admit(
            request, model=query.get("model_id", ""), voice=request.match_info.get("voice", "")
        )
        if error is not None:
            return error
        output = OutputFormat.parse(query.get("output_format", "mp3_44100_128"))
        if output is None:
            return self.error_response(400, "the fake speaks pcm_<rate> and mp3_<rate>_<kbps>")
        async with self.websocket(request) as ws:
            session = _StreamSession(
                self,
                ws,
                record,
                style=style,
                output=output,
                auto_mode=query_bool(query.get("auto_mode"), False),
                alignment=query_bool(query.get("sync_alignment"), False),
            )
            await session.run()
        return ws


class _Style:
    """How one of the three websocket flavours frames its messages."""

    MULTI: ClassVar["_Style"]
    SINGLE: ClassVar["_Style"]
    DIALOGUE: ClassVar["_Style"]

    def __init__(self, *, context_key: str | None, final_key: str, camel_case: bool) -> None:
        self.context_key = context_key
        self.final_key = final_key
        self.camel_case = camel_case


_Style.MULTI = _Style(context_key="contextId", final_key="isFinal", camel_case=True)
_Style.SINGLE = _Style(context_key=None, final_key="isFinal", camel_case=True)
_Style.DIALOGUE = _Style(context_key="context_id", final_key="is_final", camel_case=False)


def _speed(settings: object) -> float:
    if isinstance(settings, dict) and isinstance(settings.get("speed"), int | float):
        return float(settings["speed"])
    return 1.0


@dataclass
class _Context:
    text: str = ""
    schedule: int = DEFAULT_SCHEDULE
    speed: float = 1.0
    clock_ms: float = 0.0
    """Audio already sent, so alignment times run on across generations."""


class _StreamSession:
    def __init__(
        self,
        fake: ElevenLabsFake,
        ws: web.WebSocketResponse,
        record: Recorded,
        *,
        style: _Style,
        output: OutputFormat,
        auto_mode: bool,
        alignment: bool,
    ) -> None:
        self.fake = fake
        self.ws = ws
        self.record = record
        self.style = style
        self.output = output
        self.auto_mode = auto_mode
        self.alignment = alignment
        self.contexts: dict[str, _Context] = {}

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type != web.WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            if message.get("close_socket"):
                for context_id in list(self.contexts):
                    await self.close(context_id)
                break
            context_id = str(message.get("context_id", ""))
            if message.get("keep_alive"):
                continue
            if message.get("close_context"):
                await self.close(context_id)
                continue
            context = self.contexts.get(context_id)
            if context is None:
                context = self.contexts[context_id] = self.open(message)
                if self.style is _Style.DIALOGUE and "inputs" not in message:
                    continue  # the dialogue init packet carries no text
            await self.push(context_id, context, message)

    def open(self, message: dict[str, Any]) -> _Context:
        config = message.get("generation_config")
        schedule = config.get("chunk_length_schedule") if isinstance(config, dict) else None
        if isinstance(message.get("voices"), list) and not self.record.voice:
            self.record.voice = str(message["voices"][0])
        return _Context(
            schedule=int(schedule[0]) if schedule else DEFAULT_SCHEDULE,
            speed=_speed(message.get("voice_settings")),
        )

    async def push(self, context_id: str, context: _Context, message: dict[str, Any]) -> None:
        inputs = message.get("inputs")
        if isinstance(inputs, list):
            text = "".join(str(i.get("text", "")) for i in inputs if isinstance(i, dict))
        else:
            text = str(message.get("text", ""))
        ends_input = self.style is _Style.SINGLE and text == "" and not message.get("flush")
        context.text += text
        buffered = context.text.rstrip()
        if (
            message.get("flush")
            or message.get("try_trigger_generation")
            or ends_input
            or (self.auto_mode and buffered.endswith(SENTENCE_END))
            or len(buffered) >= context.schedule
        ):
            await self.generate(context_id, context)
        if ends_input:
            await self.close(context_id)

    async def generate(self, context_id: str, context: _Context) -> None:
        text, context.text = context.text.strip(), ""
        if not speakable(text):
            return
        self.record.add_text(text)
        pcm = await speak(text, self.output.rate, speed=context.speed)
        audio = await encode_audio_async(
            pcm, self.output.rate, self.output.fmt, bit_rate=self.output.bit_rate
        )
        duration_ms = pcm_seconds(pcm, self.output.rate) * 1000
        pieces = max(1, math.ceil(duration_ms / 100))
        size = max(1, math.ceil(len(audio) / pieces))
        for i, piece in enumerate(chunks(audio, size)):
            await self.fake.pace(i)
            message: dict[str, Any] = {"audio": base64.b64encode(piece).decode()}
            if self.alignment:
                # all of a generation's characters ride on its first chunk
                aligned = self._alignment(text, context.clock_ms, duration_ms) if i == 0 else None
                if self.style.camel_case:
                    message |= {"alignment": aligned, "normalizedAlignment": aligned}
                else:
                    message["alignment"] = aligned
            if not self.style.camel_case:
                message[self.style.final_key] = False
            await self.send(context_id, message)
        context.clock_ms += duration_ms

    def _alignment(self, text: str, start_ms: float, duration_ms: float) -> dict[str, Any]:
        chars = list(f"{text} ")
        step = duration_ms / len(chars)
        starts = [round(start_ms + i * step) for i in range(len(chars))]
        durations = [max(1, round(step))] * len(chars)
        if self.style.camel_case:
            return {"chars": chars, "charStartTimesMs": starts, "charDurationsMs": durations}
        return {"chars": chars, "char_start_times_ms": starts, "char_durations_ms": durations}

    async def close(self, context_id: str) -> None:
        context = self.contexts.pop(context_id, None)
        if context is None:
            return
        await self.generate(context_id, context)
        await self.send(context_id, {self.style.final_key: True})

    async def send(self, context_id: str, message: dict[str, Any]) -> None:
        if self.style.context_key is not None:
            message[self.style.context_key] = context_id
        if not self.ws.closed:
            await self.ws.send_json(message)


def main() -> None:
    args = cli_parser("An ElevenLabs TTS fake (websockets and REST).").parse_args()
    serve_forever(lambda: ElevenLabsFake(**common_kwargs(args)))


if __name__ == "__main__":
    main()
