"""The pull consumers that feed job messages to the dispatcher, and their configuration.

`Lane` works one pull consumer with bounded concurrency; `LiveConsumer` keeps the
durable consumer (``DISPATCHER_CONSUMER_NAME``) alive under it, re-creating it if it is
deleted; `replay` runs operators' replay consumers on lanes of their own. Kept apart from
`dispatch` (what a job message *means*) because none of it knows what a job is: it hands
each message to a `Handler` and owns the task that runs it.
"""

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from core_voice_contracts import subjects
from core_voice_contracts.streams import VOICE_JOBS
from core_voice_contracts.tasks import TaskSet
from core_voice_dispatcher.errors import ConfigurationError
from core_voice_dispatcher.outcomes import RETRY_MAX_S
from core_voice_dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)

SERVER_DELIVER_HEADROOM = 4
"""The server redelivers a few times past our own budget, so that a crash during the last
attempt still ends in a recorded rejection instead of a silent drop."""

Handler = Callable[[Msg], Awaitable[None]]


def consumer_config(
    settings: DispatcherSettings, start: dt.datetime | None = None
) -> ConsumerConfig:
    """The live consumer; ``start`` only matters when it is created (see lookback)."""
    return ConsumerConfig(
        name=settings.consumer_name,
        durable_name=settings.consumer_name,
        description="Core Voice dispatcher: JobRequested -> LiveKit agent dispatch",
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL if start is None else DeliverPolicy.BY_START_TIME,
        opt_start_time=start,
        filter_subject=subjects.JOBS_REQUESTED_ALL,
        max_deliver=settings.max_deliver + SERVER_DELIVER_HEADROOM,
        ack_wait=settings.ack_wait_s,
        max_ack_pending=max_ack_pending(settings),
    )


def max_ack_pending(settings: DispatcherSettings) -> int:
    """Jobs in flight plus jobs held while they wait for a worker (`capacity`)."""
    waiting = settings.capacity_max_waiting if settings.capacity_wait_s > 0 else 0
    return max(1000, 4 * settings.max_concurrency) + waiting


async def ensure_consumer(settings: DispatcherSettings, js: JetStreamContext) -> None:
    """Create the durable consumer, or bring its editable settings up to date.

    A new one starts ``consumer_lookback_s`` back; an existing one keeps its position.
    """
    for _ in range(3):
        try:
            info = await js.consumer_info(VOICE_JOBS, settings.consumer_name)
        except NotFoundError:
            start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settings.consumer_lookback_s)
            try:
                await js.add_consumer(VOICE_JOBS, consumer_config(settings, start))
            except BadRequestError:  # another replica created it a moment ago
                continue
            return
        wanted = consumer_config(settings)
        wanted.deliver_policy = info.config.deliver_policy
        wanted.opt_start_time = info.config.opt_start_time
        wanted.opt_start_seq = info.config.opt_start_seq
        current = info.config
        if (current.ack_wait, current.max_deliver, current.max_ack_pending) != (
            wanted.ack_wait,
            wanted.max_deliver,
            wanted.max_ack_pending,
        ):
            await js.add_consumer(VOICE_JOBS, wanted)
        return
    raise ConfigurationError("could not create the dispatcher's durable consumer")


class Lane:
    """One pull consumer worked with bounded concurrency; its tasks are owned and awaited."""

    def __init__(
        self,
        js: JetStreamContext,
        name: str,
        sub: JetStreamContext.PullSubscription,
        handle: Handler,
        concurrency: int,
    ) -> None:
        self.name = name
        self._js = js
        self._sub = sub
        self._handle = handle
        self._concurrency = concurrency
        self._tasks = TaskSet()
        self._stopping = asyncio.Event()
        self.gone = False
        """The consumer was deleted under us (a finished or removed replay, an accident)."""

    def busy(self) -> int:
        return sum(1 for t in self._tasks.tasks if not t.done())

    async def run(self) -> None:
        backlog = 0
        while not self._stopping.is_set():
            free = self._concurrency - self.busy()
            if free <= 0:
                await asyncio.wait(self._tasks.tasks, return_when=asyncio.FIRST_COMPLETED)
                continue
            # One message at a time while idle: a batch request waits for its batch to
            # fill (or expire) before returning, which would hold a lone job back. With a
            # backlog, take as many as are waiting and there are free slots for.
            batch = max(1, min(free, backlog))
            try:
                msgs = await self._sub.fetch(batch=batch, timeout=1.0)
            except TimeoutError:
                continue
            except NatsError:
                # A bus outage (retry) or the consumer deleted (stop): ask which.
                if await self._deleted():
                    self.gone = True
                    return
                await asyncio.sleep(0.5)
                continue
            backlog = msgs[-1].metadata.num_pending if msgs else 0
            for msg in msgs:
                self._tasks.spawn(self._run_one(msg), name=f"{self.name}-job")

    async def _deleted(self) -> bool:
        try:
            await self._js.consumer_info(VOICE_JOBS, self.name)
        except NotFoundError:
            return True
        except (NatsError, TimeoutError):
            return False
        return False

    async def _run_one(self, msg: Msg) -> None:
        try:
            await self._handle(msg)
        except asyncio.CancelledError:
            # Shutting down mid-job: hand it back now rather than after ack_wait.
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except Exception:
            log.exception("job handler failed", extra={"lane": self.name})
            with contextlib.suppress(Exception):
                await msg.nak(delay=RETRY_MAX_S)

    def stop(self) -> None:
        self._stopping.set()

    async def drain(self, timeout: float) -> None:
        """Let in-flight jobs finish for up to ``timeout`` s, then cancel the rest."""
        pending = {t for t in self._tasks.tasks if not t.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        with contextlib.suppress(NatsError, TimeoutError):
            await self._sub.unsubscribe()


class LiveConsumer:
    """The durable consumer's lane; if the consumer is deleted under it, it is re-created.

    Deleting it by accident (``nats consumer rm``) must not silently stop dispatching: it
    comes back with ``consumer_lookback_s`` of history, so jobs stored meanwhile are seen.
    """

    def __init__(self, settings: DispatcherSettings, js: JetStreamContext, handle: Handler) -> None:
        self._settings = settings
        self._js = js
        self._handle = handle
        self._stopping = asyncio.Event()
        self._lane: Lane | None = None
        self.retiring = TaskSet()
        """Lanes of a deleted consumer, finishing their jobs."""

    async def start(self) -> None:
        """Create or update the consumer and bind to it (startup fails if it cannot)."""
        await ensure_consumer(self._settings, self._js)
        sub = await self._js.pull_subscribe_bind(
            durable=self._settings.consumer_name, stream=VOICE_JOBS
        )
        self._lane = Lane(
            self._js,
            self._settings.consumer_name,
            sub,
            self._handle,
            self._settings.max_concurrency,
        )

    async def run(self) -> None:
        while not self._stopping.is_set():
            if self._lane is None:
                try:
                    await self.start()
                except (NatsError, TimeoutError):
                    await asyncio.sleep(1.0)
                    continue
            assert self._lane is not None
            await self._lane.run()
            if not self._lane.gone:
                return
            log.error(
                "dispatch consumer deleted: re-creating it", extra={"consumer": self._lane.name}
            )
            # Jobs in flight finish on their own (their acks go nowhere; the new consumer
            # sees them again and finds them settled) while the new lane starts.
            drain = self._lane.drain(self._settings.drain_timeout_s)
            self.retiring.spawn(drain, name=f"{self._lane.name}-retiring")
            self._lane = None

    def stop(self) -> None:
        self._stopping.set()
        if self._lane is not None:
            self._lane.stop()

    async def drain(self, timeout: float) -> None:
        if self._lane is not None:
            await self._lane.drain(timeout)
        if self.retiring:
            await asyncio.wait(self.retiring.tasks, timeout=timeout)
