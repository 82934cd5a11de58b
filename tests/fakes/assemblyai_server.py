"""AssemblyAI's v3 streaming STT on loopback, for `livekit-plugins-assemblyai`.

``GET /v3/ws`` (websocket; the raw key in ``Authorization``, or ``?token=``): query
``sample_rate``, ``encoding=pcm_s16le``, ``speech_model``, ``format_turns``,
``min_turn_silence``...; binary PCM in; ``UpdateConfiguration``, ``ForceEndpoint`` and
``Terminate`` JSON messages. Out: ``Begin``, ``SpeechStarted``, partial ``Turn``s (every
0.5 s of speech, prefix-grammar recognition) and a final ``Turn`` (``end_of_turn``, with
``turn_is_formatted`` as ``format_turns`` asks), ``Termination``.

    async with AssemblyAIFake(phrases=["what are your opening hours"]) as fake:
        stt = assemblyai.STT(api_key="aai-key", base_url=fake.ws_url)

As a process: ``python -m tests.fakes.assemblyai_server --port 8105 --phrases ...``.
"""

import json
import time
import uuid
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.provider_base import (
    Endpointer,
    ProviderFake,
    Recorded,
    SpeechStarted,
    Utterance,
    cli_parser,
    common_kwargs,
    query_bool,
    query_float,
    serve_forever,
    spread_words,
)

CONFIDENCE = 0.97
PARTIAL_EVERY_S = 0.5
SESSION_S = 3 * 3600


class AssemblyAIFake(ProviderFake):
    name: ClassVar[str] = "assemblyai"
    base_path: ClassVar[str] = ""

    @property
    def ws_url(self) -> str:
        """``base_url`` for ``assemblyai.STT`` (it appends ``/v3/ws`` itself)."""
        return f"ws://127.0.0.1:{self.port}"

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v3/ws", self._ws)]

    def key_of(self, request: web.Request) -> str | None:
        return request.headers.get("Authorization") or request.query.get("token")

    def error_response(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    def refusal(self, key: str | None) -> web.Response:
        return self.error_response(401, "Invalid API key" if key else "Missing authorization")

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        record, error = self.admit(request, model=query.get("speech_model", ""))
        if error is not None:
            return error
        if query.get("encoding", "pcm_s16le") != "pcm_s16le":
            return self.error_response(400, "the fake decodes encoding=pcm_s16le only")
        async with self.websocket(request) as ws:
            await _Turns(self, ws, record, query).run()
        return ws


class _Turns:
    def __init__(
        self, fake: AssemblyAIFake, ws: web.WebSocketResponse, record: Recorded, query: Any
    ) -> None:
        self.fake = fake
        self.ws = ws
        self.record = record
        self.rate = int(query_float(query.get("sample_rate"), 16_000))
        self.formatted = query_bool(query.get("format_turns"), False)
        min_silence = query_float(query.get("min_turn_silence"), 0) / 1000
        self.endpointer = Endpointer(self.rate, end_silence=max(fake.end_silence, min_silence))
        self.turn_order = 0
        self.next_partial = 0.0
        self.started = time.monotonic()

    async def run(self) -> None:
        await self.ws.send_json(
            {"type": "Begin", "id": str(uuid.uuid4()), "expires_at": int(time.time()) + SESSION_S}
        )
        async for msg in self.ws:
            if msg.type == web.WSMsgType.BINARY:
                await self.audio(msg.data)
            elif msg.type == web.WSMsgType.TEXT:
                kind = json.loads(msg.data).get("type")
                if kind == "ForceEndpoint":
                    await self.end_turn(self.endpointer.flush())
                elif kind == "Terminate":
                    await self.end_turn(self.endpointer.flush())
                    await self.ws.send_json(
                        {
                            "type": "Termination",
                            "audio_duration_seconds": round(self.endpointer.position, 3),
                            "session_duration_seconds": round(time.monotonic() - self.started, 3),
                        }
                    )
                    break
                # UpdateConfiguration changes nothing the fake models

    async def audio(self, data: bytes) -> None:
        for event in self.endpointer.push(data):
            if isinstance(event, SpeechStarted):
                self.next_partial = event.at + PARTIAL_EVERY_S
                await self.ws.send_json(
                    {"type": "SpeechStarted", "timestamp": round(event.at * 1000)}
                )
            elif isinstance(event, Utterance):
                await self.end_turn(event)
        position = self.endpointer.position
        if self.endpointer.speaking and position >= self.next_partial:
            self.next_partial = position + PARTIAL_EVERY_S
            text = await self.fake.recognizer.partial(self.endpointer.current, self.rate)
            if text:
                await self.turn(text, self.endpointer.speech_start, position, end_of_turn=False)

    async def end_turn(self, utterance: Utterance | None) -> None:
        if utterance is None:
            return
        text = await self.fake.recognizer.recognize(utterance.pcm, self.rate)
        self.record.add_text(text)
        await self.fake.pace(0)
        await self.turn(text, utterance.start, utterance.end, end_of_turn=True)
        self.turn_order += 1

    async def turn(self, text: str, start: float, end: float, *, end_of_turn: bool) -> None:
        formatted = end_of_turn and self.formatted and bool(text)
        transcript = f"{text[:1].upper()}{text[1:]}." if formatted else text
        words = [
            {
                "text": word,
                "start": round(w_start * 1000),
                "end": round(w_end * 1000),
                "confidence": CONFIDENCE,
                "word_is_final": end_of_turn,
            }
            for word, w_start, w_end in spread_words(transcript, start, end)
        ]
        await self.ws.send_json(
            {
                "type": "Turn",
                "turn_order": self.turn_order,
                "turn_is_formatted": formatted,
                "end_of_turn": end_of_turn,
                "transcript": transcript,
                "utterance": transcript if end_of_turn else "",
                "end_of_turn_confidence": 0.9 if end_of_turn else 0.1,
                "language_code": "en",
                "words": words,
            }
        )


def main() -> None:
    args = cli_parser("An AssemblyAI v3 streaming STT fake.").parse_args()
    serve_forever(lambda: AssemblyAIFake(**common_kwargs(args)))


if __name__ == "__main__":
    main()
