"""Operators' replays of VOICE_JOBS, driven with the stock NATS CLI.

A replay is a pull consumer on VOICE_JOBS whose name starts with ``dispatcher-replay``
(``DISPATCHER_REPLAY_PREFIX``), created with ``nats consumer add``. Its deliver policy
is the start of the window (``--deliver 2h``, ``--deliver <stream seq>``); the end is an
optional consumer metadata entry, ``until`` (RFC 3339 time) or ``until_seq`` (a stream
sequence). The dispatcher notices it within ``POLL_S``, re-drives every job of the window
through the same idempotent handler as live traffic, at a lower concurrency so live calls
are never queued behind a replay, acknowledges jobs past the end untouched, and deletes
the consumer once every job of the window is settled. Exact commands:
docs/operations/nats-cli.md.
"""

import asyncio
import contextlib
import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerInfo
from nats.js.errors import NotFoundError

from core_voice_contracts.streams import VOICE_JOBS
from core_voice_contracts.tasks import TaskSet
from core_voice_dispatcher.consumer import Lane
from core_voice_dispatcher.dispatch import Dispatcher
from core_voice_dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)

POLL_S = 1.0
UNTIL = "until"
UNTIL_SEQ = "until_seq"


class ReplayConfigError(ValueError):
    """A replay consumer the dispatcher will not work through; the message says why."""


@dataclass(frozen=True, slots=True)
class WindowEnd:
    until: dt.datetime | None = None
    until_seq: int | None = None

    def passed(self, msg: Msg) -> bool:
        meta = msg.metadata
        if self.until_seq is not None and meta.sequence.stream > self.until_seq:
            return True
        return self.until is not None and meta.timestamp > self.until

    @property
    def bounded(self) -> bool:
        return self.until is not None or self.until_seq is not None


def window_end(info: ConsumerInfo) -> WindowEnd:
    """Read and check a replay consumer's configuration; raises `ReplayConfigError`."""
    config = info.config
    if config.deliver_subject:
        raise ReplayConfigError("replay consumers must be pull consumers (--pull)")
    if config.ack_policy != AckPolicy.EXPLICIT:
        raise ReplayConfigError("replay consumers need explicit acks (--ack explicit)")
    metadata = config.metadata or {}
    until: dt.datetime | None = None
    until_seq: int | None = None
    if UNTIL in metadata:
        try:
            until = dt.datetime.fromisoformat(metadata[UNTIL].replace("Z", "+00:00"))
        except ValueError:
            raise ReplayConfigError(f"metadata {UNTIL} is not an RFC 3339 time") from None
        if until.tzinfo is None:
            raise ReplayConfigError(f"metadata {UNTIL} needs a time zone (e.g. Z)")
    if UNTIL_SEQ in metadata:
        try:
            until_seq = int(metadata[UNTIL_SEQ])
        except ValueError:
            raise ReplayConfigError(f"metadata {UNTIL_SEQ} is not a stream sequence") from None
    return WindowEnd(until=until, until_seq=until_seq)


class Replays:
    """Finds replay consumers and works each through to its end, then removes it."""

    def __init__(
        self, settings: DispatcherSettings, js: JetStreamContext, dispatcher: Dispatcher
    ) -> None:
        self._settings = settings
        self._js = js
        self._dispatcher = dispatcher
        self.tasks = TaskSet()
        self._running: set[str] = set()
        """Replay consumers with a task in `tasks`."""
        self._refused: set[str] = set()
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                infos = await self._js.consumers_info(VOICE_JOBS)
            except (NatsError, TimeoutError):
                infos = []
            for info in infos:
                name = info.name
                if name.startswith(self._settings.replay_prefix) and name not in self._running:
                    self._start(info)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=POLL_S)

    def _start(self, info: ConsumerInfo) -> None:
        try:
            end = window_end(info)
        except ReplayConfigError as exc:
            if info.name not in self._refused:
                self._refused.add(info.name)
                log.warning(
                    "replay consumer ignored", extra={"consumer": info.name, "why": str(exc)}
                )
            return
        self._running.add(info.name)
        task = self.tasks.spawn(self._replay(info.name, end), name=f"replay-{info.name}")
        task.add_done_callback(lambda _: self._running.discard(info.name))

    async def _replay(self, name: str, end: WindowEnd) -> None:
        counts: Counter[str] = Counter()
        past_end = False

        async def handle(msg: Msg) -> None:
            nonlocal past_end
            if end.passed(msg):
                past_end = True
                counts["after_window"] += 1
                await msg.ack()
                return
            counts["handled"] += 1
            # No capacity watch: the live consumer's delivery of this job has one if it
            # needs it; two replicas must not both re-offer one job's dispatch.
            await self._dispatcher.handle(msg, watch=False)

        try:
            sub = await self._js.pull_subscribe_bind(durable=name, stream=VOICE_JOBS)
        except (NatsError, TimeoutError):
            return
        log.info("replay started", extra={"consumer": name, "bounded": end.bounded})
        lane = Lane(self._js, name, sub, handle, self._settings.replay_concurrency)
        # Lives only as long as this replay: cancelled and awaited in the finally below.
        pulling = asyncio.create_task(lane.run(), name=f"{name}-pull")
        try:
            while not self._stopping.is_set() and not pulling.done():
                await asyncio.sleep(POLL_S / 2)
                try:
                    info = await self._js.consumer_info(VOICE_JOBS, name)
                except NotFoundError:
                    log.info("replay removed", extra={"consumer": name, **counts})
                    return
                except (NatsError, TimeoutError):
                    continue
                caught_up = past_end or info.num_pending == 0
                if caught_up and info.num_ack_pending == 0 and lane.busy() == 0:
                    with contextlib.suppress(NatsError, TimeoutError):
                        await self._js.delete_consumer(VOICE_JOBS, name)
                    log.info("replay finished", extra={"consumer": name, **counts})
                    return
        finally:
            lane.stop()
            await lane.drain(self._settings.drain_timeout_s)
            pulling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pulling

    def stop(self) -> None:
        self._stopping.set()

    async def wait(self) -> None:
        if self.tasks:
            await asyncio.wait(self.tasks.tasks)
