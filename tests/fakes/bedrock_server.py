"""AWS Bedrock Runtime's ConverseStream on loopback, for `livekit-plugins-aws`'s LLM.

``POST /model/{modelId}/converse-stream`` answers in AWS's binary event-stream framing
(``application/vnd.amazon.eventstream``: ``messageStart``, ``contentBlockDelta``...,
``contentBlockStop``, ``messageStop``, ``metadata`` with usage); ``POST
/model/{modelId}/converse`` answers JSON. The reply comes from `ReplyRules` applied to the
last user message. SigV4 is not verified: the access key id in the ``Authorization``
credential scope is the recorded "key", and a refused one gets Bedrock's 403
``UnrecognizedClientException``.

The plugin builds its client from botocore's configuration, so point it here with the
environment: ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME=<fake.base_url>`` (botocore's per-service
endpoint variable).

As a process: ``python -m tests.fakes.bedrock_server --port 8107 --rules-json rules.json``.
"""

import binascii
import json
import re
import struct
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

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def event_message(event_type: str, payload: dict[str, Any]) -> bytes:
    """One AWS event-stream message: prelude, string headers, JSON payload, CRCs."""
    body = json.dumps(payload).encode()
    headers = b""
    for name, value in (
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ):
        raw = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or []
    return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))


class BedrockFake(ScriptedLlmFake):
    name: ClassVar[str] = "bedrock"
    base_path: ClassVar[str] = ""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/model/{model}/converse-stream", self._converse),
            web.post("/model/{model}/converse", self._converse),
        ]

    def key_of(self, request: web.Request) -> str | None:
        match = _CREDENTIAL.search(request.headers.get("Authorization", ""))
        return match.group(1) if match else None

    def error_response(self, status: int, message: str) -> web.Response:
        kind = {
            400: "ValidationException",
            403: "AccessDeniedException",
            429: "ThrottlingException",
            503: "ServiceUnavailableException",
        }.get(status, "InternalServerException")
        return web.json_response(
            {"message": message},
            status=status,
            headers={"x-amzn-ErrorType": kind, "x-amzn-RequestId": request_id()},
        )

    def refusal(self, key: str | None) -> web.Response:
        return web.json_response(
            {"message": "The security token included in the request is invalid."},
            status=403,
            headers={
                "x-amzn-ErrorType": "UnrecognizedClientException",
                "x-amzn-RequestId": request_id(),
            },
        )

    async def _converse(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        record, error = self.admit(request, model=model)
        if error is not None:
            return error
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(messages, list) or not messages:
            return self.error_response(400, "messages must not be empty")
        self.bodies.append(body)
        user_text = next(
            (
                _text(m)
                for m in reversed(messages)
                if isinstance(m, dict) and m.get("role") == "user"
            ),
            "",
        )
        record.add_text(user_text)
        reply = self.rules.reply_for(user_text)
        pieces = split_tokens(reply)
        system = " ".join(
            str(b.get("text", "")) for b in body.get("system") or [] if isinstance(b, dict)
        )
        prompt = sum(count_tokens(_text(m)) for m in messages) + count_tokens(system)
        usage = {
            "inputTokens": prompt,
            "outputTokens": len(pieces),
            "totalTokens": prompt + len(pieces),
        }
        rid = request_id()
        if not request.path.endswith("converse-stream"):
            await self.pace(0)
            return web.json_response(
                {
                    "output": {"message": {"role": "assistant", "content": [{"text": reply}]}},
                    "stopReason": "end_turn",
                    "usage": usage,
                    "metrics": {"latencyMs": 1},
                },
                headers={"x-amzn-RequestId": rid},
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/vnd.amazon.eventstream",
                "x-amzn-RequestId": rid,
            }
        )
        await response.prepare(request)
        await self.pace(0)
        await response.write(event_message("messageStart", {"role": "assistant"}))
        for i, piece in enumerate(pieces):
            if i:
                await self.pace(i)
            await response.write(
                event_message(
                    "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}
                )
            )
        await response.write(event_message("contentBlockStop", {"contentBlockIndex": 0}))
        await response.write(event_message("messageStop", {"stopReason": "end_turn"}))
        await response.write(
            event_message("metadata", {"usage": usage, "metrics": {"latencyMs": 1}})
        )
        await response.write_eof()
        return response


def main() -> None:
    parser = cli_parser("An AWS Bedrock Runtime ConverseStream fake.")
    parser.add_argument("--rules-json", help="ScriptedOptions JSON: rules and fallback")
    args = parser.parse_args()
    options = rules_options(DEFAULT_RULES, None)
    if args.rules_json:
        with open(args.rules_json, "rb") as f:
            options = ReplyRules.from_json(f.read()).options
    serve_forever(lambda: BedrockFake(rules=options, **common_kwargs(args)))


if __name__ == "__main__":
    main()
