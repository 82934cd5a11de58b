"""HS256 JSON Web Tokens, signed and verified in microseconds.

Each room costs the dispatcher two tokens: LiveKit's signature on its webhook, and the
room-scoped token of its LiveKit calls. PyJWT spent ~7 % of the dispatcher's CPU on them
in a burst of 300 rooms (it sniffs an HMAC secret for PEM and DER on every call), where
the burst's last rooms wait on that CPU. Only HS256 is accepted: a token naming any other
algorithm (``none`` included) or a critical extension is refused, and the signature is
compared in constant time before the claims are read. The claims checked are PyJWT's:
``exp`` and ``iss`` required, ``nbf`` and ``iat`` not in the future, each within
``leeway_s``.
"""

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from typing import Any

_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
_TO_STANDARD = str.maketrans("-_", "+/")


class InvalidTokenError(Exception):
    """Not a valid HS256 token for this key and issuer (the reason, never the token)."""


def sign(claims: Mapping[str, Any], secret: bytes) -> str:
    payload = json.dumps(claims, separators=(",", ":")).encode()
    signing_input = _HEADER + b"." + base64.urlsafe_b64encode(payload).rstrip(b"=")
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def verify(
    token: str, secret: bytes, *, issuer: str, leeway_s: float, now: float | None = None
) -> dict[str, Any]:
    """The token's claims, or `InvalidTokenError`."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidTokenError("not_a_jwt")
    header_b64, payload_b64, signature_b64 = parts
    header = _json_object(header_b64)
    if header.get("alg") != "HS256" or "crit" in header:
        raise InvalidTokenError("algorithm")
    try:
        signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    except UnicodeEncodeError:
        raise InvalidTokenError("not_a_jwt") from None
    expected = hmac.new(secret, signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _unb64url(signature_b64)):
        raise InvalidTokenError("signature")
    claims = _json_object(payload_b64)
    now = time.time() if now is None else now
    exp = _number(claims, "exp", required=True)
    if exp is not None and exp <= now - leeway_s:
        raise InvalidTokenError("expired")
    for claim in ("nbf", "iat"):
        at = _number(claims, claim, required=False)
        if at is not None and at > now + leeway_s:
            raise InvalidTokenError("not_yet_valid")
    if claims.get("iss") != issuer:
        raise InvalidTokenError("issuer")
    return claims


def _unb64url(data: str) -> bytes:
    try:
        return base64.b64decode(
            data.translate(_TO_STANDARD) + "=" * (-len(data) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        raise InvalidTokenError("not_a_jwt") from None


def _json_object(data: str) -> dict[str, Any]:
    try:
        decoded = json.loads(_unb64url(data))
    except (ValueError, RecursionError):
        raise InvalidTokenError("not_a_jwt") from None
    if not isinstance(decoded, dict):
        raise InvalidTokenError("not_a_jwt")
    return decoded


def _number(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise InvalidTokenError(f"missing_{name}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidTokenError(f"bad_{name}")
    return float(value)
