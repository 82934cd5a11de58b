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

A pool can also die after LiveKit assigned it the job and before its `JobAccepted` went
out. The capacity watch then sees the job taken in LiveKit's dispatch listing and hands
its LiveKit job id (the call id) here with no pool (`note_taken`). Such a call, neither
accepted nor started nor ended within three default heartbeat intervals plus the grace
period, is looked for in its room: its agent participant there means the call runs (its
loss is ``participant_left``'s to report); none, and it is reported ``worker_lost`` too.

In memory, like that check: calls accepted before this process started are not followed.
Every replica follows every pool; JetStream keeps one report per call.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from livekit import api
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from core_voice_contracts import subjects
from core_voice_contracts.codec import decode_call_event, decode_worker_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import (
    MISSED_HEARTBEATS,
    CallEvent,
    CallFailed,
    CallFailure,
    JobAccepted,
    JobRequested,
    WorkerEvent,
    WorkerStatus,
)
from core_voice_contracts.ids import is_token
from core_voice_contracts.room import agent_identity
from core_voice_contracts.tasks import TaskSet
from core_voice_dispatcher.calls import WorkerLostReports
from core_voice_dispatcher.livekit_client import LIVEKIT_ERRORS, LiveKitClient

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
"""A pool's heartbeat interval until its first `WorkerStatus` says otherwise."""
MAX_FOLLOWED = 10_000
"""Unstarted calls followed at once; past it the oldest is dropped (counted)."""
MAX_AGE_S = 900.0
"""A call accepted this long ago and still unstarted, on a pool that is alive, is dropped."""


AgentInRoom = Callable[[JobAccepted], Awaitable[bool | None]]
Handler = Callable[[Msg], Awaitable[None]]
T = TypeVar("T")


@dataclass(slots=True)
class _Accepted:
    event: JobAccepted
    at: float
    """When followed, or last found undecidable in LiveKit (the wait counts from it)."""
    since: float
    """When first followed (for `MAX_AGE_S`)."""


class UnstartedCalls:
    """Accepted, not yet started calls by call id, and when each pool was last heard."""

    def __init__(
        self,
        reports: WorkerLostReports,
        clock: Callable[[], float] = time.monotonic,
        agent_in_room: AgentInRoom | None = None,
    ) -> None:
        self._reports = reports
        self._clock = clock
        self._agent_in_room = agent_in_room
        """Whether a call's agent participant is in its room (None: unknown, ask again)."""
        self._accepted: OrderedDict[str, _Accepted] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        """Calls whose start or end was seen (the latest `MAX_FOLLOWED`): never followed
        again from LiveKit's listing."""
        self._heard: dict[str, tuple[float, float]] = {}
        """worker id -> (last heard, its heartbeat interval)."""
        self._tasks = TaskSet()
        self._subs: list[Subscription] = []
        self.status_sinks: list[Callable[[WorkerStatus], None]] = []
        """Also told every pool heartbeat (one subscription for both): the capacity
        watch's `pool_offers.PoolOffers`."""
        self.counts: Counter[str] = Counter()
        """``followed``, ``started`` (or ended: no longer followed), ``lost`` (reported),
        ``dropped`` (too many or too old), ``ignored`` (not a message of the feed);
        ``taken_unseen`` (followed from LiveKit's listing, no pool known), ``in_room``
        (such a call's agent was in the room: not lost), ``room_unknown`` (LiveKit could
        not say; asked again later)."""

    def followed(self) -> int:
        return len(self._accepted)

    # --- the feeds -------------------------------------------------------------------

    def note_accepted(self, event: JobAccepted) -> None:
        if not is_token(event.call_id):
            return
        known = self._accepted.get(event.call_id)
        if known is not None and known.event.worker_id:
            return
        if known is not None:  # taken per LiveKit first: now its pool is known
            del self._accepted[event.call_id]
        now = self._clock()
        self._accepted[event.call_id] = _Accepted(event, now, now)
        self.counts["followed"] += 1
        while len(self._accepted) > MAX_FOLLOWED:
            self._accepted.popitem(last=False)
            self.counts["dropped"] += 1

    def note_taken(self, job: JobRequested, agent_id: str, call_ids: list[str]) -> None:
        """LiveKit lists the job taken, and no `JobAccepted` came: follow its calls with
        no pool (see the module docstring)."""
        for call_id in call_ids:
            if call_id in self._accepted or call_id in self._seen or not is_token(call_id):
                continue
            self.note_accepted(
                JobAccepted(
                    job_id=job.job_id,
                    room_name=job.room_name,
                    agent_id=agent_id,
                    call_id=call_id,
                    worker_id="",
                    campaign_id=job.campaign_id,
                )
            )
            self.counts["taken_unseen"] += 1

    def note_call(self, call_id: str) -> None:
        self._seen[call_id] = None
        self._seen.move_to_end(call_id)
        while len(self._seen) > MAX_FOLLOWED:
            self._seen.popitem(last=False)
        if self._accepted.pop(call_id, None) is not None:
            self.counts["started"] += 1

    def note_status(self, status: WorkerStatus) -> None:
        self._heard[status.worker_id] = (self._clock(), max(status.interval_s, 0.1))

    # --- the check -------------------------------------------------------------------

    def due(self) -> list[tuple[JobAccepted, float, float]]:
        """Calls whose pool is gone, each with how long it has not been heard from and
        when it was first followed; taken out of what is followed."""
        now = self._clock()
        grace = self._reports.grace_s
        out = []
        for call_id, accepted in list(self._accepted.items()):
            if now - accepted.since > MAX_AGE_S:
                del self._accepted[call_id]
                self.counts["dropped"] += 1
                continue
            worker = accepted.event.worker_id  # "": no pool said it took the call
            heard, interval = self._heard.get(worker, (accepted.at, DEFAULT_INTERVAL_S))
            if now - max(heard, accepted.at) > MISSED_HEARTBEATS * interval + grace:
                del self._accepted[call_id]
                out.append((accepted.event, now - heard, accepted.since))
        return out

    async def _sweep(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            for event, silent, since in self.due():
                if not event.worker_id and not await self._unseen_lost(event, since):
                    continue
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

    async def _unseen_lost(self, event: JobAccepted, since: float) -> bool:
        """A call no pool said it took: lost unless its agent is in the room."""
        present = None if self._agent_in_room is None else await self._agent_in_room(event)
        if present is None:  # LiveKit cannot say now: ask again after another wait
            self.counts["room_unknown"] += 1
            self._accepted[event.call_id] = _Accepted(event, self._clock(), since)
            return False
        if present:
            self.counts["in_room"] += 1  # running: participant_left covers its loss
            return False
        return True

    async def follow(self, nc: Client, every_s: float = 1.0) -> None:
        """Subscribe to the calls' and pools' feeds and start the periodic check (the
        pools' `JobAccepted` come through `capacity.follow_accepted_jobs`)."""

        def feed(decode: Callable[[bytes], T], handle: Callable[[T], None]) -> Handler:
            async def on_message(msg: Msg) -> None:
                try:
                    event = decode(msg.data)
                except DecodeError:
                    self.counts["ignored"] += 1
                    return
                handle(event)

            return on_message

        def on_call(event: CallEvent) -> None:
            self.note_call(event.call_id)

        def on_worker(event: WorkerEvent) -> None:
            if isinstance(event, WorkerStatus):
                self.note_status(event)
                for sink in self.status_sinks:
                    sink(event)

        calls = feed(decode_call_event, on_call)
        self._subs = [
            await nc.subscribe(subjects.CALLS_STARTED_ALL, cb=calls),
            await nc.subscribe(subjects.CALLS_ENDED_ALL, cb=calls),
            await nc.subscribe(subjects.CALLS_FAILED_ALL, cb=calls),
            await nc.subscribe(subjects.WORKER_STATUS, cb=feed(decode_worker_event, on_worker)),
        ]
        self._tasks.spawn(self._sweep(every_s), name="unstarted-calls")

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(NatsError, TimeoutError):  # a closing connection
                await sub.unsubscribe()
        await self._tasks.cancel_all()


def agent_in_room(lk: LiveKitClient) -> AgentInRoom:
    """Asks LiveKit whether a call's agent participant is in its room: False when the
    room is gone or the agent is not there, None when LiveKit cannot say."""

    async def check(event: JobAccepted) -> bool | None:
        try:
            if not await lk.room_listing.rooms(event.room_name):
                return False
            listed = await lk.room.list_participants(
                api.ListParticipantsRequest(room=event.room_name)
            )
        except LIVEKIT_ERRORS:
            return None
        identity = agent_identity(event.call_id)
        return any(p.identity == identity for p in listed.participants)

    return check
