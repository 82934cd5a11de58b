"""The dispatcher's LiveKit tokens: reused per grant, least privilege, refreshed, bounded."""

from typing import Any

import jwt
import pytest
from livekit import api

from core_voice_dispatcher.livekit_client import TokenCache
from tests.fakes.clock import Clock

pytestmark = pytest.mark.unit

KEY = "testkey"
SECRET = "a-test-secret-that-is-long-enough-for-hs256-0123456789"


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"], issuer=KEY)
    return decoded


def room_admin(room: str) -> api.VideoGrants:
    return api.VideoGrants(room_admin=True, room=room)


def test_one_token_per_room_serves_every_call_for_that_room() -> None:
    cache = TokenCache(KEY, SECRET)
    first = cache.token(room_admin("r1"))
    assert cache.token(room_admin("r1")) == first
    assert cache.token(api.VideoGrants(room_list=True)) == cache.token(
        api.VideoGrants(room_list=True)
    )
    assert cache.signed == 2


def test_tokens_carry_exactly_the_grants_asked_for() -> None:
    cache = TokenCache(KEY, SECRET)
    admin = claims(cache.token(room_admin("r1")))["video"]
    listing = claims(cache.token(api.VideoGrants(room_list=True)))["video"]
    assert admin.get("roomAdmin") is True and admin.get("room") == "r1"
    assert not admin.get("roomList")
    assert listing.get("roomList") is True
    assert not listing.get("roomAdmin") and not listing.get("room")
    other = claims(cache.token(room_admin("r2")))["video"]
    assert other["room"] == "r2"


def test_a_token_is_replaced_after_half_its_lifetime() -> None:
    clock = Clock()
    cache = TokenCache(KEY, SECRET, ttl_s=600, clock=clock)
    first = cache.token(room_admin("r1"))
    assert claims(first)["exp"] - claims(first)["nbf"] >= 600
    clock.now += 299
    assert cache.token(room_admin("r1")) == first
    assert cache.signed == 1
    clock.now += 2
    cache.token(room_admin("r1"))
    assert cache.signed == 2  # signed anew (its bytes may equal the old within one second)


def test_other_grants_are_signed_each_time_not_cached() -> None:
    cache = TokenCache(KEY, SECRET)
    grants = api.VideoGrants(room_admin=True, room="r1", room_record=True)
    cache.token(grants)
    cache.token(grants)
    assert cache.signed == 2 and len(cache) == 0


def test_the_cache_is_bounded_oldest_first() -> None:
    cache = TokenCache(KEY, SECRET, max_tokens=3)
    for room in ("a", "b", "c"):
        cache.token(room_admin(room))
    cache.token(room_admin("a"))  # recently used: kept
    cache.token(room_admin("d"))
    assert len(cache) == 3
    signed = cache.signed
    cache.token(room_admin("a"))
    assert cache.signed == signed
    cache.token(room_admin("b"))  # the oldest went
    assert cache.signed == signed + 1


def test_repr_shows_neither_tokens_nor_the_secret() -> None:
    cache = TokenCache(KEY, SECRET)
    token = cache.token(room_admin("r1"))
    text = repr(cache)
    assert SECRET not in text and token not in text and token[:20] not in text
