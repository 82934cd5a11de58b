"""`RoomListing`: room look-ups share ListRooms calls (no servers: a listing stand-in)."""

import asyncio

import aiohttp
import pytest
from livekit.protocol.models import Room

from core_voice_dispatcher.livekit_client import RoomListing

pytestmark = pytest.mark.unit


class Listing:
    """LiveKit's ListRooms by names: the rooms in ``open`` among them, after ``delay``."""

    def __init__(self, open_rooms: set[str], delay: float = 0.01) -> None:
        self.open = open_rooms
        self.delay = delay
        self.calls: list[list[str]] = []
        self.fail: Exception | None = None

    async def __call__(self, names: list[str]) -> list[Room]:
        self.calls.append(names)
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return [Room(name=n, sid=f"RM_{n}") for n in names if n in self.open]


async def test_a_lone_look_up_goes_out_at_once() -> None:
    listing = Listing({"a"})
    rooms = RoomListing(listing)
    assert [r.sid for r in await rooms.rooms("a")] == ["RM_a"]
    assert await rooms.rooms("gone") == []
    assert listing.calls == [["a"], ["gone"]]


async def test_a_burst_of_look_ups_shares_calls() -> None:
    names = [f"room-{i}" for i in range(300)]
    listing = Listing(set(names[::2]))
    rooms = RoomListing(listing, max_in_flight=2, max_batch=100)
    found = await asyncio.gather(*(rooms.rooms(n) for n in names))
    assert [bool(f) for f in found] == [i % 2 == 0 for i in range(300)]
    assert all(f[0].name == n for f, n in zip(found, names, strict=True) if f)
    # The first two go alone (nothing in flight yet); the rest wait and go 100 at a time.
    assert [len(c) for c in listing.calls] == [1, 1, 100, 100, 98]
    assert (rooms.calls, rooms.looked_up) == (5, 300)


async def test_the_same_room_asked_twice_is_listed_once() -> None:
    listing = Listing({"a"})
    rooms = RoomListing(listing, max_in_flight=1)
    first = asyncio.ensure_future(rooms.rooms("x"))  # occupies the one call
    await asyncio.sleep(0)
    both = await asyncio.gather(rooms.rooms("a"), rooms.rooms("a"), first)
    assert [len(r) for r in both] == [1, 1, 0]
    assert listing.calls == [["x"], ["a"]]


async def test_a_failed_call_fails_every_look_up_in_it_and_the_next_call_is_made() -> None:
    listing = Listing({"a", "b"})
    rooms = RoomListing(listing, max_in_flight=1)
    listing.fail = TimeoutError()
    results = await asyncio.gather(
        rooms.rooms("a"), rooms.rooms("b"), rooms.rooms("c"), return_exceptions=True
    )
    assert all(isinstance(r, TimeoutError) for r in results)
    listing.fail = None
    assert len(await rooms.rooms("a")) == 1


async def test_a_caller_that_gives_up_leaves_the_others_their_answer() -> None:
    listing = Listing({"a"}, delay=0.2)
    rooms = RoomListing(listing, max_in_flight=1)
    blocker = asyncio.ensure_future(rooms.rooms("x"))
    await asyncio.sleep(0)
    impatient = asyncio.ensure_future(asyncio.wait_for(rooms.rooms("a"), 0.05))
    patient = asyncio.ensure_future(rooms.rooms("a"))
    with pytest.raises(TimeoutError):
        await impatient
    assert len(await patient) == 1
    await blocker


async def test_closing_fails_the_waiting_look_ups() -> None:
    listing = Listing({"a"}, delay=5.0)
    rooms = RoomListing(listing, max_in_flight=1)
    in_call = asyncio.ensure_future(rooms.rooms("a"))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(rooms.rooms("b"))
    await asyncio.sleep(0)
    await rooms.aclose()
    for waiter in (in_call, queued):
        with pytest.raises(aiohttp.ClientConnectionError):  # a LiveKit error: retried
            await waiter
