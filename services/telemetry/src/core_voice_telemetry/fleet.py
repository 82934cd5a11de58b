"""The worker fleet from `WorkerStatus` heartbeats, and config propagation from `ConfigHeld`.

Heartbeats are live state on core NATS (no stream): the gauges are right again one
heartbeat interval after a telemetry restart. A pool not heard from for three of its
intervals is counted gone.
"""

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from core_voice_contracts.events import MISSED_HEARTBEATS, ConfigHeld, WorkerStatus

MAX_WORKERS = 10_000
"""Bound on pools tracked (a pool id is any string a publisher chose)."""
MAX_PROPAGATIONS = 10_000
"""Bound on (agent, version) pairs followed at once; the oldest is given up first."""


@dataclass(frozen=True)
class FleetTotals:
    workers: int = 0
    draining: int = 0
    capacity: int = 0
    active_calls: int = 0
    stale_configs: int = 0

    @property
    def utilisation(self) -> float:
        """Active calls over the capacity of the fleet (0 with no capacity)."""
        return self.active_calls / self.capacity if self.capacity else 0.0


class Fleet:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._workers: OrderedDict[str, tuple[float, WorkerStatus]] = OrderedDict()

    def beat(self, status: WorkerStatus) -> None:
        self._workers[status.worker_id] = (self._clock(), status)
        self._workers.move_to_end(status.worker_id)
        while len(self._workers) > MAX_WORKERS:
            self._workers.popitem(last=False)

    def live(self) -> dict[str, WorkerStatus]:
        """The pools heard from within three of their intervals (the rest are dropped)."""
        now = self._clock()
        for worker_id, (seen, status) in list(self._workers.items()):
            if now - seen > MISSED_HEARTBEATS * max(status.interval_s, 0.1):
                del self._workers[worker_id]
        return {worker_id: status for worker_id, (_, status) in self._workers.items()}

    def totals(self) -> FleetTotals:
        live = self.live().values()
        return FleetTotals(
            workers=len(live),
            draining=sum(1 for s in live if s.draining),
            capacity=sum(max(s.capacity, 0) for s in live),
            active_calls=sum(max(s.active_calls, 0) for s in live),
            stale_configs=sum(max(s.stale_configs, 0) for s in live),
        )


@dataclass
class _Pending:
    tenant: str
    changed_at: dt.datetime
    started: float
    """Clock time of the first `ConfigHeld`, for the window."""
    last_at: dt.datetime
    expected: set[str]
    """The pools known to hold the agent when its first report came (empty: not known)."""
    holders: set[str] = field(default_factory=set)


class Propagation:
    """Per (agent, version): the first `ConfigHeld` gives ``first``; once every live pool
    that holds the agent has reported, ``all``; not all within ``window_s``,
    ``incomplete``. The callbacks receive (tenant label, seconds) and (tenant label).

    A pool reports only a version of an agent it already held (a first fetch for a call
    is not a propagation), so "every pool" is every live pool seen holding the agent
    before: learned from earlier reports. Before telemetry has seen one (an agent's
    first change since telemetry started), the pools that report within the window are
    all it can know of: ``all`` is then observed at the window's end, from the last
    report, and nothing is counted incomplete.
    """

    def __init__(
        self,
        fleet: Fleet,
        window_s: float,
        *,
        first: Callable[[str, float], None],
        all_: Callable[[str, float], None],
        incomplete: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fleet = fleet
        self.window_s = window_s
        self._first = first
        self._all = all_
        self._incomplete = incomplete
        self._clock = clock
        self._pending: OrderedDict[tuple[str, int], _Pending] = OrderedDict()
        self._done: OrderedDict[tuple[str, int], None] = OrderedDict()
        """Pairs finished (all or incomplete): a late `ConfigHeld` must not restart them."""
        self._holders: OrderedDict[str, set[str]] = OrderedDict()
        """Agent -> the pools that reported holding one of its versions."""

    def held(self, event: ConfigHeld, tenant: str) -> None:
        key = (event.agent_id, event.version)
        holders = self._holders.setdefault(event.agent_id, set())
        self._holders.move_to_end(event.agent_id)
        while len(self._holders) > MAX_PROPAGATIONS:
            self._holders.popitem(last=False)
        if key in self._done:
            holders.add(event.worker_id)
            return
        pending = self._pending.get(key)
        if pending is None:
            pending = _Pending(tenant, event.changed_at, self._clock(), event.at, set(holders))
            self._pending[key] = pending
            self._first(tenant, _seconds(event.at - event.changed_at))
            while len(self._pending) > MAX_PROPAGATIONS:
                old_key, old = self._pending.popitem(last=False)
                self._finish(old_key)
                self._incomplete(old.tenant)
        holders.add(event.worker_id)
        if len(holders) > MAX_WORKERS:
            holders.intersection_update(self.fleet.live())
        pending.holders.add(event.worker_id)
        pending.last_at = max(pending.last_at, event.at)
        self._check(key, pending)

    def sweep(self) -> None:
        """Finish pairs every expected live pool now holds (a pool may have gone), and
        those past the window: ``all`` if no pool was expected, else ``incomplete``."""
        now = self._clock()
        for key, pending in list(self._pending.items()):
            if self._check(key, pending) or now - pending.started <= self.window_s:
                continue
            del self._pending[key]
            self._finish(key)
            if pending.expected:
                self._incomplete(pending.tenant)
            else:
                self._all(pending.tenant, _seconds(pending.last_at - pending.changed_at))

    def _check(self, key: tuple[str, int], pending: _Pending) -> bool:
        if not pending.expected:
            return False
        if not (pending.expected & set(self.fleet.live())) <= pending.holders:
            return False
        del self._pending[key]
        self._finish(key)
        self._all(pending.tenant, _seconds(pending.last_at - pending.changed_at))
        return True

    def _finish(self, key: tuple[str, int]) -> None:
        self._done[key] = None
        while len(self._done) > MAX_PROPAGATIONS:
            self._done.popitem(last=False)

    def __len__(self) -> int:
        return len(self._pending)


def _seconds(delta: dt.timedelta) -> float:
    """A lag in seconds; never negative (clocks of two hosts may disagree a little)."""
    return max(delta.total_seconds(), 0.0)
