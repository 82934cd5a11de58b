"""The pool's mirror of runtime configs: what a call starts on, kept current by pushes.

One entry per (agent, campaign) the pool has served or been told about (`JobRequested`,
`JobDispatched`). ``ConfigChanged`` announces versions; an announced version newer than
an entry's is fetched at once and pushed to the calls watching it. Rules:

- a call never starts on a version older than the newest announced one: it waits for
  the fetch, and is refused (``config_outdated``) if the fetch fails;
- an entry never moves backwards, whatever a lagging config_sync replica answers;
- when config_sync cannot confirm an entry (it is down or frozen), or the change feed is
  not live (NATS reconnecting), the entry is still served, marked stale: the last known
  good version;
- a deleted or disabled agent is refused at once.

When an announced version of an agent the pool holds is first held, `on_held` is told
(the pool publishes `ConfigHeld`: config propagation lag). Only announcements of agents
already held count: a version fetched for a first call is not a propagation, and a
replayed announcement the pool held long ago is not reported again.
"""

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from core_voice_contracts.events import (
    CallFailure,
    ChangeKind,
    ConfigChanged,
    ConfigFound,
    ConfigGetError,
    ConfigGetReply,
    ConfigNotFound,
    RejectReason,
)
from core_voice_contracts.runtime_config import RuntimeConfig
from core_voice_contracts.tasks import TaskSet

log = logging.getLogger(__name__)

Key = tuple[str, str | None]
Fetch = Callable[[str, str | None, int], Awaitable[ConfigGetReply]]
"""(agent_id, campaign_id, min_version) -> config_sync's answer (never raises)."""

DISABLED_REASON = RejectReason.DISABLED_AGENT.value
CONFIRM_WAIT_S = 0.05


class ConfigRefusedError(Exception):
    """No config a call may start on; ``error`` is a `CallFailure` code."""

    def __init__(self, error: CallFailure, detail: str, *, retryable: bool = False) -> None:
        super().__init__(f"{error.value}: {detail}")
        self.error = error
        self.detail = detail
        self.retryable = retryable


@dataclass(slots=True)
class Entry:
    config: RuntimeConfig
    stale: bool = False
    held_at: float = field(default_factory=time.time)
    """Wall-clock time this version arrived (benchmarks compare it across processes)."""


@dataclass(frozen=True, slots=True)
class Held:
    """An announced version first held by this pool (`events.ConfigHeld`)."""

    agent_id: str
    tenant_id: str
    version: int
    changed_at: dt.datetime
    """The announcing `ConfigChanged.at` (the commit)."""
    held_at: float
    """Wall-clock time the pool first held it (or a newer version)."""


Fetched = Entry | ConfigRefusedError
"""What one fetch brought: the entry now held, or why there is none."""


class Watcher(Protocol):
    """Something that wants newer versions of one key (a running call's link)."""

    def on_config(self, config: RuntimeConfig, stale: bool) -> None: ...

    def on_gone(self, agent_id: str, reason: CallFailure) -> None: ...


@dataclass(slots=True)
class MirrorStats:
    hits: int = 0
    misses: int = 0
    refused: int = 0
    stale_served: int = 0
    fetches: int = 0
    fetch_errors: int = 0
    last_fetch_error: str = ""


class ConfigMirror:
    def __init__(
        self,
        fetch: Fetch,
        *,
        timeout: float,
        max_entries: int = 10_000,
        tasks: TaskSet | None = None,
    ) -> None:
        self._fetch = fetch
        self._tasks = tasks if tasks is not None else TaskSet()
        self._timeout = timeout
        self._max_entries = max_entries
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._announced: dict[str, int] = {}
        self._gone: dict[str, CallFailure] = {}
        self._inflight: dict[Key, asyncio.Task[Fetched]] = {}
        self._asked: dict[Key, int] = {}
        self._asked_at: dict[Key, float] = {}
        self._watchers: dict[Key, set[Watcher]] = {}
        self._live = False
        self._changed = asyncio.Event()
        self.stats = MirrorStats()
        self.on_stale: Callable[[Key, str], None] | None = None
        """Called when an entry turns stale (config_sync could not confirm it)."""
        self.on_held: Callable[[Held], None] | None = None
        """Called when an announced version of a held agent is first held."""
        self._propagating: dict[str, ConfigChanged] = {}
        """Announcements newer than what is held of the agent, waiting for their fetch."""
        self._early: dict[str, tuple[int, float]] = {}
        """A refresh held before its announcement arrived: (version, wall time)."""
        self._reported: dict[str, int] = {}
        """The newest version reported held, per agent."""

    # --- what the feeds tell it -------------------------------------------------------

    def set_live(self, live: bool) -> None:
        """The change feed is (not) live. While it is not, every entry is unconfirmed:
        an edit may be announced that the pool cannot see."""
        self._live = live
        if not live:
            for entry in self._entries.values():
                entry.stale = True

    @property
    def live(self) -> bool:
        return self._live

    def reconciled(self) -> None:
        """The feed has replayed the latest announcement of every agent since it came
        back: entries at their announced version are current again; older ones are
        being fetched (`announce` started that)."""
        self._live = True
        for (agent_id, _), entry in self._entries.items():
            if entry.config.version >= self._announced.get(agent_id, 0):
                entry.stale = False

    def announce(self, change: ConfigChanged) -> None:
        agent_id = change.agent_id
        if change.version > self._announced.get(agent_id, 0):
            self._announced[agent_id] = change.version
        if change.kind == ChangeKind.DELETED:
            self._forget_agent(agent_id, CallFailure.AGENT_DELETED)
            return
        if change.kind == ChangeKind.CREATED:
            self._gone.pop(agent_id, None)
        self._note_announcement(change)
        for key in self._keys_of(agent_id):
            if self._entries[key].config.version < change.version:
                self._start_fetch(key, change.version)

    def routing_changed(self, agent_id: str) -> None:
        """The agent's status may have changed (disabled, enabled): ask again."""
        if self._gone.get(agent_id) == CallFailure.AGENT_DISABLED:
            del self._gone[agent_id]
        for key in self._keys_of(agent_id):
            self._start_fetch(key, 0)

    def prefetch(self, agent_id: str, campaign_id: str | None) -> None:
        """A job for this key is on its way: fetch it, or confirm what is held, before the
        call asks (the answer also tells whether config_sync is reachable)."""
        if agent_id in self._gone and self._gone[agent_id] != CallFailure.AGENT_DISABLED:
            return
        self._start_fetch((agent_id, campaign_id), self._announced.get(agent_id, 0))

    # --- what a call asks -------------------------------------------------------------

    def peek(self, agent_id: str, campaign_id: str | None) -> Entry | None:
        return self._entries.get((agent_id, campaign_id))

    def announced(self, agent_id: str) -> int:
        return self._announced.get(agent_id, 0)

    async def config_for_call(self, agent_id: str, campaign_id: str | None) -> Entry:
        """The config a new call starts on; raises `ConfigRefusedError`."""
        key = (agent_id, campaign_id)
        if (gone := self._gone.get(agent_id)) is not None:
            self.stats.refused += 1
            raise ConfigRefusedError(gone, f"agent {agent_id} is {_gone_words(gone)}")
        announced = self._announced.get(agent_id, 0)
        entry = self._entries.get(key)
        if entry is not None and entry.config.version >= announced:
            self._entries.move_to_end(key)
            self.stats.hits += 1
            self._check_confirmation(key)
            if entry.stale:
                self.stats.stale_served += 1
            return entry
        self.stats.misses += 1
        task = self._start_fetch(key, announced)
        try:
            fetched = await asyncio.wait_for(asyncio.shield(task), self._timeout)
        except TimeoutError:
            fetched = ConfigRefusedError(
                CallFailure.CONFIG_UNAVAILABLE,
                f"config_sync did not answer within {self._timeout:g} s",
                retryable=True,
            )
        if isinstance(fetched, Entry) and fetched.config.version >= self.announced(agent_id):
            return fetched
        self.stats.refused += 1
        if (gone := self._gone.get(agent_id)) is not None:
            raise ConfigRefusedError(gone, f"agent {agent_id} is {_gone_words(gone)}")
        if isinstance(fetched, ConfigRefusedError) and not fetched.retryable:
            raise fetched
        why = fetched.detail if isinstance(fetched, ConfigRefusedError) else "older version"
        if entry is not None:
            raise ConfigRefusedError(
                CallFailure.CONFIG_OUTDATED,
                f"version {announced} of agent {agent_id} is announced but cannot be fetched "
                f"({why}); only version {entry.config.version} is held",
                retryable=True,
            )
        raise ConfigRefusedError(
            CallFailure.CONFIG_UNAVAILABLE,
            f"no config for agent {agent_id} ({why})",
            retryable=True,
        )

    def _check_confirmation(self, key: Key) -> None:
        """A job's confirmation of ``key`` normally answers long before the job arrives. One
        still unanswered after CONFIRM_WAIT_S means config_sync is frozen or overloaded:
        the call starts at once on the entry, marked stale (a later answer clears it)."""
        pending = self._inflight.get(key)
        overdue = time.monotonic() - self._asked_at.get(key, time.monotonic()) > CONFIRM_WAIT_S
        if pending is not None and not pending.done() and overdue:
            self._mark_stale(key, "config_sync_slow")

    def watch(self, key: Key, watcher: Watcher) -> None:
        self._watchers.setdefault(key, set()).add(watcher)

    def unwatch(self, key: Key, watcher: Watcher) -> None:
        watchers = self._watchers.get(key)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[key]

    # --- state, for health and metrics --------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    async def changed(self) -> None:
        """Return when the next new version is stored (any key)."""
        await self._changed.wait()

    def stale_count(self) -> int:
        return sum(1 for entry in self._entries.values() if entry.stale)

    def gone(self) -> dict[str, CallFailure]:
        return dict(self._gone)

    async def settle(self) -> None:
        """Wait for the fetches in flight (tests and shutdown)."""
        while self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    def cancel(self) -> None:
        for task in self._inflight.values():
            task.cancel()

    # --- internals --------------------------------------------------------------------

    def _keys_of(self, agent_id: str) -> list[Key]:
        return [key for key in self._entries if key[0] == agent_id]

    def _note_announcement(self, change: ConfigChanged) -> None:
        agent_id, version = change.agent_id, change.version
        held = [self._entries[key].config.version for key in self._keys_of(agent_id)]
        if not held or version <= self._reported.get(agent_id, 0):
            return
        if max(held) < version:
            pending = self._propagating.get(agent_id)
            if pending is None or pending.version < version:
                self._propagating[agent_id] = change
            return
        early = self._early.get(agent_id)
        if early is not None and early[0] >= version:  # fetched before the news arrived
            if early[0] == version:
                del self._early[agent_id]
            self._report(change, early[1])

    def _report(self, change: ConfigChanged, held_at: float) -> None:
        self._reported[change.agent_id] = change.version
        if self.on_held is not None:
            self.on_held(
                Held(
                    agent_id=change.agent_id,
                    tenant_id=change.tenant_id,
                    version=change.version,
                    changed_at=change.at,
                    held_at=held_at,
                )
            )

    def _held_newer(self, agent_id: str, entry: Entry, refresh: bool) -> None:
        """A newer version of ``agent_id`` is held now: report the announcement it meets,
        or remember it for the announcement still on its way."""
        version = entry.config.version
        if version <= self._reported.get(agent_id, 0):
            return
        pending = self._propagating.get(agent_id)
        if pending is not None and version >= pending.version:
            del self._propagating[agent_id]
            self._report(pending, entry.held_at)
        elif refresh:
            self._early[agent_id] = (version, entry.held_at)

    def _forget_agent(self, agent_id: str, reason: CallFailure) -> None:
        self._propagating.pop(agent_id, None)
        self._early.pop(agent_id, None)
        self._gone[agent_id] = reason
        for key in self._keys_of(agent_id):
            del self._entries[key]
        for key, watchers in list(self._watchers.items()):
            if key[0] == agent_id:
                for watcher in list(watchers):
                    watcher.on_gone(agent_id, reason)

    def _start_fetch(self, key: Key, min_version: int) -> "asyncio.Task[Fetched]":
        """One fetch per key at a time: a burst of jobs for one agent asks once. A fetch
        in flight for an older minimum is not reused: it may not bring what is needed."""
        running = self._inflight.get(key)
        if running is not None and not running.done() and min_version <= self._asked[key]:
            return running
        task = self._tasks.spawn(self._fetch_into(key, min_version), name="mirror.fetch")
        self._inflight[key] = task
        self._asked[key] = min_version
        self._asked_at[key] = time.monotonic()

        def done(finished: "asyncio.Task[Fetched]") -> None:
            if self._inflight.get(key) is finished:
                del self._inflight[key]
                del self._asked[key]
                del self._asked_at[key]

        task.add_done_callback(done)
        return task

    async def _fetch_into(self, key: Key, min_version: int) -> Fetched:
        agent_id, campaign_id = key
        self.stats.fetches += 1
        reply = await self._fetch(agent_id, campaign_id, min_version)
        match reply:
            case ConfigFound(config=config):
                return self._store(key, config)
            case ConfigNotFound(reason=reason):
                return self._not_found(agent_id, reason)
            case ConfigGetError(error=error):
                self._unconfirmed(key, error)
                return ConfigRefusedError(
                    CallFailure.CONFIG_UNAVAILABLE, f"config_sync: {error}", retryable=True
                )

    def _store(self, key: Key, config: RuntimeConfig) -> Entry:
        agent_id = key[0]
        self._gone.pop(agent_id, None)
        if config.version > self._announced.get(agent_id, 0):
            self._announced[agent_id] = config.version
        held = self._entries.get(key)
        if held is not None and held.config.version >= config.version:
            # A lagging replica, or a confirmation of what is held: never go backwards.
            held.stale = not self._live
            self._entries.move_to_end(key)
            return held
        entry = Entry(config=config, stale=not self._live)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        self._held_newer(agent_id, entry, refresh=held is not None)
        if held is not None:
            log.info(
                "config refreshed",
                extra={"agent_id": agent_id, "campaign_id": key[1], "version": config.version},
            )
        for watcher in list(self._watchers.get(key, ())):
            watcher.on_config(config, entry.stale)
        self._changed.set()
        self._changed = asyncio.Event()
        return entry

    def _not_found(self, agent_id: str, reason: str) -> ConfigRefusedError:
        if reason == DISABLED_REASON:
            self._forget_agent(agent_id, CallFailure.AGENT_DISABLED)
            return ConfigRefusedError(CallFailure.AGENT_DISABLED, f"agent {agent_id} is disabled")
        if self._keys_of(agent_id):
            # It was known a moment ago: deleted while the pool could not see the event.
            self._forget_agent(agent_id, CallFailure.AGENT_DELETED)
            return ConfigRefusedError(CallFailure.AGENT_DELETED, f"agent {agent_id} is deleted")
        # An agent never seen is not remembered as unknown: it may be created next.
        return ConfigRefusedError(CallFailure.UNKNOWN_AGENT, f"config_sync: {reason}")

    def _unconfirmed(self, key: Key, error: str) -> None:
        self.stats.fetch_errors += 1
        self.stats.last_fetch_error = error
        self._mark_stale(key, error)

    def _mark_stale(self, key: Key, why: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and not entry.stale:
            entry.stale = True
            if self.on_stale is not None:
                self.on_stale(key, why)


def _gone_words(reason: CallFailure) -> str:
    return {
        CallFailure.AGENT_DELETED: "deleted",
        CallFailure.AGENT_DISABLED: "disabled",
    }.get(reason, reason.value)
