"""Verifying and parsing LiveKit webhooks.

LiveKit signs each webhook with a JWT (issuer = API key, HS256 with the API secret)
whose ``sha256`` claim is the base64 SHA-256 of the body. We check both before parsing
a single byte of the body, so forged or tampered requests never reach the parser.
"""

import base64
import binascii
import hashlib
import hmac

import jwt
from google.protobuf.json_format import Parse as parse_json
from google.protobuf.json_format import ParseError
from livekit.api import TokenVerifier
from livekit.protocol.webhook import WebhookEvent

from core_voice_dispatcher.errors import WebhookRejectedError


class WebhookVerifier:
    def __init__(self, api_key: str, api_secret: str) -> None:
        self._verifier = TokenVerifier(api_key, api_secret)

    def verify(self, body: bytes, authorization: str | None) -> WebhookEvent:
        """Return the parsed event or raise `WebhookRejectedError` (401 / 400)."""
        token = (authorization or "").strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        if not token:
            raise WebhookRejectedError(401, "missing_signature")
        try:
            claims = self._verifier.verify(token)
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError, KeyError):
            # Any token we cannot verify and read is unauthenticated, never a 500.
            raise WebhookRejectedError(401, "bad_signature") from None
        try:
            expected = base64.b64decode(claims.sha256 or "", validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejectedError(401, "bad_body_hash") from None
        if not expected or not hmac.compare_digest(hashlib.sha256(body).digest(), expected):
            raise WebhookRejectedError(401, "body_hash_mismatch")
        try:
            return parse_json(body.decode("utf-8"), WebhookEvent(), ignore_unknown_fields=True)
        except (ParseError, UnicodeDecodeError, ValueError):
            raise WebhookRejectedError(400, "malformed_body") from None
