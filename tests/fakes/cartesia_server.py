"""Cartesia's TTS API on loopback, for `livekit-plugins-cartesia`.

Endpoints (key in ``X-API-Key``, or ``?api_key=`` / ``Authorization: Bearer`` as Cartesia
accepts for access tokens; the API version in ``Cartesia-Version`` or ``?cartesia_version=``
is required, as upstream):

- ``GET /tts/websocket`` (websocket), what ``cartesia.TTS().stream()`` uses: one JSON
  message per sentence ``{"context_id", "transcript", "continue": true, "model_id", "voice",
  "output_format", "add_timestamps", ...}``, a last ``"continue": false``; ``{"context_id",
  "cancel": true}`` drops a context. Out: ``chunk`` messages (base64 audio),
  ``timestamps`` (word timings, when ``add_timestamps``) and ``done``.
- ``POST /tts/bytes``: one-shot synthesis (``cartesia.TTS().synthesize()``).

Audio is espeak-ng, as ``output_format`` asks: raw ``pcm_s16le``/``pcm_f32le`` at any rate,
``wav`` or ``mp3`` containers (bytes endpoint).

    async with CartesiaFake() as fake:
        tts = cartesia.TTS(api_key="ca-key", base_url=fake.base_url)

As a process: ``python -m tests.fakes.cartesia_server --port 8103``.
"""

import base64
import json
import math
from typing import Any, ClassVar

import numpy as np
from aiohttp import web

from tests.fakes.provider_base import (
    ProviderFake,
    Recorded,
    bearer,
    chunks,
    cli_parser,
    common_kwargs,
    encode_audio_async,
    pcm_seconds,
    request_id,
    serve_forever,
    speak,
    speakable,
    spread_words,
)

SENTENCE_END = (".", "!", "?", ";", ":")


def _raw(pcm: bytes, encoding: str) -> bytes | None:
    """``pcm_s16le`` as Cartesia's raw ``encoding``; None if the fake cannot produce it."""
    if encoding == "pcm_s16le":
        return pcm
    if encoding == "pcm_f32le":
        return (np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0).tobytes()
    return None


def _bytes_per_second(output_format: dict[str, Any], rate: int) -> int:
    return rate * (4 if output_format.get("encoding") == "pcm_f32le" else 2)


class CartesiaFake(ProviderFake):
    name: ClassVar[str] = "cartesia"
    base_path: ClassVar[str] = ""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/tts/websocket", self._websocket),
            web.post("/tts/bytes", self._bytes),
        ]

    def key_of(self, request: web.Request) -> str | None:
        return request.headers.get("X-API-Key") or request.query.get("api_key") or bearer(request)

    def error_response(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": message, "request_id": request_id()}, status=status)

    def refusal(self, key: str | None) -> web.Response:
        return self.error_response(401, "Invalid API key" if key else "API key is required")

    @staticmethod
    def _version(request: web.Request) -> str | None:
        return request.headers.get("Cartesia-Version") or request.query.get("cartesia_version")

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        options = body if isinstance(body, dict) else {}
        record, error = self.admit(
            request, model=str(options.get("model_id", "")), voice=_voice(options)
        )
        if error is not None:
            return error
        if not self._version(request):
            return self.error_response(400, "Cartesia-Version header is required")
        text = options.get("transcript")
        output_format = options.get("output_format") or {}
        if not isinstance(text, str) or not text or not isinstance(output_format, dict):
            return self.error_response(400, "'transcript' and 'output_format' are required")
        rate = int(output_format.get("sample_rate", 44_100))
        container = output_format.get("container", "raw")
        pcm = await speak(text, rate, speed=_speed(options))
        audio: bytes | None
        if container == "raw":
            audio = _raw(pcm, str(output_format.get("encoding", "")))
        elif container in ("wav", "mp3"):
            audio = await encode_audio_async(
                pcm, rate, container, bit_rate=output_format.get("bit_rate")
            )
        else:
            audio = None
        if audio is None:
            return self.error_response(400, f"unsupported output_format {output_format}")
        record.add_text(text)
        response = web.StreamResponse(
            headers={"Content-Type": "audio/mpeg" if container == "mp3" else f"audio/{container}"}
        )
        await response.prepare(request)
        size = max(1, math.ceil(len(audio) / max(1, math.ceil(pcm_seconds(pcm, rate) / 0.1))))
        for i, piece in enumerate(chunks(audio, size)):
            await self.pace(i)
            await response.write(piece)
        await response.write_eof()
        return response

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        record, error = self.admit(request)
        if error is not None:
            return error
        if not self._version(request):
            return self.error_response(400, "cartesia_version is required")
        async with self.websocket(request) as ws:
            await _Contexts(self, ws, record).run()
        return ws


def _voice(options: dict[str, Any]) -> str:
    voice = options.get("voice")
    if isinstance(voice, dict):
        return str(voice.get("id", "embedding" if voice.get("embedding") else ""))
    return ""


def _speed(options: dict[str, Any]) -> float:
    config = options.get("generation_config")
    if isinstance(config, dict) and isinstance(config.get("speed"), int | float):
        return float(config["speed"])
    return 1.0


class _Contexts:
    """The contexts multiplexed on one Cartesia websocket."""

    def __init__(self, fake: CartesiaFake, ws: web.WebSocketResponse, record: Recorded) -> None:
        self.fake = fake
        self.ws = ws
        self.record = record
        self.pending: dict[str, str] = {}
        """Text received per context and not yet spoken."""
        self.clock: dict[str, float] = {}
        """Audio seconds already sent per context (word timestamps continue from there)."""

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type != web.WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            context_id = str(message.get("context_id", ""))
            if message.get("cancel"):
                self.pending.pop(context_id, None)
                self.clock.pop(context_id, None)
                continue
            await self.handle(context_id, message)

    async def handle(self, context_id: str, message: dict[str, Any]) -> None:
        output_format = message.get("output_format") or {}
        if not message.get("model_id") or not isinstance(output_format, dict):
            await self.error(context_id, "model_id and output_format are required")
            return
        if self.record.model == "":
            self.record.model, self.record.voice = str(message["model_id"]), _voice(message)
        buffered = self.pending.get(context_id, "") + str(message.get("transcript", ""))
        more = bool(message.get("continue", False))
        flush_now = not more or message.get("max_buffer_delay_ms") == 0
        if flush_now or buffered.rstrip().endswith(SENTENCE_END):
            self.pending[context_id] = ""
            spoken = not speakable(buffered) or await self.speak(
                context_id, buffered, message, output_format
            )
            if not spoken:
                return
        else:
            self.pending[context_id] = buffered
        if not more:
            self.pending.pop(context_id, None)
            self.clock.pop(context_id, None)
            await self.ws.send_json(
                {"type": "done", "done": True, "status_code": 206, "context_id": context_id}
            )

    async def speak(
        self, context_id: str, text: str, message: dict[str, Any], output_format: dict[str, Any]
    ) -> bool:
        if output_format.get("container", "raw") != "raw":
            await self.error(context_id, "the websocket streams container 'raw' only")
            return False
        rate = int(output_format.get("sample_rate", 44_100))
        encoding = str(output_format.get("encoding", ""))
        pcm = await speak(text, rate, speed=_speed(message))
        audio = _raw(pcm, encoding)
        if audio is None:
            await self.error(context_id, f"unsupported encoding {encoding!r}")
            return False
        self.record.add_text(text.strip())
        start = self.clock.get(context_id, 0.0)
        duration = pcm_seconds(pcm, rate)
        self.clock[context_id] = start + duration
        size = _bytes_per_second(output_format, rate) // 10
        for i, piece in enumerate(chunks(audio, size)):
            await self.fake.pace(i)
            await self.ws.send_json(
                {
                    "type": "chunk",
                    "data": base64.b64encode(piece).decode(),
                    "done": False,
                    "status_code": 206,
                    "step_time": 0.0,
                    "context_id": context_id,
                }
            )
        if message.get("add_timestamps"):
            words = spread_words(text, start, start + duration)
            await self.ws.send_json(
                {
                    "type": "timestamps",
                    "done": False,
                    "status_code": 206,
                    "context_id": context_id,
                    "word_timestamps": {
                        "words": [w for w, _, _ in words],
                        "start": [round(s, 3) for _, s, _ in words],
                        "end": [round(e, 3) for _, _, e in words],
                    },
                }
            )
        return True

    async def error(self, context_id: str, message: str) -> None:
        await self.ws.send_json(
            {
                "type": "error",
                "context_id": context_id,
                "status_code": 400,
                "done": True,
                "error": message,
            }
        )


def main() -> None:
    args = cli_parser("A Cartesia TTS fake (websocket and /tts/bytes).").parse_args()
    serve_forever(lambda: CartesiaFake(**common_kwargs(args)))


if __name__ == "__main__":
    main()
