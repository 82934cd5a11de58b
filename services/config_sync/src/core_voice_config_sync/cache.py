"""The in-memory runtime-config cache behind ``voice.config.get`` and the HTTP read path.

One entry per agent: its current version (keys opened) and its campaign links, so any
(agent, campaign) pair is answered from memory, merged once and memoised. This
service's own commits replace entries at once; `ConfigChanged` events from other
replicas evict older ones (see `nats_service`). Entries only ever move forward in
version, so a slow load can never overwrite a newer commit. Unknown agents are not
cached: an agent created a moment ago elsewhere must be found on the next request.
When the database is down, whatever is cached keeps being served.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core_voice_config_sync.merge import merge
from core_voice_config_sync.records import AgentRecord
from core_voice_contracts.admin_api import CampaignOverrides
from core_voice_contracts.runtime_config import RuntimeConfig


@dataclass(slots=True)
class CacheEntry:
    record: AgentRecord
    base: RuntimeConfig
    """The agent's own runtime config with its keys opened (defaults not filled)."""
    links: dict[str, CampaignOverrides]
    merged: dict[str | None, RuntimeConfig] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return self.record.version

    def config(self, campaign_id: str | None) -> RuntimeConfig:
        """Merged with ``campaign_id``'s overrides if the agent is in that campaign;
        otherwise (no campaign, or one it is not in) the agent's own config with
        ``campaign_id`` None, which tells the caller no campaign applied."""
        key = campaign_id if campaign_id in self.links else None
        config = self.merged.get(key)
        if config is None:
            config = merge(self.base, self.links.get(key) if key else None, key)
            self.merged[key] = config
        return config


Loader = Callable[[str], Awaitable[CacheEntry | None]]


class RuntimeConfigCache:
    def __init__(self, load: Loader) -> None:
        self._load = load
        self._items: dict[str, CacheEntry] = {}
        self._loading: dict[str, asyncio.Task[CacheEntry | None]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def put(self, entry: CacheEntry) -> None:
        """Keep ``entry`` unless a newer version is already cached."""
        cached = self._items.get(entry.record.id)
        if cached is None or cached.version <= entry.version:
            self._items[entry.record.id] = entry

    def evict_older(self, agent_id: str, version: int) -> None:
        """Forget a cached entry older than ``version`` (announced by any writer)."""
        cached = self._items.get(agent_id)
        if cached is not None and cached.version < version:
            del self._items[agent_id]

    def forget(self, agent_id: str) -> None:
        self._items.pop(agent_id, None)

    def peek(self, agent_id: str) -> CacheEntry | None:
        return self._items.get(agent_id)

    async def entry(self, agent_id: str, *, min_version: int = 0) -> CacheEntry | None:
        """The newest known entry of ``agent_id``, reading the database if needed.

        Concurrent misses for one agent share a single database read; a failing read
        raises (e.g. `DatabaseUnavailableError`) only when nothing usable is cached.
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
        if loaded is None:  # unknown, or deleted since it was cached
            self._items.pop(agent_id, None)
            return None
        self.put(loaded)
        return self._items.get(agent_id, loaded)

    async def get(
        self, agent_id: str, *, campaign_id: str | None = None, min_version: int = 0
    ) -> RuntimeConfig | None:
        entry = await self.entry(agent_id, min_version=min_version)
        return None if entry is None else entry.config(campaign_id)
