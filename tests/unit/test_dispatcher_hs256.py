"""The dispatcher's HS256 tokens: what PyJWT and LiveKit accept, and nothing else."""

import base64
import contextlib
import hashlib
import hmac
import json
import math
import random
import time
from typing import Any

import jwt
import pytest
from livekit import api

from core_voice_dispatcher import hs256
from core_voice_dispatcher.livekit_client import TokenCache

pytestmark = pytest.mark.unit

KEY = "testkey"
SECRET = "a-test-secret-that-is-long-enough-for-hs256-0123456789"


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": KEY, "exp": int(time.time()) + 60, "sha256": "abc"} | extra


def check(token: str, leeway_s: float = 0) -> dict[str, Any]:
    return hs256.verify(token, SECRET.encode(), issuer=KEY, leeway_s=leeway_s)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], key: bytes = SECRET.encode()) -> str:
    """A token with any header, signed as HS256 would sign it."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_tokens_pyjwt_signs_are_verified_and_ours_are_what_pyjwt_verifies() -> None:
    mine = claims(video={"roomAdmin": True, "room": "r-1"})
    assert check(jwt.encode(mine, SECRET, algorithm="HS256")) == mine
    ours = hs256.sign(mine, SECRET.encode())
    assert jwt.decode(ours, SECRET, algorithms=["HS256"], issuer=KEY) == mine
    assert jwt.get_unverified_header(ours) == {"alg": "HS256", "typ": "JWT"}


def test_livekit_accepts_the_token_cache_tokens_with_its_own_claims() -> None:
    grants = api.VideoGrants(room_admin=True, room="room-7")
    token = TokenCache(KEY, SECRET).token(grants)
    verified = api.TokenVerifier(KEY, SECRET).verify(token)
    assert verified.video is not None
    assert verified.video.room_admin and verified.video.room == "room-7"
    theirs = api.AccessToken(KEY, SECRET).with_grants(grants).to_jwt()
    mine, reference = (jwt.decode(t, options={"verify_signature": False}) for t in (token, theirs))
    assert mine.keys() == reference.keys()
    assert {k: v for k, v in mine.items() if k not in ("nbf", "exp")} == {
        k: v for k, v in reference.items() if k not in ("nbf", "exp")
    }


def test_anything_but_a_valid_hs256_token_for_this_key_and_issuer_is_refused() -> None:
    now = int(time.time())
    cases = {
        "two parts": "a.b",
        "four parts": "a.b.c.d",
        "not base64": "%%%.%%%.%%%",
        "not ascii": "é.b.c",
        "alg none": forged({"alg": "none", "typ": "JWT"}, claims()),
        "alg none, unsigned": forged({"alg": "none"}, claims()).rsplit(".", 1)[0] + ".",
        "alg HS512": jwt.encode(claims(), SECRET, algorithm="HS512"),
        "alg RS256 header": forged({"alg": "RS256", "typ": "JWT"}, claims()),
        "no alg": forged({"typ": "JWT"}, claims()),
        "crit": forged({"alg": "HS256", "crit": ["b64"], "b64": False}, claims()),
        "wrong secret": jwt.encode(claims(), "another-secret-" * 4, algorithm="HS256"),
        "wrong issuer": jwt.encode(claims(iss="otherkey"), SECRET, algorithm="HS256"),
        "no issuer": jwt.encode({"exp": now + 60}, SECRET, algorithm="HS256"),
        "no exp": jwt.encode({"iss": KEY}, SECRET, algorithm="HS256"),
        "expired": jwt.encode(claims(exp=now - 1), SECRET, algorithm="HS256"),
        "exp a string": forged({"alg": "HS256"}, claims(exp=str(now + 60))),
        "exp a bool": forged({"alg": "HS256"}, claims(exp=True)),
        "exp NaN": forged({"alg": "HS256"}, claims(exp=math.nan)),
        "nbf ahead": jwt.encode(claims(nbf=now + 60), SECRET, algorithm="HS256"),
        "iat ahead": jwt.encode(claims(iat=now + 60), SECRET, algorithm="HS256"),
        "payload a list": forged({"alg": "HS256"}, [1, 2]),  # type: ignore[arg-type]
        "header a list": f"{b64(b'[1]')}.{b64(json.dumps(claims()).encode())}.{b64(b'x')}",
    }
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    head, payload, signature = token.split(".")
    tampered = json.dumps(claims(sha256="evil")).encode()
    cases["tampered payload"] = f"{head}.{b64(tampered)}.{signature}"
    cases["signature cut"] = f"{head}.{payload}.{signature[:-2]}"
    for name, bad in cases.items():
        with pytest.raises(hs256.InvalidTokenError):
            check(bad)
            pytest.fail(name)


def test_the_leeway_allows_a_little_clock_skew() -> None:
    now = int(time.time())
    check(jwt.encode(claims(exp=now - 5, nbf=now + 5), SECRET, algorithm="HS256"), leeway_s=10)
    with pytest.raises(hs256.InvalidTokenError):
        check(jwt.encode(claims(exp=now - 15), SECRET, algorithm="HS256"), leeway_s=10)


def test_no_input_raises_anything_but_invalid_token() -> None:
    rng = random.Random(7)
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    alphabet = "ABCxyz019-_.=+/é\x00{}\"'"
    for _ in range(5000):
        chars = list(token)
        for _ in range(rng.randint(1, 6)):
            chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        with contextlib.suppress(hs256.InvalidTokenError):
            check("".join(chars))
