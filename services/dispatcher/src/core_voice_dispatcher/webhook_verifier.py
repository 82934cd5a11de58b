"""Verifying and parsing LiveKit webhooks.

LiveKit signs each webhook with a JWT (issuer = API key, HS256 with the API secret, valid
5 minutes) whose ``sha256`` claim is the base64 SHA-256 of the body. The token is checked
before the body is even read, the body hash before a byte of it is parsed, and the
event's own ``createdAt`` last: forged, tampered and stale requests never reach routing.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable

from google.protobuf.json_format import ParseDict as parse_dict
from google.protobuf.json_format import ParseError
from livekit.protocol.webhook import WebhookEvent

from core_voice_dispatcher import hs256
from core_voice_dispatcher.errors import WebhookRejectedError


class WebhookVerifier:
    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        max_age_s: float,
        max_skew_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api_key = api_key
        self._secret = api_secret.encode()
        self._max_age_s = max_age_s
        self._max_skew_s = max_skew_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookVerifier(api_key={self._api_key!r})"

    def check_token(self, authorization: str | None) -> bytes:
        """Verify the JWT; return the body digest it vouches for, or raise 401."""
        parts = (authorization or "").split()
        if parts and parts[0].lower() == "bearer":
            parts = parts[1:]
        if not parts:
            raise WebhookRejectedError(401, "missing_signature")
        if len(parts) > 1:
            raise WebhookRejectedError(401, "bad_signature")
        try:
            claims = hs256.verify(
                parts[0], self._secret, issuer=self._api_key, leeway_s=self._max_skew_s
            )
        except hs256.InvalidTokenError:
            # Any token we cannot verify and read is unauthenticated, never a 500.
            raise WebhookRejectedError(401, "bad_signature") from None
        claimed = claims.get("sha256")
        if not isinstance(claimed, str) or not claimed:
            raise WebhookRejectedError(401, "bad_body_hash")
        try:
            digest = base64.b64decode(claimed, validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejectedError(401, "bad_body_hash") from None
        if len(digest) != hashlib.sha256().digest_size:
            raise WebhookRejectedError(401, "bad_body_hash")
        return digest

    def check_body(self, body: bytes, digest: bytes) -> WebhookEvent:
        """Check the body against the signed digest, parse it, and check its age."""
        if not hmac.compare_digest(hashlib.sha256(body).digest(), digest):
            raise WebhookRejectedError(401, "body_hash_mismatch")
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise WebhookRejectedError(400, "malformed_body")
            event = parse_dict(data, WebhookEvent(), ignore_unknown_fields=True)
        except (ParseError, UnicodeDecodeError, ValueError, TypeError, RecursionError):
            raise WebhookRejectedError(400, "malformed_body") from None
        self._check_age(event.created_at)
        return event

    def verify(self, body: bytes, authorization: str | None) -> WebhookEvent:
        """Return the parsed event or raise `WebhookRejectedError` (401 / 400)."""
        return self.check_body(body, self.check_token(authorization))

    def _check_age(self, created_at: int) -> None:
        if created_at <= 0:
            raise WebhookRejectedError(401, "missing_timestamp")
        age = self._clock() - created_at
        if age > self._max_age_s:
            raise WebhookRejectedError(401, "stale_event")
        if age < -self._max_skew_s:
            raise WebhookRejectedError(401, "future_event")
