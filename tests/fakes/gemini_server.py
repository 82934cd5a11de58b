"""The Gemini API's generateContent on loopback, for `livekit-plugins-google`'s LLM.

Endpoints (key in ``x-goog-api-key`` or ``?key=``; Google answers a bad key with 400
``API_KEY_INVALID``, and so does this fake):

- ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (``/v1/...`` and
  ``/v1alpha/...`` too: google-genai 3.x calls ``/v1``): SSE
  ``GenerateContentResponse`` chunks, the last with ``finishReason: STOP`` and
  ``usageMetadata``. ``google.LLM().chat()`` uses this.
- ``POST /v1beta/models/{model}:generateContent`` and ``GET /v1beta/models`` (prewarm).

The reply comes from `ReplyRules` applied to the last ``user`` content, as in the OpenAI fake.
Point the plugin at it with
``google.LLM(api_key=..., http_options=types.HttpOptions(base_url=fake.base_url))``.

As a process: ``python -m tests.fakes.gemini_server --port 8106 --rules-json rules.json``.
"""

import json
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.provider_base import (
    DEFAULT_RULES,
    ReplyRules,
    ScriptedLlmFake,
    cli_parser,
    common_kwargs,
    count_tokens,
    request_id,
    rules_options,
    serve_forever,
    split_tokens,
)


def _text(content: object) -> str:
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts") or []
    return " ".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))


class GeminiFake(ScriptedLlmFake):
    name: ClassVar[str] = "gemini"
    base_path: ClassVar[str] = ""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/{version:v1|v1beta|v1alpha}/models", self._models),
            web.post("/{version:v1|v1beta|v1alpha}/models/{call}", self._generate),
        ]

    def key_of(self, request: web.Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key")

    def error_response(self, status: int, message: str) -> web.Response:
        state = {
            400: "INVALID_ARGUMENT",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            429: "RESOURCE_EXHAUSTED",
            503: "UNAVAILABLE",
        }.get(status, "INTERNAL")
        return web.json_response(
            {"error": {"code": status, "message": message, "status": state}}, status=status
        )

    def refusal(self, key: str | None) -> web.Response:
        body = {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            }
        }
        return web.json_response(body, status=400)

    async def _models(self, request: web.Request) -> web.Response:
        _, error = self.admit(request)
        if error is not None:
            return error
        return web.json_response({"models": [{"name": "models/gemini-2.5-flash"}]})

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["call"].partition(":")
        record, error = self.admit(request, model=model)
        if error is not None:
            return error
        if method not in ("generateContent", "streamGenerateContent"):
            return self.error_response(404, f"method {method!r} not found")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        contents = body.get("contents") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(contents, list) or not contents:
            return self.error_response(400, "contents is not specified")
        self.bodies.append(body)
        user_text = next(
            (
                _text(c)
                for c in reversed(contents)
                if isinstance(c, dict) and c.get("role") == "user"
            ),
            "",
        )
        record.add_text(user_text)
        reply = self.rules.reply_for(user_text)
        pieces = split_tokens(reply)
        prompt = sum(count_tokens(_text(c)) for c in contents) + count_tokens(
            _text(body.get("systemInstruction") or body.get("system_instruction"))
        )
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": len(pieces),
            "totalTokenCount": prompt + len(pieces),
        }
        response_id = request_id()

        def chunk(text: str, *, last: bool) -> dict[str, Any]:
            candidate: dict[str, Any] = {
                "content": {"parts": [{"text": text}], "role": "model"},
                "index": 0,
            }
            if last:
                candidate["finishReason"] = "STOP"
            return {
                "candidates": [candidate],
                "usageMetadata": usage if last else {"promptTokenCount": prompt},
                "modelVersion": model,
                "responseId": response_id,
            }

        if method == "generateContent":
            await self.pace(0)
            return web.json_response(chunk(reply, last=True))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, piece in enumerate(pieces or [""]):
            await self.pace(i)
            data = json.dumps(chunk(piece, last=i == len(pieces) - 1 or not pieces))
            await response.write(f"data: {data}\r\n\r\n".encode())
        await response.write_eof()
        return response


def main() -> None:
    parser = cli_parser("A Gemini API fake (generateContent, streamed or not).")
    parser.add_argument("--rules-json", help="ScriptedOptions JSON: rules and fallback")
    args = parser.parse_args()
    options = rules_options(DEFAULT_RULES, None)
    if args.rules_json:
        with open(args.rules_json, "rb") as f:
            options = ReplyRules.from_json(f.read()).options
    serve_forever(lambda: GeminiFake(rules=options, **common_kwargs(args)))


if __name__ == "__main__":
    main()
