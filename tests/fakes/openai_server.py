"""An OpenAI-compatible API on loopback, for the real `livekit-plugins-openai` in tests.

Endpoints (under ``/v1``, key in ``Authorization: Bearer``):

- ``POST /chat/completions``: streamed (SSE chunks, a usage chunk when
  ``stream_options.include_usage``, then ``data: [DONE]``) or not. The reply comes from
  `ReplyRules` (the `scripted` LLM's rules) applied to the last user message.
- ``POST /audio/transcriptions``: multipart upload (WAV or anything PyAV decodes), recognised
  by pocketsphinx against ``phrases``; ``json``/``verbose_json``/``text`` answers. This is
  what ``openai.STT()`` uses by default (its default model is not realtime-only, so
  ``use_realtime`` defaults to False and AgentSession wraps it in a StreamAdapter + VAD).
- ``GET /realtime?intent=transcription`` (websocket): the realtime transcription session
  ``openai.STT(use_realtime=True)`` opens: ``session.update``, base64 PCM16 24 kHz
  ``input_audio_buffer.append``/``commit``, server VAD events and ``...transcription.delta``
  / ``.completed`` back.
- ``POST /audio/speech``: espeak-ng audio as ``response_format`` (mp3 by default, also
  pcm = raw s16le 24 kHz, wav, opus in Ogg, aac, flac). ``stream_format: "sse"`` (what the
  plugin asks for every model but tts-1/tts-1-hd) gets ``speech.audio.delta`` events.
- ``GET /models``: the plugin's prewarm call.

In-process::

    async with OpenAIFake(rules=[("opening hours", "Nine to five.")], phrases=[...]) as fake:
        llm = openai.LLM(model="gpt-4.1-mini", base_url=fake.base_url, api_key="sk-test")

As a process (benchmarks)::

    python -m tests.fakes.openai_server --port 8101 --rules-json rules.json \\
        --phrases "what are your opening hours" --first-delay 0.3 --chunk-delay 0.02

``rules.json`` has the `ScriptedOptions` shape: ``{"rules": [{"match": ..., "reply": ...}],
"fallback": ...}``. The process prints ``fake provider ready http://127.0.0.1:8101/v1``.
"""

import asyncio
import base64
import json
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from aiohttp import web

from tests.fakes.provider_base import (
    AUDIO_FORMATS,
    DEFAULT_RULES,
    Endpointer,
    Recorded,
    ReplyRules,
    ScriptedLlmFake,
    SpeechStarted,
    UndecodableAudioError,
    Utterance,
    bearer,
    chunks,
    cli_parser,
    common_kwargs,
    count_tokens,
    decode_upload,
    encode_audio_async,
    mask_key,
    now_s,
    pcm_seconds,
    rules_options,
    serve_forever,
    speak,
    split_tokens,
)

SPEECH_RATE = 24_000
"""OpenAI's ``pcm`` is 24 kHz s16le, and the plugin decodes everything at that rate."""
REALTIME_RATE = 24_000
SSE_AUDIO_MODELS = frozenset({"tts-1", "tts-1-hd"})
"""Models that answer audio bytes only (no ``stream_format: sse``)."""
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
DEFAULT_PHRASES = ("what are your opening hours", "good bye")


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def message_text(message: dict[str, Any]) -> str:
    """A chat message's text: content may be a string or a list of typed parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return ""


class OpenAIFake(ScriptedLlmFake):
    """The OpenAI API subset the livekit openai plugin (and Groq's, which is the same
    client) uses. ``bodies`` keeps each chat request's JSON (messages, tools, ...)."""

    name: ClassVar[str] = "openai"
    base_path: ClassVar[str] = "/v1"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/models", self._models),
            web.post("/v1/chat/completions", self._chat),
            web.post("/v1/audio/transcriptions", self._transcriptions),
            web.post("/v1/audio/speech", self._speech),
            web.get("/v1/realtime", self._realtime),
        ]

    # errors, in OpenAI's shape

    def key_of(self, request: web.Request) -> str | None:
        return bearer(request)

    def error_response(self, status: int, message: str) -> web.Response:
        kind, code = {
            400: ("invalid_request_error", None),
            401: ("invalid_request_error", "invalid_api_key"),
            404: ("invalid_request_error", "model_not_found"),
            429: ("requests", "rate_limit_exceeded"),
        }.get(status, ("server_error", None))
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return web.json_response(body, status=status, headers=self._headers())

    def refusal(self, key: str | None) -> web.Response:
        if key is None:
            return self.error_response(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        return self.error_response(
            401,
            f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
        )

    @staticmethod
    def _headers() -> dict[str, str]:
        return {"x-request-id": _id("req_")}

    async def _json_body(self, request: web.Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) else None

    # endpoints

    async def _models(self, request: web.Request) -> web.Response:
        _, error = self.admit(request)
        if error is not None:
            return error
        data = [{"id": "gpt-4.1", "object": "model", "created": 0, "owned_by": "fake"}]
        return web.json_response({"object": "list", "data": data}, headers=self._headers())

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        model = str(body.get("model", "")) if body else ""
        record, error = self.admit(request, model=model)
        if error is not None:
            return error
        messages = body.get("messages") if body else None
        if body is None or not model or not isinstance(messages, list) or not messages:
            return self.error_response(400, "'model' and a non-empty 'messages' are required")
        self.bodies.append(body)
        user_text = last_user_text(messages)
        record.add_text(user_text)
        reply = self.rules.reply_for(user_text)
        pieces = split_tokens(reply)
        prompt_tokens = sum(count_tokens(message_text(m)) + 4 for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(pieces),
            "total_tokens": prompt_tokens + len(pieces),
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        completion_id = _id("chatcmpl-")
        if not body.get("stream"):
            await self.pace(0)
            return web.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": now_s(),
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
                headers=self._headers(),
            )

        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **self._headers(),
            }
        )
        await response.prepare(request)
        created = now_s()

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": choices,
                **extra,
            }
            if include_usage and "usage" not in chunk:
                chunk["usage"] = None
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        await self.pace(0)
        await send([choice({"role": "assistant", "content": "", "refusal": None})])
        for i, piece in enumerate(pieces):
            if i:
                await self.pace(i)
            await send([choice({"content": piece})])
        await send([choice({}, "stop")])
        if include_usage:
            await send([], usage=usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _transcriptions(self, request: web.Request) -> web.Response:
        form = await request.post()
        model = str(form.get("model", ""))
        record, error = self.admit(request, model=model)
        if error is not None:
            return error
        upload = form.get("file")
        if not isinstance(upload, web.FileField) or not model:
            return self.error_response(400, "'file' and 'model' are required")
        try:
            pcm, rate = await asyncio.to_thread(decode_upload, upload.file.read())
        except UndecodableAudioError:
            return self.error_response(400, "Audio file might be corrupted or unsupported")
        text = await self.recognizer.recognize(pcm, rate)
        record.add_text(text)
        await self.pace(0)
        duration = pcm_seconds(pcm, rate)
        fmt = str(form.get("response_format", "json"))
        if fmt == "text":
            return web.Response(text=f"{text}\n", headers=self._headers())
        usage: dict[str, Any]
        if model == "whisper-1":
            usage = {"type": "duration", "seconds": math.ceil(duration)}
        else:
            audio_tokens = math.ceil(duration * 10)
            usage = {
                "type": "tokens",
                "input_tokens": audio_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                "output_tokens": count_tokens(text),
                "total_tokens": audio_tokens + count_tokens(text),
            }
        answer: dict[str, Any] = {"text": text, "usage": usage}
        if fmt == "verbose_json":
            answer |= {
                "task": "transcribe",
                "language": "english",
                "duration": round(duration, 3),
                "segments": [{"id": 0, "start": 0.0, "end": round(duration, 3), "text": text}],
            }
        return web.json_response(answer, headers=self._headers())

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request) or {}
        model, voice = str(body.get("model", "")), str(body.get("voice", ""))
        record, error = self.admit(request, model=model, voice=voice)
        if error is not None:
            return error
        text = body.get("input")
        fmt = str(body.get("response_format", "mp3"))
        sse = body.get("stream_format") == "sse"
        if not isinstance(text, str) or not text or not model or not voice:
            return self.error_response(400, "'model', 'input' and 'voice' are required")
        if fmt not in AUDIO_FORMATS:
            return self.error_response(400, f"Invalid response_format {fmt!r}")
        if sse and model in SSE_AUDIO_MODELS:
            return self.error_response(400, f"stream_format 'sse' is not supported for {model}")
        record.add_text(text)
        speed = float(body.get("speed", 1.0) or 1.0)
        pcm = await speak(text, SPEECH_RATE, speed=speed)
        audio = await encode_audio_async(pcm, SPEECH_RATE, fmt)
        # ~100 ms of audio per piece, whatever the encoding's bitrate
        pieces = max(1, math.ceil(pcm_seconds(pcm, SPEECH_RATE) / 0.1))
        size = max(1, math.ceil(len(audio) / pieces))
        content_type = "text/event-stream" if sse else CONTENT_TYPES[fmt]
        response = web.StreamResponse(headers={"Content-Type": content_type, **self._headers()})
        await response.prepare(request)
        for i, piece in enumerate(chunks(audio, size)):
            await self.pace(i)
            if sse:
                event = {"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode()}
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            else:
                await response.write(piece)
        if sse:
            tokens_in, tokens_out = count_tokens(text), math.ceil(len(pcm) / 2 / 480)
            done = {
                "type": "speech.audio.done",
                "usage": {
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                },
            }
            await response.write(f"data: {json.dumps(done)}\n\n".encode())
        await response.write_eof()
        return response

    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        record, error = self.admit(request, model=request.query.get("model", ""))
        if error is not None:
            return error
        async with self.websocket(request) as ws:
            session = _RealtimeTranscription(self, ws, record)
            await session.run()
        return ws


class _RealtimeTranscription:
    """One realtime transcription session: server VAD (or client commits) over PCM16."""

    def __init__(self, fake: OpenAIFake, ws: web.WebSocketResponse, record: Recorded) -> None:
        self.fake = fake
        self.ws = ws
        self.record = record
        self.rate = REALTIME_RATE
        self.server_vad = True
        self.endpointer = Endpointer(self.rate, end_silence=fake.end_silence)
        self.buffer = bytearray()
        """Audio since the last commit when there is no server VAD."""
        self.item_id = ""
        self.previous_item_id: str | None = None
        self.session: dict[str, Any] = {"type": "transcription"}

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send_json({"event_id": _id("event_"), **event})

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": self.session})
        async for msg in self.ws:
            if msg.type != web.WSMsgType.TEXT:
                continue
            event = json.loads(msg.data)
            kind = event.get("type")
            if kind == "session.update":
                await self.configure(event.get("session") or {})
            elif kind == "input_audio_buffer.append":
                await self.append(base64.b64decode(event.get("audio", "")))
            elif kind == "input_audio_buffer.commit":
                utterance = self.endpointer.flush() if self.server_vad else None
                pcm = utterance.pcm if utterance else bytes(self.buffer)
                self.buffer.clear()
                await self.transcribe(pcm, self.item_id or _id("item_"))
            elif kind == "input_audio_buffer.clear":
                self.buffer.clear()
                self.endpointer.flush()
                await self.send({"type": "input_audio_buffer.cleared"})
            else:
                await self.send(
                    {
                        "type": "error",
                        "error": {
                            "type": "invalid_request_error",
                            "code": "unknown_event",
                            "message": f"unsupported event type {kind!r}",
                        },
                    }
                )

    async def configure(self, session: dict[str, Any]) -> None:
        self.session |= session
        audio_input = (session.get("audio") or {}).get("input") or {}
        rate = (audio_input.get("format") or {}).get("rate")
        if isinstance(rate, int) and rate != self.rate:
            self.rate = rate
            self.endpointer = Endpointer(rate, end_silence=self.fake.end_silence)
        model = (audio_input.get("transcription") or {}).get("model")
        if model and not self.record.model:
            self.record.model = str(model)
        if "turn_detection" in audio_input:
            turn = audio_input["turn_detection"]
            self.server_vad = bool(turn)
            if isinstance(turn, dict) and isinstance(turn.get("silence_duration_ms"), int):
                self.endpointer.end_silence = max(
                    self.fake.end_silence, turn["silence_duration_ms"] / 1000
                )
        await self.send({"type": "session.updated", "session": self.session})

    async def append(self, pcm: bytes) -> None:
        if not self.server_vad:
            self.buffer += pcm
            return
        for event in self.endpointer.push(pcm):
            if isinstance(event, SpeechStarted):
                self.item_id = _id("item_")
                await self.send(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": round(event.at * 1000),
                        "item_id": self.item_id,
                    }
                )
            elif isinstance(event, Utterance):
                await self.send(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": round(event.end * 1000),
                        "item_id": self.item_id,
                    }
                )
                await self.transcribe(event.pcm, self.item_id)

    async def transcribe(self, pcm: bytes, item_id: str) -> None:
        await self.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": self.previous_item_id,
                "item_id": item_id,
            }
        )
        self.previous_item_id = item_id
        text = await self.fake.recognizer.recognize(pcm, self.rate)
        self.record.add_text(text)
        base = {"item_id": item_id, "content_index": 0}
        for i, piece in enumerate(split_tokens(text)):
            await self.fake.pace(i)
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    **base,
                    "delta": piece,
                }
            )
        audio_tokens = math.ceil(pcm_seconds(pcm, self.rate) * 10)
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                **base,
                "transcript": text,
                "usage": {
                    "type": "tokens",
                    "input_tokens": audio_tokens,
                    "output_tokens": count_tokens(text),
                    "total_tokens": audio_tokens + count_tokens(text),
                },
            }
        )


@pytest.fixture(name="openai_fake")
async def openai_fake_fixture() -> AsyncIterator[OpenAIFake]:
    """The ``openai_fake`` fixture: an `OpenAIFake` with `DEFAULT_RULES` and
    `DEFAULT_PHRASES` for one test.

    Import it into a test module (``from tests.fakes.openai_server import
    openai_fake_fixture  # noqa: F401``) and take ``openai_fake`` as an argument; build an
    `OpenAIFake` yourself for other rules, refused keys or pacing.
    """
    async with OpenAIFake(rules=DEFAULT_RULES, phrases=DEFAULT_PHRASES) as fake:
        yield fake


def main() -> None:
    parser = cli_parser("An OpenAI-compatible fake (chat, transcriptions, speech).")
    parser.add_argument("--rules-json", help="ScriptedOptions JSON: rules and fallback")
    args = parser.parse_args()
    if args.rules_json:
        with open(args.rules_json, "rb") as f:
            options = ReplyRules.from_json(f.read()).options
    else:
        options = rules_options(DEFAULT_RULES, None)
    serve_forever(lambda: OpenAIFake(rules=options, **common_kwargs(args)))


if __name__ == "__main__":
    main()
