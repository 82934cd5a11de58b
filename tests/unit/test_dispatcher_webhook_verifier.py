"""Webhook verification: signature, body hash, freshness, and no crash on any input."""

import base64
import datetime as dt
import json
import random
import time

import jwt
import pytest

from core_voice_dispatcher.errors import WebhookRejectedError
from core_voice_dispatcher.webhook_verifier import WebhookVerifier
from tests.fakes.webhooks import room_started_body, sign

pytestmark = pytest.mark.unit

KEY = "testkey"
SECRET = "a-test-secret-that-is-long-enough-for-hs256-0123456789"
NOW = 1_800_000_000.0


def verifier(now: float = NOW, max_age_s: float = 120, skew_s: float = 30) -> WebhookVerifier:
    return WebhookVerifier(KEY, SECRET, max_age_s=max_age_s, max_skew_s=skew_s, clock=lambda: now)


def body_at(created_at: float) -> bytes:
    return room_started_body("r", "RM_1", '{"agent_id": "a"}', created_at=created_at)


def rejected(body: bytes, auth: str | None, v: WebhookVerifier | None = None) -> tuple[int, str]:
    with pytest.raises(WebhookRejectedError) as info:
        (v or verifier(now=time.time())).verify(body, auth)
    return info.value.status, info.value.code


def test_a_signed_fresh_event_is_parsed() -> None:
    body = body_at(NOW - 5)
    event = verifier().verify(body, sign(body, KEY, SECRET))
    assert event.event == "room_started" and event.room.sid == "RM_1"
    # LiveKit sends the bare token, without "Bearer ".
    assert verifier().verify(body, sign(body, KEY, SECRET)[7:]).room.name == "r"


def test_forged_and_tampered_requests_are_401() -> None:
    body = room_started_body("r", "RM_1")
    other = room_started_body("evil", "RM_2")
    no_hash = "Bearer " + jwt.encode(
        {"iss": KEY, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    )
    expired = "Bearer " + jwt.encode(
        {"iss": KEY, "exp": int(time.time()) - 600, "sha256": "x"}, SECRET, algorithm="HS256"
    )
    none_alg = "Bearer " + jwt.encode({"iss": KEY, "exp": int(time.time()) + 60}, "", "none")
    short_hash = "Bearer " + jwt.encode(
        {"iss": KEY, "exp": int(time.time()) + 60, "sha256": base64.b64encode(b"abc").decode()},
        SECRET,
        algorithm="HS256",
    )
    cases = {
        None: "missing_signature",
        "": "missing_signature",
        "Bearer ": "missing_signature",
        "Bearer not.a.jwt": "bad_signature",
        sign(body, KEY, "wrong-secret-wrong-secret-wrong-secret-0123"): "bad_signature",
        sign(body, "otherkey", SECRET): "bad_signature",
        sign(other, KEY, SECRET): "body_hash_mismatch",
        no_hash: "bad_body_hash",
        short_hash: "bad_body_hash",
        expired: "bad_signature",
        none_alg: "bad_signature",
    }
    for auth, code in cases.items():
        assert rejected(body, auth) == (401, code), auth


def test_stale_and_future_events_are_401_within_the_window_accepted() -> None:
    v = verifier(max_age_s=120, skew_s=30)
    for created, ok in [(NOW - 119, True), (NOW - 121, False), (NOW + 29, True), (NOW + 31, False)]:
        body = body_at(created)
        if ok:
            v.verify(body, sign(body, KEY, SECRET))
        else:
            status, code = rejected(body, sign(body, KEY, SECRET), v)
            assert status == 401 and code in {"stale_event", "future_event"}
    body = json.dumps({"event": "room_started", "id": "EV_1", "room": {"sid": "RM"}}).encode()
    assert rejected(body, sign(body, KEY, SECRET), v) == (401, "missing_timestamp")


def test_signed_garbage_is_400() -> None:
    for body in [b"{not json", b"\xff\xfe", b"[]", b'"x"', b'{"event": 5}', b"{" * 5000]:
        assert rejected(body, sign(body, KEY, SECRET)) == (400, "malformed_body"), body[:20]


def test_no_input_raises_anything_but_a_rejection() -> None:
    rng = random.Random(4)
    v = verifier(now=time.time())
    base = room_started_body("r", "RM_1", '{"agent_id": "a"}')
    for _ in range(2000):
        body = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        data = bytes(body)
        auth = rng.choice([sign(data, KEY, SECRET), sign(base, KEY, SECRET), "Bearer x.y.z"])
        try:
            v.verify(data, auth)
        except WebhookRejectedError as exc:
            assert exc.status in (400, 401)


def test_the_verifier_never_shows_its_secret() -> None:
    assert SECRET not in repr(verifier())


def test_a_token_past_its_own_expiry_is_refused_even_if_the_event_is_fresh() -> None:
    body = body_at(time.time())
    auth = sign(body, KEY, SECRET, valid_for=dt.timedelta(seconds=-120))
    assert rejected(body, auth, verifier(now=time.time(), skew_s=30)) == (401, "bad_signature")
