"""The outbox relay: moves committed events (`ConfigChanged`, `RoutingChanged`) from the
database to JetStream.

Woken right after each commit (a few ms edit→event) and also every ``sweep_s`` seconds,
so a NATS outage delays events but never loses them. Events go out strictly in commit
order and a pass stops at the first failure: ``VOICE_CONFIG`` keeps only the latest
message per subject (per agent, or per tenant for routing), so publishing v3 before v2
would leave v2 as the "latest". Each event has a stable ``Nats-Msg-Id``, so a
re-publish after a crash or by a second replica is dropped by JetStream's duplicate
window.

Marking events published is a database write, so it is kept off the edit → event path:
published ids are remembered and marked in one statement once edits pause for
``MARK_AFTER_S`` (or after ``MARK_MAX`` events / ``MARK_MAX_AGE_S``). A crash before
the mark only means a re-publish, which the duplicate window drops.

Each event the stream stored is also echoed on core NATS (`subjects.config_echo`):
pools follow ``VOICE_CONFIG`` with ordered consumers, and one whose NATS node restarted
or is catching up stalls for seconds before it notices (a pool held an edit 1.85 s late
in the cluster tests). The echo reaches it at once; the stream stays the record.
"""

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import Protocol

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from core_voice_config_sync.metrics import ConfigSyncMetrics, ErrorType
from core_voice_config_sync.models import utcnow
from core_voice_config_sync.outbox import PendingEvent
from core_voice_contracts import bus, codec, subjects
from core_voice_contracts.errors import DecodeError

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0
MARK_AFTER_S = 0.05
MARK_MAX_AGE_S = 0.25
MARK_MAX = 50


class OutboxStore(Protocol):
    async def pending_events(self, limit: int = 100) -> list[PendingEvent]: ...
    async def mark_published(self, ids: list[int], at: dt.datetime | None = None) -> None: ...
    async def prune_published(self, older_than: dt.datetime) -> int: ...


class OutboxRelay:
    def __init__(
        self,
        store: OutboxStore,
        js: JetStreamContext,
        *,
        sweep_s: float = 1.0,
        retention_s: float = 86_400.0,
        batch: int = 100,
        publish_timeout_s: float = 2.0,
        metrics: ConfigSyncMetrics | None = None,
        echo: Client | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else ConfigSyncMetrics()
        self._store = store
        self._js = js
        self._echo = echo
        """Where each stored event is echoed on core NATS (`subjects.config_echo`)."""
        self._sweep_s = sweep_s
        self._retention = dt.timedelta(seconds=retention_s)
        self._batch = batch
        self._publish_timeout_s = publish_timeout_s
        self._wakeup = asyncio.Event()
        self._wakeup.set()  # publish whatever a previous run left behind, at once
        self._last_prune = 0.0
        self._unmarked: dict[int, float] = {}  # published, not yet marked: id -> when

    def wake(self) -> None:
        """Ask for a pass now (called after every commit that wrote an event)."""
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until cancelled. Failures are logged and retried on the next pass."""
        while True:
            woke = False
            idle = MARK_AFTER_S if self._unmarked else self._sweep_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=idle)
                woke = True
            self._wakeup.clear()
            try:
                await self.drain_once(mark=False)
                if self._unmarked and (
                    not woke
                    or len(self._unmarked) >= MARK_MAX
                    or time.monotonic() - min(self._unmarked.values()) > MARK_MAX_AGE_S
                ):
                    await self._mark()
                await self._maybe_prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._metrics.error(ErrorType.RELAY_FAILED)
                log.exception("outbox relay pass failed")

    async def drain_once(self, *, mark: bool = True) -> int:
        """Publish pending events in order; return how many were acknowledged.

        With ``mark`` (the default) they are also marked published before returning.
        """
        total = 0
        while True:
            pending = await self._store.pending_events(self._batch)
            fresh = [event for event in pending if event.id not in self._unmarked]
            if not fresh:
                if len(pending) == self._batch:  # a full page of unmarked rows hides newer ones
                    await self._mark()
                    continue
                self._metrics.outbox_pending.set(0)
                break
            published: list[int] = []
            for event in fresh:
                if not await self._publish(event):
                    break
                published.append(event.id)
            now = time.monotonic()
            for event_id in published:
                self._unmarked.setdefault(event_id, now)
            total += len(published)
            if len(published) < len(fresh):
                # What this page still holds: a lower bound when the page was full.
                self._metrics.outbox_pending.set(len(fresh) - len(published))
                break  # stopped at a failure; keep order, retry on the next pass
        if mark:
            await self._mark()
        return total

    async def _mark(self) -> None:
        if not self._unmarked:
            return
        ids = sorted(self._unmarked)
        await self._store.mark_published(ids)
        for event_id in ids:
            self._unmarked.pop(event_id, None)

    async def _publish(self, event: PendingEvent) -> bool:
        try:
            message = codec.decode_config_stream_event(event.payload)
        except DecodeError:
            # Never written by this code; skipping it beats blocking every later event.
            log.error("outbox event undecodable, skipped", extra={"outbox_id": event.id})
            self._metrics.error(ErrorType.OUTBOX_UNDECODABLE)
            return True
        try:
            ack = await bus.publish(
                self._js,
                event.subject,
                message,
                msg_id=event.msg_id,
                timeout=self._publish_timeout_s,
            )
        except (NatsError, TimeoutError) as exc:
            log.warning(
                "outbox publish failed, will retry",
                extra={"outbox_id": event.id, "error": type(exc).__name__},
            )
            self._metrics.error(ErrorType.PUBLISH_FAILED)
            return False
        if self._echo is not None:
            # Best effort: the stream has it; the echo only saves a stalled feed its wait.
            with contextlib.suppress(NatsError):
                await self._echo.publish(subjects.config_echo(event.subject), event.payload)
        if not ack.duplicate:  # a re-publish (after a crash) is not this commit's latency
            lag = (dt.datetime.now(dt.UTC) - message.at).total_seconds()
            self._metrics.outbox_publish_seconds.observe(max(0.0, lag))
        log.debug(
            "outbox event published",
            extra={"outbox_id": event.id, "seq": ack.seq, "duplicate": bool(ack.duplicate)},
        )
        return True

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = now
        removed = await self._store.prune_published(utcnow() - self._retention)
        if removed:
            log.info("outbox pruned", extra={"rows": removed})
