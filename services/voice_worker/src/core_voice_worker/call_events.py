"""Publishing call events (and `JobAccepted`) from the pool: in order, retried until
JetStream stores them.

Calls hand their events to the pool (over the local link) and go on; the pool keeps
them in a bounded queue while NATS is away, so a bus outage delays events but loses
none, up to ``max_queued``. Message ids make the retries safe: a call's start is stored
once, and its one terminal event (`CallEnded` or `CallFailed`) once, whoever reports it.
"""

import asyncio
import logging
from dataclasses import dataclass

from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from core_voice_contracts import subjects
from core_voice_contracts.bus import publish
from core_voice_contracts.events import (
    CallEnded,
    CallFailed,
    CallStarted,
    JobAccepted,
    call_outcome_msg_id,
    call_started_msg_id,
    job_accepted_msg_id,
)
from core_voice_contracts.tasks import TaskSet
from core_voice_contracts.tracing import (
    ATTR_AGENT_ID,
    ATTR_CALL_ID,
    ATTR_JOB_ID,
    ATTR_SUBJECT,
    SpanKind,
    context_from_traceparent,
    inject_headers,
    span,
    tracer,
)

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

CallEventT = CallStarted | CallEnded | CallFailed
"""What a call hands its pool over the link."""
PoolEventT = JobAccepted | CallEventT
"""What the pool publishes: its calls' events and its own `JobAccepted`."""
RETRY_DELAYS_S = (0.1, 0.25, 0.5, 1.0, 2.0)


def route(event: PoolEventT) -> tuple[str, str]:
    """(subject, JetStream message id) of a call event."""
    match event:
        case JobAccepted():
            return subjects.job_accepted(event.agent_id), job_accepted_msg_id(event.call_id)
        case CallStarted():
            return subjects.call_started(event.agent_id), call_started_msg_id(event.call_id)
        case CallEnded():
            return subjects.call_ended(event.agent_id), call_outcome_msg_id(event.call_id)
        case CallFailed():
            return subjects.call_failed(event.agent_id), call_outcome_msg_id(event.call_id)


@dataclass(slots=True)
class PublisherStats:
    published: int = 0
    duplicates: int = 0
    retries: int = 0
    dropped: int = 0


class CallEventPublisher:
    def __init__(
        self, js: JetStreamContext, *, max_queued: int = 10_000, tasks: TaskSet | None = None
    ) -> None:
        self._js = js
        self._tasks = tasks if tasks is not None else TaskSet()
        self._queue: asyncio.Queue[tuple[PoolEventT, str]] = asyncio.Queue(maxsize=max_queued)
        self._task: asyncio.Task[None] | None = None
        self.stats = PublisherStats()

    def start(self) -> None:
        self._task = self._tasks.spawn(self._run(), name="call-events")

    def submit(self, event: PoolEventT, *, traceparent: str = "") -> bool:
        """Queue ``event``, to be published in the trace ``traceparent`` names (the call's or
        the dispatch's); False (and counted, logged) when the queue is full."""
        try:
            self._queue.put_nowait((event, traceparent))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            log.error(
                "call event dropped: queue full",
                extra={"call_id": event.call_id, "event": type(event).__name__},
            )
            return False
        return True

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued event is stored (True) or ``timeout`` passes."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.error("call events not published at shutdown", extra={"queued": self.queued})
            return False
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            event, traceparent = await self._queue.get()
            try:
                await self._publish(event, traceparent)
            finally:
                self._queue.task_done()

    async def _publish(self, event: PoolEventT, traceparent: str) -> None:
        subject, msg_id = route(event)
        with span(
            _tracer,
            f"publish {type(event).__name__}",
            kind=SpanKind.PRODUCER,
            context=context_from_traceparent(traceparent),
            attributes={
                ATTR_SUBJECT: subject,
                ATTR_CALL_ID: event.call_id,
                ATTR_JOB_ID: event.job_id,
                ATTR_AGENT_ID: event.agent_id,
            },
        ):
            await self._publish_until_stored(event, subject, msg_id, inject_headers())

    async def _publish_until_stored(
        self, event: PoolEventT, subject: str, msg_id: str, headers: dict[str, str]
    ) -> None:
        attempt = 0
        while True:
            try:
                ack = await publish(
                    self._js, subject, event, msg_id=msg_id, headers=headers, timeout=2.0
                )
            except (NatsError, TimeoutError, OSError) as exc:
                delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
                attempt += 1
                self.stats.retries += 1
                if attempt == 1 or attempt % 20 == 0:
                    log.warning(
                        "call event publish failed; retrying",
                        extra={
                            "call_id": event.call_id,
                            "event": type(event).__name__,
                            "error": type(exc).__name__,
                            "attempt": attempt,
                        },
                    )
                await asyncio.sleep(delay)
                continue
            if ack.duplicate:
                self.stats.duplicates += 1
            else:
                self.stats.published += 1
            return
