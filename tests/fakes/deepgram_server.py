"""Deepgram's listen (STT) and speak (TTS) APIs on loopback, for `livekit-plugins-deepgram`.

Endpoints (key in ``Authorization: Token <key>``; ``Bearer`` is accepted as Deepgram does
for temporary tokens):

- ``GET /v1/listen`` (websocket), what ``deepgram.STT().stream()`` opens: query
  ``encoding=linear16&sample_rate=..&channels=..&interim_results=..&vad_events=..&endpointing=..
  &utterance_end_ms=..``; binary audio in; ``KeepAlive``, ``Finalize`` and ``CloseStream``
  JSON control messages. Out: ``SpeechStarted`` (vad_events), ``Results`` with
  ``is_final``/``speech_final``/``from_finalize``, ``UtteranceEnd`` (utterance_end_ms) and a
  closing ``Metadata``. Utterances are cut by an energy gate on audio time and recognised
  by pocketsphinx against ``phrases``.
- ``POST /v1/listen``: prerecorded audio (``deepgram.STT().recognize()``).
- ``POST /v1/speak``: REST TTS (``deepgram.TTS().synthesize()``), linear16 raw or WAV, mp3.
- ``GET /v1/speak`` (websocket): streaming TTS (``deepgram.TTS().stream()``): ``Speak``
  text, ``Flush`` -> binary audio then ``Flushed``, ``Clear`` -> ``Cleared``, ``Close``.

The plugins take the full endpoint as ``base_url``: `listen_url` and `speak_url`.

    async with DeepgramFake(phrases=["what are your opening hours"]) as fake:
        stt = deepgram.STT(api_key="dg-key", base_url=fake.listen_url)

As a process: ``python -m tests.fakes.deepgram_server --port 8102 --phrases ...``.
"""

import asyncio
import json
import math
from typing import Any, ClassVar

import numpy as np
from aiohttp import web

from tests.fakes.provider_base import (
    Endpointer,
    ProviderFake,
    Recorded,
    SpeechStarted,
    UndecodableAudioError,
    Utterance,
    bearer,
    chunks,
    cli_parser,
    common_kwargs,
    decode_upload,
    encode_audio_async,
    pcm_seconds,
    query_bool,
    query_float,
    request_id,
    serve_forever,
    speak,
    spread_words,
)

CONFIDENCE = 0.98
INTERIM_EVERY_S = 0.5
"""Audio time between interim results of an utterance still in progress."""
SPEAK_FORMATS = {"linear16": "pcm", "mp3": "mp3", "opus": "opus", "flac": "flac", "aac": "aac"}


def _punctuated(text: str) -> str:
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def _model_info(model: str) -> dict[str, str]:
    return {"name": f"general-{model}", "version": "2025-01-01.0", "arch": model}


class DeepgramFake(ProviderFake):
    name: ClassVar[str] = "deepgram"
    base_path: ClassVar[str] = ""

    @property
    def listen_url(self) -> str:
        """``base_url`` for ``deepgram.STT`` (it switches http to ws itself)."""
        return f"{self.http_url}/v1/listen"

    @property
    def speak_url(self) -> str:
        """``base_url`` for ``deepgram.TTS``."""
        return f"{self.http_url}/v1/speak"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/listen", self._listen_ws),
            web.post("/v1/listen", self._listen_rest),
            web.get("/v1/speak", self._speak_ws),
            web.post("/v1/speak", self._speak_rest),
        ]

    def key_of(self, request: web.Request) -> str | None:
        return bearer(request, "Token") or bearer(request)

    def error_response(self, status: int, message: str) -> web.Response:
        rid = request_id()
        code = {400: "Bad Request", 401: "INVALID_AUTH", 429: "TOO_MANY_REQUESTS"}.get(
            status, "INTERNAL_SERVER_ERROR"
        )
        return web.json_response(
            {"err_code": code, "err_msg": message, "request_id": rid},
            status=status,
            headers={"dg-request-id": rid},
        )

    def refusal(self, key: str | None) -> web.Response:
        return self.error_response(401, "Invalid credentials." if key else "Missing credentials.")

    # listen

    async def _listen_ws(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        record, error = self.admit(request, model=query.get("model", ""))
        if error is not None:
            return error
        if query.get("encoding", "linear16") != "linear16":
            return self.error_response(400, "the fake decodes encoding=linear16 only")
        session = _ListenSession(self, record, query)
        async with self.websocket(request) as ws:
            await session.run(ws)
        return ws

    async def _listen_rest(self, request: web.Request) -> web.Response:
        model = request.query.get("model", "")
        record, error = self.admit(request, model=model)
        if error is not None:
            return error
        try:
            pcm, rate = await asyncio.to_thread(decode_upload, await request.read())
        except UndecodableAudioError:
            return self.error_response(400, "failed to process audio: corrupt or unsupported data")
        text = await self.recognizer.recognize(pcm, rate)
        record.add_text(text)
        await self.pace(0)
        duration = pcm_seconds(pcm, rate)
        punctuate = query_bool(request.query.get("punctuate"), False)
        channel: dict[str, Any] = {
            "alternatives": [_alternative(text, 0.0, duration, punctuate=punctuate)]
        }
        if query_bool(request.query.get("detect_language"), False):
            channel |= {"detected_language": "en", "language_confidence": CONFIDENCE}
        rid = request_id()
        return web.json_response(
            {
                "metadata": {
                    "transaction_key": "deprecated",
                    "request_id": rid,
                    "duration": duration,
                    "channels": 1,
                    "models": [rid],
                    "model_info": {rid: _model_info(model)},
                },
                "results": {"channels": [channel]},
            },
            headers={"dg-request-id": rid},
        )

    # speak

    async def _speak_rest(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        record, error = self.admit(request, model=query.get("model", ""))
        if error is not None:
            return error
        try:
            text = (await request.json()).get("text")
        except (json.JSONDecodeError, AttributeError):
            text = None
        encoding = query.get("encoding", "mp3")
        fmt = SPEAK_FORMATS.get(encoding)
        if fmt == "pcm" and query.get("container") == "wav":
            fmt = "wav"
        if not isinstance(text, str) or not text or fmt is None:
            return self.error_response(400, "a 'text' and a supported encoding are required")
        record.add_text(text)
        rate = int(query_float(query.get("sample_rate"), 24_000))
        pcm = await speak(text, rate, speed=query_float(query.get("speed"), 1.0))
        audio = await encode_audio_async(pcm, rate, fmt)
        response = web.StreamResponse(
            headers={"Content-Type": f"audio/{encoding}", "dg-request-id": request_id()}
        )
        await response.prepare(request)
        size = max(1, math.ceil(len(audio) / max(1, math.ceil(pcm_seconds(pcm, rate) / 0.1))))
        for i, piece in enumerate(chunks(audio, size)):
            await self.pace(i)
            await response.write(piece)
        await response.write_eof()
        return response

    async def _speak_ws(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        model = query.get("model", "")
        record, error = self.admit(request, model=model)
        if error is not None:
            return error
        if query.get("encoding", "linear16") != "linear16":
            return self.error_response(400, "the fake streams encoding=linear16 only")
        rate = int(query_float(query.get("sample_rate"), 24_000))
        speed = query_float(query.get("speed"), 1.0)
        async with self.websocket(request) as ws:
            rid = request_id()
            await ws.send_json(
                {
                    "type": "Metadata",
                    "request_id": rid,
                    "model_name": model,
                    "model_version": "2025-01-01.0",
                    "model_uuid": rid,
                }
            )
            text: list[str] = []
            sequence = 0
            async for msg in ws:
                if msg.type != web.WSMsgType.TEXT:
                    continue
                message = json.loads(msg.data)
                kind = message.get("type")
                if kind == "Speak":
                    text.append(str(message.get("text", "")))
                elif kind == "Flush":
                    said = "".join(text).strip()
                    text.clear()
                    record.add_text(said)
                    pcm = await speak(said, rate, speed=speed)
                    for i, piece in enumerate(chunks(pcm, rate // 10 * 2)):
                        await self.pace(i)
                        await ws.send_bytes(piece)
                    await ws.send_json({"type": "Flushed", "sequence_id": sequence})
                    sequence += 1
                elif kind == "Clear":
                    text.clear()
                    await ws.send_json({"type": "Cleared", "sequence_id": sequence})
                elif kind == "Close":
                    break
                else:
                    await ws.send_json(
                        {"type": "Warning", "warn_code": "UNKNOWN", "warn_msg": f"unknown {kind}"}
                    )
        return ws


def _alternative(text: str, start: float, end: float, *, punctuate: bool) -> dict[str, Any]:
    words = spread_words(text, start, end)
    out_words = []
    for i, (word, w_start, w_end) in enumerate(words):
        entry: dict[str, Any] = {
            "word": word,
            "start": round(w_start, 3),
            "end": round(w_end, 3),
            "confidence": CONFIDENCE,
        }
        if punctuate:
            shown = word.capitalize() if i == 0 else word
            entry["punctuated_word"] = f"{shown}." if i == len(words) - 1 else shown
        out_words.append(entry)
    return {
        "transcript": _punctuated(text) if punctuate else text,
        "confidence": CONFIDENCE if text else 0.0,
        "words": out_words,
    }


class _ListenSession:
    """One streaming recognition: audio time, utterances, and the Results they give."""

    def __init__(self, fake: DeepgramFake, record: Recorded, query: Any) -> None:
        self.fake = fake
        self.record = record
        self.rate = int(query_float(query.get("sample_rate"), 16_000))
        self.channels = max(1, int(query_float(query.get("channels"), 1)))
        self.model = query.get("model", "nova-3")
        self.interim = query_bool(query.get("interim_results"), False)
        self.vad_events = query_bool(query.get("vad_events"), False)
        self.punctuate = query_bool(query.get("punctuate"), False) or query_bool(
            query.get("smart_format"), False
        )
        endpointing = query.get("endpointing", "10")
        self.endpointing = endpointing.lower() != "false"
        end_silence = fake.end_silence
        if self.endpointing:
            end_silence = max(end_silence, query_float(endpointing, 10) / 1000)
        utterance_end = query.get("utterance_end_ms")
        self.utterance_end_s = query_float(utterance_end, 0) / 1000 if utterance_end else None
        self.endpointer = Endpointer(self.rate, end_silence=end_silence)
        self.request_id = request_id()
        self.last_word_end: float | None = None
        """End of the last final's speech, until its UtteranceEnd is sent."""
        self.next_interim = 0.0
        self.ws: web.WebSocketResponse | None = None

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.send_json(message)

    async def run(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        async for msg in ws:
            if msg.type == web.WSMsgType.BINARY:
                await self.audio(msg.data)
            elif msg.type == web.WSMsgType.TEXT:
                kind = json.loads(msg.data).get("type")
                if kind == "Finalize":
                    await self.finish(self.endpointer.flush(), speech_final=False, finalize=True)
                elif kind == "CloseStream":
                    await self.finish(self.endpointer.flush(), speech_final=True)
                    await self.send(
                        {
                            "type": "Metadata",
                            "transaction_key": "deprecated",
                            "request_id": self.request_id,
                            "duration": self.endpointer.position,
                            "channels": self.channels,
                            "models": [self.request_id],
                            "model_info": {self.request_id: _model_info(self.model)},
                        }
                    )
                    break
                # KeepAlive needs no answer

    async def audio(self, data: bytes) -> None:
        if self.channels > 1:
            frames = np.frombuffer(data[: len(data) - len(data) % (2 * self.channels)], np.int16)
            data = frames.reshape(-1, self.channels).mean(axis=1).astype(np.int16).tobytes()
        for event in self.endpointer.push(data):
            if isinstance(event, SpeechStarted):
                self.next_interim = event.at + INTERIM_EVERY_S
                if self.vad_events:
                    await self.send(
                        {"type": "SpeechStarted", "channel": [0], "timestamp": round(event.at, 3)}
                    )
            elif isinstance(event, Utterance):
                await self.finish(event, speech_final=self.endpointing)
        position = self.endpointer.position
        if self.interim and self.endpointer.speaking and position >= self.next_interim:
            self.next_interim = position + INTERIM_EVERY_S
            text = await self.fake.recognizer.partial(self.endpointer.current, self.rate)
            start = self.endpointer.speech_start
            await self.results(text, start, position, is_final=False, speech_final=False)
        if (
            self.utterance_end_s is not None
            and self.last_word_end is not None
            and not self.endpointer.speaking
            and position - self.last_word_end >= self.utterance_end_s
        ):
            await self.send(
                {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self.last_word_end}
            )
            self.last_word_end = None

    async def finish(
        self, utterance: Utterance | None, *, speech_final: bool, finalize: bool = False
    ) -> None:
        if utterance is None:
            return
        text = await self.fake.recognizer.recognize(utterance.pcm, self.rate)
        self.record.add_text(text)
        await self.fake.pace(0)
        await self.results(
            text,
            utterance.start,
            utterance.end,
            is_final=True,
            speech_final=speech_final,
            finalize=finalize,
        )
        if text:
            self.last_word_end = round(utterance.end, 3)

    async def results(
        self,
        text: str,
        start: float,
        end: float,
        *,
        is_final: bool,
        speech_final: bool,
        finalize: bool = False,
    ) -> None:
        await self.send(
            {
                "type": "Results",
                "channel_index": [0, 1],
                "duration": round(end - start, 3),
                "start": round(start, 3),
                "is_final": is_final,
                "speech_final": speech_final,
                "from_finalize": finalize,
                "channel": {
                    "alternatives": [_alternative(text, start, end, punctuate=self.punctuate)]
                },
                "metadata": {
                    "request_id": self.request_id,
                    "model_info": _model_info(self.model),
                    "model_uuid": self.request_id,
                },
            }
        )


def main() -> None:
    args = cli_parser("A Deepgram fake (streaming and prerecorded STT, TTS).").parse_args()
    serve_forever(lambda: DeepgramFake(**common_kwargs(args)))


if __name__ == "__main__":
    main()
