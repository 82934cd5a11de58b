"""Calls a pool took and never started, when the pool vanished: ``worker_lost`` as well.

`calls.WorkerLostReports` covers a call whose agent was in the room: LiveKit posts its
``participant_left``. A pool killed between LiveKit's assignment (its `JobAccepted`) and
its agent joining the room leaves no participant behind, so no webhook says anything and
the job ends with no call event (seen in tests/cluster: a pool SIGKILLed while starting
calls). So the dispatcher follows, on core NATS, the pools' heartbeats (`WorkerStatus`),
their `JobAccepted`, and the calls' starts and ends. A call accepted by a pool that has
not been heard from for three of its heartbeat intervals plus the grace period, and that
neither started nor ended, is reported `CallFailed(worker_lost)` under the call's outcome
message id: the first report of a call's end wins, as for the participant check.

In memory, like that check: calls accepted before this process started are not followed.
Every replica follows every pool; JetStream keeps one report per call.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from core_voice_contracts import subjects
from core_voice_contracts.codec import decode_call_event, decode_job_event, decode_worker_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import CallFailed, CallFailure, JobAccepted, WorkerStatus
from core_voice_contracts.ids import is_token
from core_voice_contracts.tasks import TaskSet
from core_voice_dispatcher.calls import WorkerLostReports

log = logging.getLogger(__name__)

MISSED_HEARTBEATS = 3
"""A pool not heard from for this many of its intervals is gone (as telemetry counts it)."""
DEFAULT_INTERVAL_S = 5.0
"""A pool's heartbeat interval until its first `WorkerStatus` says otherwise."""
MAX_FOLLOWED = 10_000
"""Unstarted calls followed at once; past it the oldest is dropped (counted)."""
MAX_AGE_S = 900.0
"""A call accepted this long ago and still unstarted, on a pool that is alive, is dropped."""


@dataclass(slots=True)
class _Accepted:
    event: JobAccepted
    at: float


class UnstartedCalls:
    """Accepted, not yet started calls by call id, and when each pool was last heard."""

    def __init__(
        self,
        reports: WorkerLostReports,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reports = reports
        self._clock = clock
        self._accepted: OrderedDict[str, _Accepted] = OrderedDict()
        self._heard: dict[str, tuple[float, float]] = {}
        """worker id -> (last heard, its heartbeat interval)."""
        self._tasks = TaskSet()
        self._subs: list[Subscription] = []
        self.counts: Counter[str] = Counter()
        """``followed``, ``started`` (or ended: no longer followed), ``lost`` (reported),
        ``dropped`` (too many or too old), ``ignored`` (not a message of the feed)."""

    def followed(self) -> int:
        return len(self._accepted)

    # --- the feeds -------------------------------------------------------------------

    def note_accepted(self, event: JobAccepted) -> None:
        if not is_token(event.call_id) or event.call_id in self._accepted:
            return
        self._accepted[event.call_id] = _Accepted(event, self._clock())
        self.counts["followed"] += 1
        while len(self._accepted) > MAX_FOLLOWED:
            self._accepted.popitem(last=False)
            self.counts["dropped"] += 1

    def note_call(self, call_id: str) -> None:
        if self._accepted.pop(call_id, None) is not None:
            self.counts["started"] += 1

    def note_status(self, status: WorkerStatus) -> None:
        self._heard[status.worker_id] = (self._clock(), max(status.interval_s, 0.1))

    # --- the check -------------------------------------------------------------------

    def due(self) -> list[tuple[JobAccepted, float]]:
        """Calls whose pool is gone, each with how long it has not been heard from;
        taken out of what is followed."""
        now = self._clock()
        grace = self._reports.grace_s
        out = []
        for call_id, accepted in list(self._accepted.items()):
            last, interval = self._heard.get(
                accepted.event.worker_id, (accepted.at, DEFAULT_INTERVAL_S)
            )
            silent = now - max(last, accepted.at)
            if silent > MISSED_HEARTBEATS * interval + grace:
                del self._accepted[call_id]
                out.append((accepted.event, now - last))
            elif now - accepted.at > MAX_AGE_S:
                del self._accepted[call_id]
                self.counts["dropped"] += 1
        return out

    async def _sweep(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            for event, silent in self.due():
                self.counts["lost"] += 1
                report = CallFailed(
                    call_id=event.call_id,
                    job_id=event.job_id,
                    room_name=event.room_name,
                    agent_id=event.agent_id,
                    error=CallFailure.WORKER_LOST.value,
                    detail=(
                        f"its pool took the job and was not heard from for {silent:.0f} s "
                        "before the call started"
                    ),
                    campaign_id=event.campaign_id,
                    worker_id=event.worker_id,
                )
                self._tasks.spawn(self._reports.report(report), name=f"unstarted-{event.call_id}")

    async def follow(self, nc: Client, every_s: float = 1.0) -> None:
        """Subscribe to the feeds and start the periodic check."""

        async def on_accepted(msg: Msg) -> None:
            try:
                event = decode_job_event(msg.data)
            except DecodeError:
                self.counts["ignored"] += 1
                return
            if isinstance(event, JobAccepted):
                self.note_accepted(event)

        async def on_call(msg: Msg) -> None:
            try:
                self.note_call(decode_call_event(msg.data).call_id)
            except DecodeError:
                self.counts["ignored"] += 1

        async def on_status(msg: Msg) -> None:
            try:
                event = decode_worker_event(msg.data)
            except DecodeError:
                self.counts["ignored"] += 1
                return
            if isinstance(event, WorkerStatus):
                self.note_status(event)

        self._subs = [
            await nc.subscribe(subjects.JOBS_ACCEPTED_ALL, cb=on_accepted),
            await nc.subscribe(subjects.CALLS_STARTED_ALL, cb=on_call),
            await nc.subscribe(subjects.CALLS_ENDED_ALL, cb=on_call),
            await nc.subscribe(subjects.CALLS_FAILED_ALL, cb=on_call),
            await nc.subscribe(subjects.WORKER_STATUS, cb=on_status),
        ]
        self._tasks.spawn(self._sweep(every_s), name="unstarted-calls")

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(NatsError, TimeoutError):  # a closing connection
                await sub.unsubscribe()
        await self._tasks.cancel_all()
