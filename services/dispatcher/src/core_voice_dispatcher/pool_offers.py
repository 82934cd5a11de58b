"""Whether a launch LiveKit made since some moment may have found no pool to take it.

LiveKit (1.13.5) drops a dispatch's launch only when no worker of its agent name takes
it: none registered, each marked full (`UpdateWorkerStatus`), or each answering the offer
unavailable. A launch can also be late: queued behind LiveKit's other launches for many
seconds (a burst of rooms with no agent in their configuration wastes LiveKit's launch
slots on their default dispatches). LiveKit's API shows both as a dispatch with no job,
and a re-offer of a late launch gives the room a second job. The pools can tell them
apart: each pool's `WorkerStatus` says whether LiveKit offers it nothing now (``full``)
and how many offers it turned away, and the pool sends one at once when either changes.

So a dispatch nobody took is offered again only if a launch since it was made may have
been dropped: every pool of its agent name was full or turned an offer away at some
moment since then, or was first heard since then, or a pool heard since then is gone
(silent for three intervals), or no pool of the name is heard at all
(pools that do not say their agent name count for every name). It is a necessary
condition of a dropped launch, not a sufficient one; what it cannot see (a pool whose
LiveKit connection dropped unnoticed, a lost heartbeat) the capacity watch covers with a
late re-offer whatever the pools say (`capacity.REOFFER_BLIND_S`).
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from core_voice_contracts.events import MISSED_HEARTBEATS, WorkerStatus

MARGIN_S = 1.0
"""Heard times are this process's receipt times: a change heard up to this long before the
dispatch was made counts as since (LiveKit may have learnt it later)."""

MAX_POOLS = 10_000
"""Pools remembered at once (a pool id is any string a worker-role publisher chose): past
it the one heard longest ago is forgotten, as if it went silent."""


@dataclass(slots=True)
class _Pool:
    agent_name: str
    first_heard: float
    heard: float
    interval_s: float
    full: bool
    turned_away: int
    unable_at: float
    """When it was last heard becoming able again (full ended) or turning an offer away."""


class PoolOffers:
    """Every pool's last heartbeat, as the capacity watch needs it (a pool silent for three
    intervals is forgotten; at most ``max_pools``)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_pools: int = MAX_POOLS
    ) -> None:
        self._clock = clock
        self._max_pools = max_pools
        self._pools: dict[str, _Pool] = {}
        self._left_at = -math.inf
        """The last heard time of the latest pool found gone (silent for three intervals):
        a launch after it may have gone to a pool that was no longer there."""

    def note_status(self, status: WorkerStatus) -> None:
        now = self._clock()
        pool = self._pools.get(status.worker_id)
        full = status.full or status.draining
        if pool is None:
            # New (or new to this process): what it did before is unknown, so it counts
            # as changed now.
            self._pools[status.worker_id] = _Pool(
                agent_name=status.agent_name,
                first_heard=now,
                heard=now,
                interval_s=max(status.interval_s, 0.1),
                full=full,
                turned_away=status.turned_away,
                unable_at=now,
            )
            if len(self._pools) > self._max_pools:
                self._forget(min(self._pools, key=lambda worker_id: self._pools[worker_id].heard))
            return
        if (pool.full and not full) or status.turned_away != pool.turned_away:
            pool.unable_at = now
        pool.agent_name = status.agent_name
        pool.heard = now
        pool.interval_s = max(status.interval_s, 0.1)
        pool.full = full
        pool.turned_away = status.turned_away

    def may_have_dropped(self, agent_name: str, since: float) -> bool:
        """Whether a launch of ``agent_name`` since ``since`` (monotonic) may have found
        no pool to take it (see the module docstring)."""
        now = self._clock()
        self._forget_silent(now)
        since -= MARGIN_S
        if self._left_at >= since:
            return True
        named = [p for p in self._pools.values() if p.agent_name in ("", agent_name)]
        return not named or all(
            p.full or p.unable_at >= since or p.first_heard >= since for p in named
        )

    def _forget_silent(self, now: float) -> None:
        gone = [
            worker_id
            for worker_id, pool in self._pools.items()
            if now - pool.heard > MISSED_HEARTBEATS * pool.interval_s
        ]
        for worker_id in gone:
            self._forget(worker_id)

    def _forget(self, worker_id: str) -> None:
        self._left_at = max(self._left_at, self._pools.pop(worker_id).heard)
