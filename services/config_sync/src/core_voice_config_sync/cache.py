"""The in-memory runtime-config cache behind ``voice.config.get`` and the HTTP read path.

One entry per agent: its current version (keys opened) and its campaign links, so any
(agent, campaign) pair is answered from memory, merged once and memoised. This
service's own commits replace entries at once; `ConfigChanged` events from other
replicas evict older ones (see `cache_evictor`). Unknown agents are not cached: an agent
created a moment ago elsewhere must be found on the next request. When the database is
down, whatever is cached keeps being served.

Nothing stale is ever kept or served, whatever order reads and events arrive in:

- a version floor per agent: an announced version (another replica's commit) is a
  version that exists, so an entry below it is neither stored nor served. A read that
  started before the announcement and comes back older is read again (that read sees
  the commit, which precedes its event);
- an in-place change (status, no new version) makes any read in flight for that agent
  be stored nowhere (it may have seen the old row);
- a tombstone per deleted agent (ids are never reused): the agent is refused at once,
  without a read, and a read in flight cannot bring it back;
- `clear` on a NATS disconnect and reconnect: events published meanwhile are lost, so
  everything cached is read again.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core_voice_config_sync.errors import StaleReadError
from core_voice_config_sync.merge import merge
from core_voice_config_sync.metrics import ConfigSyncMetrics
from core_voice_config_sync.records import AgentRecord
from core_voice_contracts.admin_api import CampaignOverrides
from core_voice_contracts.runtime_config import RuntimeConfig

READ_ATTEMPTS = 3
"""Reads of one request that may each be overtaken by a newer announcement."""


@dataclass(slots=True)
class CacheEntry:
    record: AgentRecord
    base: RuntimeConfig
    """The agent's own runtime config with its keys opened (defaults not filled)."""
    links: dict[str, CampaignOverrides]
    merged: dict[str | None, RuntimeConfig] = field(default_factory=dict)

    def __repr__(self) -> str:
        # ``base`` carries opened provider keys; its own repr hides them, this adds nothing.
        return f"CacheEntry(agent_id={self.record.id!r}, version={self.version})"

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


@dataclass(frozen=True, slots=True)
class _Read:
    entry: CacheEntry | None
    floor: int
    """The agent's version floor when the read started."""
    kept: bool
    """False if the agent changed in place, or everything was cleared, during the read."""


class RuntimeConfigCache:
    def __init__(self, load: Loader, metrics: ConfigSyncMetrics | None = None) -> None:
        self._load = load
        self._metrics = metrics if metrics is not None else ConfigSyncMetrics()
        self._items: dict[str, CacheEntry] = {}
        self._floors: dict[str, int] = {}
        """Announced versions above the cached one (or of agents not cached)."""
        self._deleted: dict[str, int] = {}
        """Tombstones: agent → the version its deletion was announced with."""
        self._loading: dict[str, asyncio.Task[_Read]] = {}
        """The read in flight per agent; one that is no longer here is stored nowhere."""

    def __len__(self) -> int:
        return len(self._items)

    def floor(self, agent_id: str) -> int:
        """The lowest version of ``agent_id`` that may be stored or served."""
        cached = self._items.get(agent_id)
        return max(self._floors.get(agent_id, 0), 0 if cached is None else cached.version)

    def is_deleted(self, agent_id: str) -> bool:
        return agent_id in self._deleted

    def put(self, entry: CacheEntry) -> None:
        """Keep ``entry`` unless a newer version is cached or announced, or the agent is
        deleted (only a newer commit than its deletion lifts a tombstone)."""
        agent_id = entry.record.id
        tombstone = self._deleted.get(agent_id)
        if tombstone is not None:
            if entry.version <= tombstone:
                return
            del self._deleted[agent_id]
        if entry.version < self.floor(agent_id):
            return
        self._items[agent_id] = entry
        self._floors.pop(agent_id, None)  # the entry itself now holds the floor

    def evict_older(self, agent_id: str, version: int) -> None:
        """``version`` was committed (announced by any writer): raise the floor to it and
        forget a cached entry older than it."""
        if version <= self.floor(agent_id):
            return  # nothing new (e.g. this replica's own commit, already cached)
        self._floors[agent_id] = version
        self._items.pop(agent_id, None)

    def forget(self, agent_id: str) -> None:
        """The agent changed in place (no new version): drop its entry, and store no read
        that was in flight (it may have seen the old row)."""
        cached = self._items.pop(agent_id, None)
        if cached is not None:
            self._floors[agent_id] = max(self._floors.get(agent_id, 0), cached.version)
        self._loading.pop(agent_id, None)

    def tombstone(self, agent_id: str, version: int) -> None:
        """The agent was deleted with ``version``: refuse it from now on."""
        self._deleted[agent_id] = max(self._deleted.get(agent_id, 0), version)
        self._items.pop(agent_id, None)
        self._floors.pop(agent_id, None)
        self._loading.pop(agent_id, None)

    def clear(self) -> None:
        """Forget every entry and every read in flight (change events may have been
        missed). Floors and tombstones stay: they are facts, not copies."""
        self._items.clear()
        self._loading.clear()

    def peek(self, agent_id: str) -> CacheEntry | None:
        return self._items.get(agent_id)

    async def entry(self, agent_id: str, *, min_version: int = 0) -> CacheEntry | None:
        """The newest known entry of ``agent_id``, reading the database if needed.

        Concurrent misses for one agent share a single database read; a failing read
        raises (e.g. `DatabaseUnavailableError`) only when nothing usable is cached.
        A deleted agent is None; a read overtaken by a newer version is read again.
        """
        hits = self._metrics.cache_requests
        for attempt in range(READ_ATTEMPTS):
            if agent_id in self._deleted:
                if attempt == 0:  # a tombstone answers from memory too
                    hits.labels("hit").inc()
                return None
            cached = self._items.get(agent_id)
            if cached is not None and cached.version >= min_version:
                if attempt == 0:
                    hits.labels("hit").inc()
                return cached
            if attempt == 0:
                hits.labels("miss").inc()
            read = await asyncio.shield(self._read(agent_id))
            if agent_id in self._deleted:  # deleted while it was read
                return None
            if not read.kept:  # it may have seen a row changed meanwhile
                continue
            if read.entry is None:  # unknown, or deleted since it was cached
                return None
            floor = self.floor(agent_id)
            if read.entry.version >= floor or read.floor >= floor:
                # The newest announced, or read after the last announcement: the
                # database has the final word over an event (one never committed, say).
                return read.entry
        raise StaleReadError(agent_id)

    def _read(self, agent_id: str) -> asyncio.Task[_Read]:
        task = self._loading.get(agent_id)
        if task is None:
            task = asyncio.ensure_future(self._fill(agent_id, self.floor(agent_id)))
            self._loading[agent_id] = task
        return task

    async def _fill(self, agent_id: str, floor: int) -> _Read:
        """One database read, stored if nothing happened to the agent meanwhile."""
        task = asyncio.current_task()
        try:
            loaded = await self._load(agent_id)
        finally:
            current = self._loading.get(agent_id) is task
            if current:
                del self._loading[agent_id]
        if current:
            if loaded is None:
                self._items.pop(agent_id, None)
            else:
                self.put(loaded)
        return _Read(loaded, floor, current)

    async def get(
        self, agent_id: str, *, campaign_id: str | None = None, min_version: int = 0
    ) -> RuntimeConfig | None:
        entry = await self.entry(agent_id, min_version=min_version)
        return None if entry is None else entry.config(campaign_id)
