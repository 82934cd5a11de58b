"""The runtime-config cache: versions only move forward; concurrent misses share a read;
campaign merges come from the entry; deleted agents drop out."""

import asyncio
import datetime as dt

import pytest

from core_voice_config_sync.cache import CacheEntry, RuntimeConfigCache
from core_voice_config_sync.records import AgentRecord, ConfigFields
from core_voice_contracts.admin_api import CampaignOverrides, ProviderOverride
from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def entry(version: int, agent_id: str = "a1", **links: CampaignOverrides) -> CacheEntry:
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
        status="active",
        version=version,
        config=fields,
        created_at=NOW,
        updated_at=NOW,
    )
    return CacheEntry(record=record, base=record.runtime(ProviderKeys()), links=dict(links))


class FakeStore:
    def __init__(self, current: CacheEntry | None) -> None:
        self.current = current
        self.reads = 0

    async def load(self, agent_id: str) -> CacheEntry | None:
        self.reads += 1
        await asyncio.sleep(0.01)
        return self.current if self.current and self.current.record.id == agent_id else None


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
