"""The in-memory runtime-config cache behind ``voice.config.get`` and the HTTP read path.

This service's own commits put the new version in at once; a miss (or a version older
than the caller needs) reads the database. Entries only ever move forward in version,
so a slow load can never overwrite a newer commit. `ConfigChanged` events from other
replicas evict older entries (see `nats_service`). Unknown agents are not cached: an
agent created a moment ago elsewhere must be found on the next request.
"""

import asyncio
from collections.abc import Awaitable, Callable

from core_voice_contracts.runtime_config import RuntimeConfig

Loader = Callable[[str], Awaitable[RuntimeConfig | None]]


class RuntimeConfigCache:
    def __init__(self, load: Loader) -> None:
        self._load = load
        self._items: dict[str, RuntimeConfig] = {}
        self._loading: dict[str, asyncio.Task[RuntimeConfig | None]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def put(self, config: RuntimeConfig) -> None:
        """Keep ``config`` unless a newer version is already cached."""
        cached = self._items.get(config.agent_id)
        if cached is None or cached.version <= config.version:
            self._items[config.agent_id] = config

    def evict_older(self, agent_id: str, version: int) -> None:
        """Forget a cached config older than ``version`` (announced by another writer)."""
        cached = self._items.get(agent_id)
        if cached is not None and cached.version < version:
            del self._items[agent_id]

    def peek(self, agent_id: str) -> RuntimeConfig | None:
        return self._items.get(agent_id)

    async def get(self, agent_id: str, *, min_version: int = 0) -> RuntimeConfig | None:
        """The newest known config of ``agent_id``, reading the database if needed.

        Concurrent misses for one agent share a single database read.
        """
        cached = self._items.get(agent_id)
        if cached is not None and cached.version >= min_version:
            return cached
        task = self._loading.get(agent_id)
        if task is None:
            task = asyncio.ensure_future(self._load(agent_id))
            self._loading[agent_id] = task
            task.add_done_callback(lambda _t: self._loading.pop(agent_id, None))
        loaded = await asyncio.shield(task)
        if loaded is not None:
            self.put(loaded)
        return self._items.get(agent_id, loaded)
