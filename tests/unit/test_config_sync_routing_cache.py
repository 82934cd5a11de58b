"""The routing cache: hits skip the database, an invalidation wins over a read in flight,
unknown ids are not kept, the size is bounded, outages fall back to the last data read."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from core_voice_config_sync.errors import DatabaseUnavailableError
from core_voice_config_sync.routing import RoutingCache

pytestmark = pytest.mark.unit


class Table:
    """What the database holds, counting reads; ``gate`` holds reads until it is set."""

    def __init__(self, **rows: str) -> None:
        self.rows: dict[str, str] = dict(rows)
        self.reads = 0
        self.down = False
        self.gate = asyncio.Event()
        self.gate.set()

    def loader(self, key: str) -> Callable[[], Awaitable[str | None]]:
        async def load() -> str | None:
            self.reads += 1
            await self.gate.wait()
            if self.down:
                raise DatabaseUnavailableError
            return self.rows.get(key)

        return load


async def test_a_hit_is_answered_without_a_read_until_invalidated() -> None:
    table, cache = Table(a="active"), RoutingCache()
    assert await cache.read("a", table.loader("a")) == "active"
    table.rows["a"] = "disabled"
    assert await cache.read("a", table.loader("a")) == "active"
    assert table.reads == 1
    cache.invalidate()
    assert await cache.read("a", table.loader("a")) == "disabled"
    assert table.reads == 2


async def test_a_read_started_before_an_invalidation_is_answered_but_not_kept() -> None:
    table, cache = Table(a="active"), RoutingCache()
    table.gate.clear()
    in_flight = asyncio.ensure_future(cache.read("a", table.loader("a")))
    await asyncio.sleep(0)  # the read has started and waits on the database
    assert table.reads == 1
    table.rows["a"] = "disabled"  # an edit commits while it waits...
    cache.invalidate()  # ...and its event arrives before the read completes
    table.rows["a"] = "active"  # the read returns what it saw before the edit
    table.gate.set()
    assert await in_flight == "active"  # its own caller still gets an answer
    assert len(cache) == 0
    table.rows["a"] = "disabled"
    assert await cache.read("a", table.loader("a")) == "disabled"
    assert (table.reads, len(cache)) == (2, 1)


async def test_unknown_ids_are_read_every_time() -> None:
    table, cache = Table(), RoutingCache()
    assert await cache.read("new", table.loader("new")) is None
    table.rows["new"] = "active"  # created a moment ago on another replica
    assert await cache.read("new", table.loader("new")) == "active"
    assert table.reads == 2


async def test_the_least_recently_used_answer_goes_first() -> None:
    table, cache = Table(a="1", b="2", c="3", d="4"), RoutingCache(size=3)
    for key in "abc":
        await cache.read(key, table.loader(key))
    await cache.read("a", table.loader("a"))  # a is now the most recently used
    await cache.read("d", table.loader("d"))  # evicts b
    assert (len(cache), table.reads) == (3, 4)
    for key in "acd":
        await cache.read(key, table.loader(key))
    assert table.reads == 4
    await cache.read("b", table.loader("b"))
    assert table.reads == 5


async def test_an_outage_is_answered_from_the_last_data_read_even_after_invalidation() -> None:
    table, cache = Table(a="active"), RoutingCache()
    assert await cache.read("a", table.loader("a")) == "active"
    assert await cache.read("gone", table.loader("gone")) is None
    table.down = True
    cache.invalidate()
    assert await cache.read("a", table.loader("a")) == "active"
    assert await cache.read("gone", table.loader("gone")) is None
    with pytest.raises(DatabaseUnavailableError):
        await cache.read("never-read", table.loader("never-read"))
