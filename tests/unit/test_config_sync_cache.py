"""The runtime-config cache: versions only move forward; concurrent misses share a read."""

import asyncio

import pytest

from core_voice_config_sync.cache import RuntimeConfigCache
from core_voice_contracts.runtime_config import RuntimeConfig

pytestmark = pytest.mark.unit


def config(version: int, agent_id: str = "a1") -> RuntimeConfig:
    return RuntimeConfig(agent_id=agent_id, tenant_id="default", version=version)


class FakeStore:
    def __init__(self, current: RuntimeConfig | None) -> None:
        self.current = current
        self.reads = 0

    async def load(self, agent_id: str) -> RuntimeConfig | None:
        self.reads += 1
        await asyncio.sleep(0.01)
        return self.current if self.current and self.current.agent_id == agent_id else None


async def test_put_never_goes_back_in_version() -> None:
    cache = RuntimeConfigCache(FakeStore(None).load)
    cache.put(config(3))
    cache.put(config(2))
    assert (await cache.get("a1")) == config(3)


async def test_miss_reads_once_for_concurrent_callers() -> None:
    store = FakeStore(config(5))
    cache = RuntimeConfigCache(store.load)
    results = await asyncio.gather(*(cache.get("a1") for _ in range(10)))
    assert results == [config(5)] * 10
    assert store.reads == 1
    assert await cache.get("a1") == config(5)
    assert store.reads == 1


async def test_unknown_agents_are_not_cached() -> None:
    store = FakeStore(None)
    cache = RuntimeConfigCache(store.load)
    assert await cache.get("a1") is None
    store.current = config(1)
    assert await cache.get("a1") == config(1)


async def test_min_version_and_eviction_force_a_fresh_read() -> None:
    store = FakeStore(config(1))
    cache = RuntimeConfigCache(store.load)
    assert await cache.get("a1") == config(1)
    store.current = config(2)
    assert await cache.get("a1", min_version=2) == config(2)

    store.current = config(4)
    cache.evict_older("a1", 3)  # another replica committed v3
    assert cache.peek("a1") is None
    assert await cache.get("a1") == config(4)
    cache.evict_older("a1", 4)  # our own event: nothing newer, keep it
    assert cache.peek("a1") == config(4)
