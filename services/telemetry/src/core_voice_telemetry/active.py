"""The calls in progress, as a set keyed by call id, so the gauge survives a restart.

Every operation is idempotent: a `CallStarted` adds its call, a `CallEnded` /
`CallFailed` removes it and leaves a tombstone so a late or replayed `CallStarted` does
not add it back. The same event may therefore be applied twice (once by the start-up
replay of ``VOICE_CALLS``, once by the durable consumer) without counting a call twice.
Calls and tombstones older than the look-back are forgotten: no call lasts that long,
and a call whose end was never reported must not be counted forever.
"""

import datetime as dt
from collections import OrderedDict

Labels = tuple[str, str, str]
"""(tenant, agent, campaign) of a call, fixed when it started."""

MAX_TOMBSTONES = 200_000
"""Bound on remembered ends; far above the calls that end within one look-back."""


class ActiveCalls:
    def __init__(self, lookback_s: float) -> None:
        self.lookback = dt.timedelta(seconds=lookback_s)
        self._calls: OrderedDict[str, tuple[dt.datetime, Labels]] = OrderedDict()
        self._ended: OrderedDict[str, dt.datetime] = OrderedDict()
        self._seen: set[Labels] = set()
        """Every label set that had a call: reported at 0 once empty, so a panel of
        active calls shows 0, not "no data", when nothing is going on."""

    def start(self, call_id: str, at: dt.datetime, labels: Labels) -> None:
        if call_id in self._ended or call_id in self._calls:
            return
        self._calls[call_id] = (at, labels)
        self._seen.add(labels)

    def end(self, call_id: str, at: dt.datetime) -> None:
        self._calls.pop(call_id, None)
        self._ended[call_id] = at
        self._ended.move_to_end(call_id)
        while len(self._ended) > MAX_TOMBSTONES:
            self._ended.popitem(last=False)

    def prune(self, now: dt.datetime) -> None:
        """Forget calls started and ends reported longer than the look-back ago."""
        horizon = now - self.lookback
        for call_id, (at, _) in list(self._calls.items()):
            if at < horizon:
                del self._calls[call_id]
        for call_id, at in list(self._ended.items()):
            if at < horizon:
                del self._ended[call_id]

    def counts(self) -> dict[Labels, int]:
        out = dict.fromkeys(self._seen, 0)
        for _, labels in self._calls.values():
            out[labels] += 1
        return out

    def __len__(self) -> int:
        return len(self._calls)
