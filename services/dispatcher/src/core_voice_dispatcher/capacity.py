"""Watching a dispatched job until a worker takes it, else ending it ``no_capacity``.

LiveKit (1.13.5) offers a dispatch to its workers once, when it is created: if every
worker of the agent name is full, or none is registered, the dispatch stays in the room
with no job, and a worker that frees up or registers later is never offered it. So after
`JobDispatched` the live consumer keeps the job message unacknowledged and watches the
room (``ListDispatch``: a worker that accepted shows as a job in the dispatch's
``state.jobs``). A dispatch nobody took is offered again by deleting and re-creating it
(the only way to make LiveKit offer it again), after 6 s, then every 5 s, until
``capacity_wait_s`` after the job was stored. Then the dispatch is removed,
`JobRejected(no_capacity)` published and the room deleted (unless
``capacity_keep_room``), so the caller is not left in a silent room.

``state.jobs`` lags: the first offer after LiveKit refreshed its list of agent names
(at most once a minute, or when the first worker of a name registers) only shows its
job ~5 s later, and a worker's job shows only once its job process runs, 2-5 s after the
assignment on a busy machine. So the pool publishes `JobAccepted` the moment LiveKit
assigns it a job; every dispatcher follows those (core NATS, `note_accepted`) and counts
the job taken at once (a waiting watch wakes on it). Before re-offering or rejecting,
the room's participants are read
too: an agent participant means taken. Either way a job a worker holds is never offered
to a second worker (two agents in one room) nor deleted under its worker.

A restart loses nothing: the job message is acknowledged only once the job is taken,
rejected or its room gone, and is kept from redelivery meanwhile (``in_progress``). After
a SIGTERM the watch hands the job back at once; after a crash, JetStream redelivers it
after ``ack_wait_s``. Either way the next delivery finds the dispatch in LiveKit and
resumes the watch, its deadline still counted from when the job was stored.

The first re-offer waits out LiveKit's own silent delay: once a minute LiveKit re-learns
which agent names have workers (``CheckEnabled``, 5 s), and a launch in that round can
stay pending, listed with no job, for up to 5 s. A re-offer then deleted a dispatch whose
launch was still to come: LiveKit offered the job anyway after the round (and terminated
it soon after), and the re-created dispatch too, so the pool got two jobs for one room.

The common path costs no LiveKit call: the pool's `JobAccepted` (~0.2 s after the
dispatch, 1-3 s in a burst) ends the watch; a job without one is looked at 2 s after the
dispatch (``ListDispatch``, the legacy target, or a pool that died); a waiting job costs
one call a second plus three per re-offer. Only the live consumer watches: an operator's
replay settles a job once its dispatch exists, as before, so one job is never watched by
two replicas.

A launch can also queue in LiveKit for many seconds: a burst of rooms with no agent in
their configuration wastes LiveKit's launch slots on their default dispatches. A re-offer
of a dispatch still queued gives the room a second job, and LiveKit's API shows it as it
shows a dropped launch. So a due re-offer is made only if the pools' heartbeats say a
launch may have been dropped since the dispatch was made (`pool_offers`), or once the
dispatch is ``REOFFER_BLIND_S`` old whatever they say; else it is held
(``reoffer_held``).
"""

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from livekit import api
from livekit.protocol.models import ParticipantInfo
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from core_voice_contracts import subjects
from core_voice_contracts.codec import decode_job_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import (
    ExpiredDetail,
    JobAccepted,
    JobDispatched,
    JobExpired,
    JobRejected,
    JobRequested,
    RejectReason,
)
from core_voice_contracts.ids import is_token
from core_voice_contracts.tasks import TaskSet
from core_voice_dispatcher.livekit_client import LIVEKIT_ERRORS, LiveKitClient, livekit_error
from core_voice_dispatcher.pool_offers import PoolOffers
from core_voice_dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)

FIRST_CHECK_S = 2.0
"""A dispatch no `JobAccepted` settled is first looked at this long after it was created
(in a burst LiveKit offers jobs 1-3 s late: a look at 0.5 s cost 264 ``ListDispatch`` calls
per 300 rooms, while LiveKit's launch pool was the bottleneck)."""
POLL_S = 1.0
"""Then once a second while it waits."""
ACCEPTED_REMEMBERED = 10_000
"""Job ids of `JobAccepted` kept (far more than jobs wait at once)."""
REOFFER_FIRST_S = 6.0
"""Past LiveKit's 5 s ``CheckEnabled`` round, during which a launch is pending unseen."""
REOFFER_EVERY_S = 5.0
REOFFER_BLIND_S = 20.0
"""A dispatch this old is offered again even if no pool said it could not take it (what
`pool_offers` cannot see: a pool's LiveKit connection dropped unnoticed, a lost
heartbeat); later than LiveKit's launch queue in a burst of 300 plain rooms (10-14 s)."""
REOFFER_QUIET_S = 2.0
"""No re-offer this close to the deadline: the worker would not be in the room yet when
the deadline's check looks."""

PublishOutcome = Callable[[JobDispatched | JobExpired | JobRejected, Msg, float], Awaitable[object]]


def reoffer_delay(offers: int) -> float:
    """How old a dispatch nobody took must be before offer ``offers + 1``: 6, 5, 5 s."""
    return REOFFER_FIRST_S if offers <= 1 else REOFFER_EVERY_S


@dataclass(slots=True)
class Waiting:
    """A dispatched job whose message is held until a worker takes it."""

    job: JobRequested
    msg: Msg
    agent_id: str
    """The routed agent (the outcome events' subject)."""
    agent_name: str
    metadata: str
    """The dispatch's metadata (the routed job), for a re-offer."""
    dispatch_id: str
    offered_at: float
    """When its current dispatch was asked for (monotonic; for one found, LiveKit's
    creation time): re-offers are timed from it."""
    started: float
    """When handling of this delivery started (monotonic), for the outcome log."""
    next_progress: float = 0.0
    """When to tell JetStream again that the job is still being worked on."""
    held: bool = False
    """Its current dispatch was due a re-offer, held as no pool said it could not take it."""


TakenUnseen = Callable[[JobRequested, str, list[str]], None]
"""(the job, its routed agent, LiveKit's job ids: the calls' ids)."""


class _Gone(Exception):
    """The job's room closed while it waited."""


class CapacityWatch:
    """The live consumer's waiting jobs: owned tasks, bounded, cancelled on shutdown."""

    def __init__(
        self, settings: DispatcherSettings, lk: LiveKitClient, publish: PublishOutcome
    ) -> None:
        self._settings = settings
        self._lk = lk
        self._publish = publish
        self._slots = asyncio.Semaphore(settings.capacity_max_waiting)
        self.tasks = TaskSet()
        self._watched: dict[str, asyncio.Event] = {}
        """Job ids with a task in `tasks`, each with the event its `JobAccepted` sets."""
        self._accepted: OrderedDict[str, None] = OrderedDict()
        self.pools = PoolOffers()
        """The pools' heartbeats (`note_status` is fed by the app): whether a dispatch
        nobody took may have been dropped, or is only late in LiveKit's launch queue."""
        self.taken_unseen: TakenUnseen | None = None
        """Told of a pool job LiveKit lists as taken whose `JobAccepted` never came here
        (`unstarted.UnstartedCalls.note_taken`): the pool may have died before saying so."""
        self.counts: Counter[str] = Counter()
        """``taken`` (at the first offer), ``taken_after_wait``, ``reoffered``,
        ``reoffer_held`` (a dispatch due a re-offer that no pool could have dropped: late
        in LiveKit's queue, not offered twice), ``no_capacity``, ``abandoned`` (the room
        closed while waiting), ``removed`` (the dispatch was deleted by someone else),
        ``livekit_errors``."""

    def note_accepted(self, job_id: str) -> None:
        """A pool said it holds ``job_id`` (`JobAccepted`); remembered, bounded."""
        self._accepted[job_id] = None
        self._accepted.move_to_end(job_id)
        if (woken := self._watched.get(job_id)) is not None:
            woken.set()
        while len(self._accepted) > ACCEPTED_REMEMBERED:
            self._accepted.popitem(last=False)

    def accepted(self, job_id: str) -> bool:
        return job_id in self._accepted

    def watching(self, job_id: str) -> bool:
        return job_id in self._watched

    def waiting(self) -> int:
        return len(self._watched)

    async def watch(self, waiting: Waiting) -> None:
        """Start watching; waits for a free place first if ``capacity_max_waiting`` are
        watched already (the consumer's slot is held meanwhile: backpressure)."""
        await self._slots.acquire()
        job_id = waiting.job.job_id
        woken = self._watched[job_id] = asyncio.Event()
        if self.accepted(job_id):  # its `JobAccepted` came first (a quick pool, a busy loop)
            woken.set()
        task = self.tasks.spawn(self._run(waiting), name=f"capacity-{job_id}")

        def done(_: "asyncio.Task[None]") -> None:
            self._watched.pop(job_id, None)
            self._slots.release()

        task.add_done_callback(done)

    async def close(self) -> None:
        """Hand every waiting job back to JetStream (at once, for another replica)."""
        await self.tasks.cancel_all()

    # --- one job -----------------------------------------------------------------------

    async def _run(self, w: Waiting) -> None:
        try:
            await self._wait(w)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await w.msg.nak()
            raise
        except (NatsError, TimeoutError) as exc:
            log.warning(
                "job outcome not stored: bus unavailable",
                extra={"job_id": w.job.job_id, "error": type(exc).__name__},
            )
            with contextlib.suppress(NatsError, TimeoutError):
                await w.msg.nak(delay=POLL_S)
        except Exception:
            log.exception("capacity watch failed", extra={"job_id": w.job.job_id})
            with contextlib.suppress(Exception):
                await w.msg.nak(delay=POLL_S)

    async def _wait(self, w: Waiting) -> None:
        settings = self._settings
        stored = w.msg.metadata.timestamp
        since_stored = (dt.datetime.now(dt.UTC) - stored).total_seconds()
        now = time.monotonic()
        first_offered_at = w.offered_at
        deadline = now + max(FIRST_CHECK_S, settings.capacity_wait_s - since_stored)
        w.next_progress = now + self._progress_every()
        offers = 1
        check_at = w.offered_at + FIRST_CHECK_S
        accepted = self._watched.get(w.job.job_id) or asyncio.Event()
        while True:
            with contextlib.suppress(TimeoutError):  # a `JobAccepted` ends the wait early
                await asyncio.wait_for(accepted.wait(), max(0.0, check_at - time.monotonic()))
            if not self.accepted(w.job.job_id):
                accepted.clear()  # forgotten already (bounded): poll, never spin
            now = time.monotonic()
            await self._progress(w)
            try:
                ours = None if self.accepted(w.job.job_id) else await self._our_dispatches(w)
                if ours is None:
                    self._taken(w, offers, now - first_offered_at)
                    await w.msg.ack()
                    return
                if not ours and w.dispatch_id:
                    self.counts["removed"] += 1
                    log.warning(
                        "job dispatch removed while waiting for a worker",
                        extra={"job_id": w.job.job_id},
                    )
                    await w.msg.ack()
                    return
                past = now >= deadline
                # No new offer right before the deadline: a worker taking it would not be
                # in the room yet when the deadline's check looks.
                reoffer_due = (
                    now - w.offered_at >= reoffer_delay(offers)
                    and deadline - now >= REOFFER_QUIET_S
                    and self._may_have_dropped(w, now)
                )
                if past or not ours or reoffer_due:
                    if self.accepted(w.job.job_id) or await self._agent_present(w):
                        self._taken(w, offers, now - first_offered_at)
                        await w.msg.ack()
                        return
                    await self._progress(w)
                    if past:
                        await self._no_capacity(w, ours, offers)
                        return
                    await self._reoffer(w, ours, offers)  # sets w.offered_at
                    offers += 1
            except _Gone:
                self.counts["abandoned"] += 1
                expired = JobExpired(
                    job_id=w.job.job_id,
                    room_name=w.job.room_name,
                    agent_id=w.agent_id,
                    detail=ExpiredDetail.ROOM_GONE.value,
                )
                await self._publish(expired, w.msg, w.started)
                await w.msg.ack()
                return
            except LIVEKIT_ERRORS as exc:
                self.counts["livekit_errors"] += 1
                log.warning(
                    "capacity watch livekit error",
                    extra={"job_id": w.job.job_id, "error": livekit_error(exc)},
                )
                if now >= deadline:
                    await self._no_capacity(w, [], offers)
                    return
            check_at = time.monotonic() + POLL_S

    def _may_have_dropped(self, w: Waiting, now: float) -> bool:
        """Whether LiveKit may have dropped the dispatch's launch (then a re-offer is the
        only way it is offered again), rather than still have it queued (then a re-offer
        gives the room a second job)."""
        if now - w.offered_at >= REOFFER_BLIND_S:
            return True
        if self.pools.may_have_dropped(w.agent_name, w.offered_at):
            return True
        if not w.held:
            w.held = True
            self.counts["reoffer_held"] += 1
            log.debug(
                "re-offer held: no pool could have dropped the launch",
                extra={"job_id": w.job.job_id},
            )
        return False

    def _progress_every(self) -> float:
        return max(1.0, self._settings.ack_wait_s / 3)

    async def _progress(self, w: Waiting) -> None:
        """Keep JetStream from redelivering the held job: called before each step (a look,
        a re-offer), every ``ack_wait_s / 3`` at most."""
        now = time.monotonic()
        if now >= w.next_progress:
            await w.msg.in_progress()
            w.next_progress = now + self._progress_every()

    # --- LiveKit ---------------------------------------------------------------------

    async def _our_dispatches(self, w: Waiting) -> list[api.AgentDispatch] | None:
        """This job's dispatches in the room; None once one of them has a worker's job.

        Raises `_Gone` if the room closed (LiveKit answers a listing for a room that is
        gone with an error, after an internal 3 s timeout).
        """
        try:
            listed = await self._lk.agent_dispatch.list_dispatch(w.job.room_name)
        except LIVEKIT_ERRORS:
            if await self._lk.live_room(w.job.room_name, w.job.room_sid) is None:
                raise _Gone from None
            raise
        ours = [d for d in listed if d.id == w.dispatch_id or d.metadata == w.metadata]
        taken = [job.id for d in ours for job in d.state.jobs]
        if taken:
            pool = w.agent_name == self._settings.worker_agent_name  # legacy: no events
            if pool and self.taken_unseen is not None and not self.accepted(w.job.job_id):
                self.taken_unseen(w.job, w.agent_id, taken)
            return None
        if ours:
            w.dispatch_id = ours[0].id
        return ours

    async def _agent_present(self, w: Waiting) -> bool:
        """A worker's participant is in the room: taken, though LiveKit may not list the
        job yet (see the module docstring)."""
        listed = await self._lk.room.list_participants(
            api.ListParticipantsRequest(room=w.job.room_name)
        )
        return any(p.kind == ParticipantInfo.Kind.AGENT for p in listed.participants)

    async def _reoffer(self, w: Waiting, ours: list[api.AgentDispatch], offers: int) -> None:
        """Delete and re-create the dispatch: LiveKit offers a new dispatch to its workers."""
        for dispatch in ours:
            await self._delete_dispatch(dispatch.id, w.job.room_name)
        w.dispatch_id = ""  # none now: if the creation fails, the next look creates one
        w.offered_at = time.monotonic()
        w.held = False
        created = await self._lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(
                agent_name=w.agent_name, room=w.job.room_name, metadata=w.metadata
            )
        )
        w.dispatch_id = created.id
        if await self._lk.live_room(w.job.room_name, w.job.room_sid) is None:
            # LiveKit's auto-create made a new room for the dispatch: take it back out.
            with contextlib.suppress(*LIVEKIT_ERRORS):
                await self._lk.agent_dispatch.delete_dispatch(created.id, w.job.room_name)
            raise _Gone
        self.counts["reoffered"] += 1
        log.info(
            "dispatch offered again",
            extra={"job_id": w.job.job_id, "dispatch_id": created.id, "offer": offers + 1},
        )

    async def _no_capacity(self, w: Waiting, ours: list[api.AgentDispatch], offers: int) -> None:
        """Past the wait: remove the dispatch, publish the rejection, close the room."""
        room = w.job.room_name
        for dispatch_id in {d.id for d in ours} | ({w.dispatch_id} - {""}):
            with contextlib.suppress(*LIVEKIT_ERRORS):
                await self._delete_dispatch(dispatch_id, room)
        wait = self._settings.capacity_wait_s
        rejected = JobRejected(
            job_id=w.job.job_id,
            room_name=room,
            agent_id=w.agent_id,
            reason=RejectReason.NO_CAPACITY,
            detail=f"no worker took the job within {wait:g} s ({offers} offers)",
        )
        await self._publish(rejected, w.msg, w.started)
        self.counts["no_capacity"] += 1
        if not self._settings.capacity_keep_room:
            try:
                await self._lk.room.delete_room(api.DeleteRoomRequest(room=room))
            except LIVEKIT_ERRORS as exc:
                log.warning(
                    "room of a rejected job not deleted",
                    extra={"job_id": w.job.job_id, "error": livekit_error(exc)},
                )
        await w.msg.ack()

    async def _delete_dispatch(self, dispatch_id: str, room: str) -> None:
        try:
            await self._lk.agent_dispatch.delete_dispatch(dispatch_id, room)
        except api.TwirpError as exc:
            if exc.code != "not_found":
                raise

    def _taken(self, w: Waiting, offers: int, waited_s: float) -> None:
        if offers == 1:
            self.counts["taken"] += 1
            log.debug("job taken", extra={"job_id": w.job.job_id, "offers": offers})
            return
        self.counts["taken_after_wait"] += 1
        log.info(
            "job taken",
            extra={
                "job_id": w.job.job_id,
                "offers": offers,
                "waited_ms": round(waited_s * 1000),
                "dispatch_id": w.dispatch_id,
            },
        )


async def follow_accepted_jobs(
    nc: Client,
    sinks: Sequence[Callable[[JobAccepted], None]],
    poison: Counter[str] | None = None,
) -> Subscription:
    """Feed every pool's `JobAccepted` to each of ``sinks`` (core NATS: only what is said
    from now on matters, and every replica hears every pool): the capacity watch, and the
    watch on calls that never start (`unstarted`). One subscription and one decode per
    event for both. A message that is not one, or whose job id is no job id (a 1 MiB one,
    remembered 10,000 times, would be 10 GiB), is counted in ``poison`` and ignored."""

    async def on_accepted(msg: Msg) -> None:
        try:
            event = decode_job_event(msg.data)
        except DecodeError:
            if poison is not None:
                poison["accepted/undecodable"] += 1
            return
        if isinstance(event, JobAccepted):
            if not is_token(event.job_id):
                if poison is not None:
                    poison["accepted/invalid"] += 1
                return
            for sink in sinks:
                sink(event)

    return await nc.subscribe(subjects.JOBS_ACCEPTED_ALL, cb=on_accepted)
