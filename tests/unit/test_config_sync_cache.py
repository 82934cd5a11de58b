"""The runtime-config cache: versions only move forward; concurrent misses share a read;
campaign merges come from the entry; deleted agents drop out. The race orderings (a read
in flight while another replica commits, deletes or changes the agent in place, or while
NATS drops) are played step by step: a read sees the store as it was when it started and
returns only when its gate opens."""

import asyncio
import datetime as dt

import pytest

from core_voice_config_sync.cache import READ_ATTEMPTS, CacheEntry, RuntimeConfigCache
from core_voice_config_sync.errors import StaleReadError
from core_voice_config_sync.records import AgentRecord, ConfigFields
from core_voice_contracts.admin_api import CampaignOverrides, ProviderOverride
from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def entry(
    version: int, agent_id: str = "a1", status: str = "active", **links: CampaignOverrides
) -> CacheEntry:
    fields = ConfigFields(
        name="A",
        instructions=f"v{version}",
        greeting="Hi",
        llm=ProviderSpec(provider="scripted"),
        stt=ProviderSpec(provider="local"),
        tts=ProviderSpec(provider="local"),
    )
    record = AgentRecord(
        id=agent_id,
        tenant_id="t1",
        status=status,
        version=version,
        config=fields,
        created_at=NOW,
        updated_at=NOW,
    )
    return CacheEntry(record=record, base=record.runtime(ProviderKeys()), links=dict(links))


class FakeStore:
    """What the database holds; a read returns what it held when the read started."""

    def __init__(self, current: CacheEntry | None) -> None:
        self.current = current
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()

    async def load(self, agent_id: str) -> CacheEntry | None:
        self.reads += 1
        seen = self.current if self.current and self.current.record.id == agent_id else None
        self.started.set()
        await self.gate.wait()
        return seen

    async def read_in_flight(
        self, cache: RuntimeConfigCache
    ) -> "asyncio.Future[CacheEntry | None]":
        """Start ``cache.entry("a1")`` and return once its read has seen the store."""
        self.gate.clear()
        self.started.clear()
        pending = asyncio.ensure_future(cache.entry("a1"))
        await self.started.wait()
        return pending


async def test_put_never_goes_back_in_version() -> None:
    cache = RuntimeConfigCache(FakeStore(None).load)
    cache.put(entry(3))
    cache.put(entry(2))
    config = await cache.get("a1")
    assert config is not None and config.version == 3


async def test_miss_reads_once_for_concurrent_callers() -> None:
    store = FakeStore(entry(5))
    cache = RuntimeConfigCache(store.load)
    results = await asyncio.gather(*(cache.get("a1") for _ in range(10)))
    assert {r.version for r in results if r is not None} == {5}
    assert store.reads == 1
    await cache.get("a1")
    assert store.reads == 1


async def test_unknown_and_deleted_agents_are_not_cached() -> None:
    store = FakeStore(None)
    cache = RuntimeConfigCache(store.load)
    assert await cache.get("a1") is None
    store.current = entry(1)
    assert await cache.get("a1") is not None
    store.current = None  # deleted elsewhere; its event evicted the entry
    cache.evict_older("a1", 2)
    assert await cache.get("a1") is None
    assert cache.peek("a1") is None


async def test_min_version_and_eviction_force_a_fresh_read() -> None:
    store = FakeStore(entry(1))
    cache = RuntimeConfigCache(store.load)
    assert (await cache.get("a1")).version == 1  # type: ignore[union-attr]
    store.current = entry(2)
    assert (await cache.get("a1", min_version=2)).version == 2  # type: ignore[union-attr]
    store.current = entry(4)
    cache.evict_older("a1", 3)  # another replica committed v3
    assert cache.peek("a1") is None
    assert (await cache.get("a1")).version == 4  # type: ignore[union-attr]
    cache.evict_older("a1", 4)  # our own event: nothing newer, keep it
    assert cache.peek("a1") is not None


async def test_campaign_overrides_merge_only_for_linked_campaigns() -> None:
    spring = CampaignOverrides(greeting="Spring!", tts=ProviderOverride(voice="en-gb"))
    cache = RuntimeConfigCache(FakeStore(None).load)
    cache.put(entry(2, spring=spring))
    merged = await cache.get("a1", campaign_id="spring")
    assert merged is not None
    assert (merged.greeting, merged.tts.voice, merged.campaign_id) == ("Spring!", "en-gb", "spring")
    own = await cache.get("a1", campaign_id="unlinked")
    assert own is not None
    assert (own.greeting, own.tts.voice, own.campaign_id) == ("Hi", "en-us", None)


# --- races -------------------------------------------------------------------------------


async def test_a_read_started_before_another_replicas_commit_is_not_kept_after_its_event() -> None:
    store = FakeStore(entry(1))
    cache = RuntimeConfigCache(store.load)
    pending = await store.read_in_flight(cache)  # sees v1...
    store.current = entry(2)  # ...another replica commits v2...
    cache.evict_older("a1", 2)  # ...and its event arrives before the read returns
    store.gate.set()
    served = await pending
    assert served is not None and served.version == 2  # read again, never v1
    assert store.reads == 2
    cached = cache.peek("a1")
    assert cached is not None and cached.version == 2
    cache.put(entry(1))  # a straggler from anywhere cannot go below the floor
    assert cache.peek("a1") is cached


async def test_every_caller_of_a_shared_read_overtaken_by_an_event_gets_the_new_version() -> None:
    store = FakeStore(entry(1))
    cache = RuntimeConfigCache(store.load)
    first = await store.read_in_flight(cache)
    others = [asyncio.ensure_future(cache.entry("a1")) for _ in range(5)]
    await asyncio.sleep(0)  # they join the read in flight
    store.current = entry(3)
    cache.evict_older("a1", 3)
    store.gate.set()
    served = await asyncio.gather(first, *others)
    assert {e.version for e in served if e is not None} == {3}
    assert store.reads == 2


async def test_an_event_before_the_read_starts_needs_no_second_read() -> None:
    store = FakeStore(entry(2))
    cache = RuntimeConfigCache(store.load)
    cache.evict_older("a1", 2)
    served = await cache.entry("a1")
    assert served is not None and served.version == 2
    assert store.reads == 1


async def test_an_announced_version_the_database_never_had_does_not_block_the_agent() -> None:
    """The database has the final word over an event: a read started after it is served
    (and, being below the floor, not kept)."""
    store = FakeStore(entry(2))
    cache = RuntimeConfigCache(store.load)
    cache.evict_older("a1", 9)
    served = await cache.entry("a1")
    assert served is not None and served.version == 2
    assert cache.peek("a1") is None


async def test_a_deleted_agent_is_refused_even_when_a_read_in_flight_returns_it() -> None:
    store = FakeStore(entry(1))
    cache = RuntimeConfigCache(store.load)
    pending = await store.read_in_flight(cache)  # sees the live agent...
    store.current = None  # ...another replica deletes it...
    cache.tombstone("a1", 2)  # ...and its deletion event arrives first
    store.gate.set()
    assert await pending is None
    assert cache.peek("a1") is None and cache.is_deleted("a1")
    cache.put(entry(1))  # nothing at or below the deletion's version comes back
    assert await cache.get("a1") is None
    assert store.reads == 1  # refused from memory, without a read


async def test_a_cached_agent_deleted_elsewhere_is_refused_without_a_read() -> None:
    store = FakeStore(entry(4))
    cache = RuntimeConfigCache(store.load)
    assert await cache.get("a1") is not None
    store.current = entry(4)  # the database still answers: a lagging read must not matter
    cache.tombstone("a1", 5)
    assert await cache.get("a1") is None
    assert await cache.entry("a1", min_version=1) is None
    assert store.reads == 1
    cache.put(entry(6))  # only a commit newer than the deletion lifts the tombstone
    assert (await cache.get("a1")).version == 6  # type: ignore[union-attr]


async def test_an_in_place_change_during_a_read_is_read_again() -> None:
    store = FakeStore(entry(1))
    cache = RuntimeConfigCache(store.load)
    pending = await store.read_in_flight(cache)  # sees status active...
    store.current = entry(1, status="disabled")  # ...it changes in place (same version)...
    cache.forget("a1")  # ...and its RoutingChanged arrives first
    store.gate.set()
    served = await pending
    assert served is not None and served.record.status == "disabled"
    assert store.reads == 2
    assert cache.peek("a1") is served


async def test_clear_forgets_entries_and_reads_in_flight() -> None:
    """On a NATS disconnect and reconnect: events may have been missed meanwhile."""
    store = FakeStore(entry(1))
    cache = RuntimeConfigCache(store.load)
    assert (await cache.get("a1")).version == 1  # type: ignore[union-attr]
    store.current = entry(2)  # committed elsewhere; the event was missed
    cache.clear()
    assert cache.peek("a1") is None
    assert (await cache.get("a1")).version == 2  # type: ignore[union-attr]

    cache.clear()  # disconnected...
    pending = await store.read_in_flight(cache)  # ...a read starts...
    cache.clear()  # ...and is still in flight on the reconnect
    store.current = entry(3)
    store.gate.set()
    served = await pending
    assert served is not None and served.version == 3
    assert (cache.peek("a1") or entry(0)).version == 3


async def test_a_read_overtaken_every_time_is_a_retryable_error() -> None:
    store = FakeStore(entry(1))
    cache = RuntimeConfigCache(store.load)
    store.gate.clear()
    pending = asyncio.ensure_future(cache.entry("a1"))
    for version in range(2, 2 + READ_ATTEMPTS):
        store.started.clear()
        await store.started.wait()
        cache.evict_older("a1", version)  # announced, yet every read saw an older one
        store.gate.set()
        await asyncio.sleep(0)
        store.gate.clear()
    store.gate.set()
    with pytest.raises(StaleReadError):
        await pending
