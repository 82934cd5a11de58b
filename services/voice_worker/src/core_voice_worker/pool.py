"""The pool process's own runtime beside the LiveKit worker: one NATS connection, the
config mirror and its feeds, the local link its calls use, the call-event publisher,
and the health endpoints.

Why the pool and not each call holds this: a job runs in a process of its own that ends
with the call, so anything it fetched or subscribed to would be redone per call and
forgotten after it. The pool lives as long as the worker, sees every change as it is
announced, and answers a starting call over a local socket in well under a millisecond
(docs/design.md has the numbers).
"""

import asyncio
import contextlib
import datetime as dt
import logging
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import connect
from core_voice_contracts.events import (
    ConfigGetError,
    ConfigGetReply,
    ConfigHeld,
    WorkerEvent,
    WorkerStatus,
)
from core_voice_contracts.rpc import get_runtime_config
from core_voice_contracts.tasks import TaskSet
from core_voice_worker.call_events import CallEventPublisher
from core_voice_worker.feeds import PoolFeeds
from core_voice_worker.health import HealthServer
from core_voice_worker.link import LinkServer
from core_voice_worker.metrics import ERROR_TYPES, ErrorType, PoolMetrics
from core_voice_worker.mirror import ConfigMirror, Held, Key
from core_voice_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 10.0
ACCEPTED_REMEMBERED = 1_000
"""Assignment times kept for calls whose `CallStarted` has not come yet."""


class WorkerView(Protocol):
    """What the runtime reads of the LiveKit worker it serves (`server.PoolServer`)."""

    @property
    def registered(self) -> bool: ...

    @property
    def draining(self) -> bool: ...

    def active_call_count(self) -> int: ...


class PoolRuntime:
    def __init__(self, settings: WorkerSettings, link_path: Path | None = None) -> None:
        self.settings = settings
        self.capacity = settings.max_concurrency
        self.link_path = link_path or Path(tempfile.mkdtemp(prefix="corevoice-pool-")) / "link"
        self.worker: WorkerView | None = None
        self.peak_calls = 0
        self.start_error: str | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self.tasks = TaskSet()
        """Every task the pool runs (heartbeat, event publisher, fetches, reconciles):
        cancelled on stop; one that died is reported by /healthz."""
        self.mirror = ConfigMirror(
            self._fetch,
            timeout=settings.config_timeout_s,
            max_entries=settings.config_memory_size,
            tasks=self.tasks,
        )
        self.mirror.on_stale = self._on_stale
        self.mirror.on_held = self._on_held
        self.metrics = PoolMetrics(settings.worker_id)
        self._accepted: OrderedDict[str, dt.datetime] = OrderedDict()
        self._registered = False
        self._told_full = False
        self.turned_away = 0
        """Offers answered unavailable (`WorkerStatus.turned_away`)."""
        self._offers_told: tuple[bool, int] | None = None
        """(full, turned_away) as last announced at once."""
        self._offers_pending = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._feeds: PoolFeeds | None = None
        self._publisher: CallEventPublisher | None = None
        self._link: LinkServer | None = None
        self.health = HealthServer(self, settings.health_host, settings.health_port)

    @property
    def publisher(self) -> CallEventPublisher:
        assert self._publisher is not None, "runtime not started"
        return self._publisher

    @property
    def link(self) -> LinkServer:
        assert self._link is not None, "runtime not started"
        return self._link

    async def start(self, worker: WorkerView | None = None) -> None:
        self.worker = worker
        try:
            await self._start()
        except Exception as exc:
            self.start_error = type(exc).__name__
            log.exception("pool runtime failed to start")
            raise

    async def _start(self) -> None:
        self._nc, self._js = await self._connect()
        self._publisher = CallEventPublisher(
            self._js, max_queued=self.settings.event_queue_size, tasks=self.tasks
        )
        self._publisher.start()
        self._link = LinkServer(
            self.link_path,
            self.mirror,
            self._publisher,
            worker_id=self.settings.worker_id,
            on_call_opened=self._call_opened,
            metrics=self.metrics,
            accepted_at=self.accepted_at,
        )
        await self._link.start()
        self._feeds = PoolFeeds(
            self._nc, self._js, self.mirror, agent_name=self.settings.agent_name, tasks=self.tasks
        )
        await self._feeds.start()
        await self.health.start()
        self._heartbeat = self.tasks.spawn(self._beat(), name="pool.heartbeat")
        log.info(
            "pool runtime started",
            extra={
                "worker_id": self.settings.worker_id,
                "health": f"{self.settings.health_host}:{self.health.port}",
                "capacity": self.capacity,
            },
        )

    async def _connect(self) -> tuple[Client, JetStreamContext]:
        """NATS, waited for up to WORKER_STARTUP_TIMEOUT_S (the client retries every
        0.5 s): a pool starting beside its bus waits for it; one that never comes exits 1."""
        return await asyncio.wait_for(
            connect(
                self.settings.nats_access(),
                name=f"voice-worker:{self.settings.worker_id}",
                on_disconnected=self._disconnected,
                on_reconnected=self._reconnected,
            ),
            self.settings.startup_timeout_s,
        )

    async def stop(self) -> None:
        """After the calls ended (or the drain deadline passed): publish what is left,
        and a last heartbeat saying this pool is going."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._nc is not None and self._nc.is_connected:
            await self._send(subjects.WORKER_STATUS, self.worker_status(final=True))
        if self._link is not None:
            await self._link.stop()
        if self._publisher is not None:
            await self._publisher.flush(FLUSH_TIMEOUT_S)
            await self._publisher.stop()
        if self._feeds is not None:
            await self._feeds.stop()
        self.mirror.cancel()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
        await self.health.stop()
        await self.tasks.cancel_all()

    # --- state ------------------------------------------------------------------------

    def active_calls(self) -> int:
        return self.worker.active_call_count() if self.worker is not None else 0

    def draining(self) -> bool:
        return self.worker is not None and self.worker.draining

    def utilisation(self) -> float:
        """Active calls over capacity: what autoscaling scales the pool on."""
        return self.active_calls() / self.capacity if self.capacity else 0.0

    def error_counts(self) -> dict[str, int]:
        """``corevoice_worker_errors_total`` by type: every type, counted where it happens."""
        counts = dict.fromkeys(ERROR_TYPES, 0)
        counts.update(self.metrics.errors)
        counts[ErrorType.CONFIG_FETCH] = self.mirror.stats.fetch_errors
        counts[ErrorType.CALL_LOST] = self._link.lost_calls if self._link else 0
        if self._publisher is not None:
            counts[ErrorType.EVENT_PUBLISH] = self._publisher.stats.retries
            counts[ErrorType.EVENT_DROPPED] = self._publisher.stats.dropped
        return counts

    def worker_status(self, *, final: bool = False) -> WorkerStatus:
        """The heartbeat now; ``final``: the pool is going (it counts as draining)."""
        return WorkerStatus(
            worker_id=self.settings.worker_id,
            capacity=self.capacity,
            active_calls=self.active_calls(),
            draining=final or self.draining(),
            interval_s=self.settings.status_interval_s,
            stale_configs=self.mirror.stale_count(),
            agent_name=self.settings.agent_name,
            full=final or self.full(),
            turned_away=self.turned_away,
        )

    # --- what LiveKit may offer this pool -------------------------------------------------

    def full(self) -> bool:
        """LiveKit offers this pool nothing now (`WorkerStatus.full`)."""
        return not self._registered or self._told_full or self.draining()

    def note_registered(self, registered: bool) -> None:
        """The pool's LiveKit connection registered (True) or closed (False)."""
        self._registered = registered
        if not registered:
            self._told_full = False  # a new registration starts available
        self._announce_offers()

    def note_told_full(self, full: bool) -> None:
        """The pool told LiveKit it is full (its cap reached, draining) or available."""
        self._told_full = full
        self._announce_offers()

    def note_turned_away(self) -> None:
        """The pool answered an offer unavailable: if no other pool took it, LiveKit
        dropped the launch, and only a new dispatch is offered again."""
        self.turned_away += 1
        self._announce_offers()

    def _announce_offers(self) -> None:
        """A heartbeat at once when what LiveKit may offer this pool changed: the
        dispatcher re-offers a waiting dispatch only if a launch may have found no pool.
        One send is pending at a time, and it reads the state when it runs (a burst of
        offers turned away is one heartbeat, not hundreds)."""
        if self._nc is None or not self._nc.is_connected or self._offers_pending:
            return  # not started, stopping or reconnecting: the next heartbeat says it
        if (self.full(), self.turned_away) == self._offers_told:
            return
        self._offers_pending = True
        self.tasks.spawn(self._send_offers(), name="pool.offers")

    async def _send_offers(self) -> None:
        try:
            status = self.worker_status()
            self._offers_told = (status.full, status.turned_away)
        finally:
            self._offers_pending = False
        await self._send(subjects.WORKER_STATUS, status)

    def note_accepted(self, call_id: str) -> None:
        """LiveKit assigned this pool the call now (its `CallStarted.accepted_at`)."""
        self._accepted[call_id] = dt.datetime.now(dt.UTC)
        while len(self._accepted) > ACCEPTED_REMEMBERED:
            self._accepted.popitem(last=False)

    def accepted_at(self, call_id: str) -> dt.datetime | None:
        return self._accepted.pop(call_id, None)

    def announce_status(self) -> None:
        """Publish a heartbeat now (draining began), not at the next interval."""
        if self._nc is not None:
            self._spawn_send(subjects.WORKER_STATUS, self.worker_status())

    def bad_messages(self) -> dict[tuple[str, str], int]:
        """Feed messages skipped as not understood, by (feed, reason) (`PoolFeeds`)."""
        return dict(self._feeds.bad_messages) if self._feeds is not None else {}

    def not_ready(self) -> list[str]:
        problems = []
        if self.worker is None or not self.worker.registered:
            problems.append("not registered with LiveKit")
        if self.draining():
            problems.append("draining")
        if self._nc is None or not self._nc.is_connected:
            problems.append("NATS not connected")
        if not self.mirror.live:
            problems.append("config feed not live")
        return problems

    def status(self) -> dict[str, Any]:
        stats = self.mirror.stats
        return {
            "worker_id": self.settings.worker_id,
            "agent_name": self.settings.agent_name,
            "executor": self.settings.executor,
            "capacity": self.capacity,
            "active_calls": self.active_calls(),
            "peak_calls": self.peak_calls,
            "linked_calls": self._link.call_count() if self._link else 0,
            "lost_calls": self._link.lost_calls if self._link else 0,
            "draining": self.draining(),
            "ready": not self.not_ready(),
            "nats_connected": self._nc is not None and self._nc.is_connected,
            "mirror": {
                "configs": len(self.mirror),
                "stale": self.mirror.stale_count(),
                "live": self.mirror.live,
                "reconciles": self._feeds.reconciles if self._feeds else 0,
                "echoes": self._feeds.echoes if self._feeds else 0,
                "reconnected_at": self._feeds.reconnected_at if self._feeds else None,
                "reconciled_at": self._feeds.reconciled_at if self._feeds else None,
                "hits": stats.hits,
                "misses": stats.misses,
                "refused": stats.refused,
                "stale_served": stats.stale_served,
                "fetches": stats.fetches,
                "fetch_errors": stats.fetch_errors,
                "gone": {agent: reason.value for agent, reason in self.mirror.gone().items()},
            },
            "events": {
                "queued": self._publisher.queued if self._publisher else 0,
                "published": self._publisher.stats.published if self._publisher else 0,
                "duplicates": self._publisher.stats.duplicates if self._publisher else 0,
                "dropped": self._publisher.stats.dropped if self._publisher else 0,
            },
        }

    def note_active(self, count: int) -> None:
        self.peak_calls = max(self.peak_calls, count)

    # --- internals --------------------------------------------------------------------

    async def _fetch(
        self, agent_id: str, campaign_id: str | None, min_version: int
    ) -> ConfigGetReply:
        assert self._nc is not None
        started = time.perf_counter()
        try:
            return await get_runtime_config(
                self._nc,
                agent_id,
                campaign_id=campaign_id,
                min_version=min_version,
                timeout=self.settings.config_timeout_s,
            )
        except NatsError as exc:  # closed or reconnecting: the same as no answer
            return ConfigGetError(error=f"bus_unavailable:{type(exc).__name__}", retryable=True)
        finally:
            self.metrics.fetched(time.perf_counter() - started)

    async def _beat(self) -> None:
        while True:
            await self._send(subjects.WORKER_STATUS, self.worker_status())
            await asyncio.sleep(self.settings.status_interval_s)

    async def _send(self, subject: str, event: WorkerEvent) -> None:
        """Core NATS, best effort: a heartbeat or ConfigHeld lost is replaced by the next
        one, and never holds up a call."""
        assert self._nc is not None
        try:
            await self._nc.publish(subject, codec.encode(event))
        except NatsError as exc:
            self.metrics.error(ErrorType.STATUS_PUBLISH)
            log.debug("worker event not sent", extra={"error": type(exc).__name__})

    def _spawn_send(self, subject: str, event: WorkerEvent) -> None:
        self.tasks.spawn(self._send(subject, event), name="pool.send")

    def _on_held(self, held: Held) -> None:
        if self._nc is None:
            return
        self._spawn_send(
            subjects.CONFIG_HELD,
            ConfigHeld(
                at=dt.datetime.fromtimestamp(held.held_at, dt.UTC),
                worker_id=self.settings.worker_id,
                agent_id=held.agent_id,
                tenant_id=held.tenant_id,
                version=held.version,
                changed_at=held.changed_at,
            ),
        )

    def _call_opened(self, linked: int) -> None:
        self.note_active(max(linked, self.active_calls()))

    def _on_stale(self, key: Key, error: str) -> None:
        log.warning(
            "config stale: serving the last known good version",
            extra={"agent_id": key[0], "campaign_id": key[1], "error": error},
        )

    def _disconnected(self) -> None:
        if self._feeds is not None:
            self._feeds.disconnected()

    def _reconnected(self) -> None:
        if self._feeds is not None:
            self._feeds.reconnected()
