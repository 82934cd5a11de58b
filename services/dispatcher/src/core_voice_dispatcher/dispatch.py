"""The durable consumer that turns `JobRequested` into a LiveKit agent dispatch.

Each job ends in exactly one outcome event, published under a stable message id before
the job message is acknowledged:

- `JobDispatched`: config_sync routed it (directly named agent, campaign pick, or a SIP
  caller's dialed number; pool or legacy target) and LiveKit holds an explicit dispatch
  whose metadata is the job; or such a dispatch already existed (a redelivery or replay).
  With config_sync unreachable, a job whose agent, campaign or number was routed before
  is dispatched on that remembered answer (``route_stale``, see `route_memory`);
- `JobExpired`: the room (by sid) or the SIP caller was gone; a room is never re-created;
- `JobRejected`: unroutable (config_sync's reason), or LiveKit / config_sync kept failing
  for ``max_deliver`` attempts (retried with exponential backoff meanwhile).

A dispatched job's message is acknowledged only once a worker took the job (or, past
``capacity_wait_s``, after `JobRejected(no_capacity)`): see `capacity`.

Idempotent by construction, so a crash at any point, redelivery and stream replay are
safe: a job whose dispatch exists is not dispatched again, and outcome events carry
``<job_id>-<outcome>`` message ids, so the stream de-duplicates a repeat.
"""

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from livekit import api
from livekit.protocol.models import ParticipantInfo, Room
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from core_voice_contracts import subjects
from core_voice_contracts.bus import publish
from core_voice_contracts.codec import decode_job_event, encode
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import (
    ExpiredDetail,
    JobDispatched,
    JobExpired,
    JobRejected,
    JobRequested,
    RejectReason,
)
from core_voice_contracts.ids import is_token, is_valid_id
from core_voice_contracts.routing import (
    RouteError,
    RouteRejected,
    RouteReply,
    RouteRequest,
    RouteResolved,
    Target,
)
from core_voice_contracts.rpc import resolve_route
from core_voice_contracts.streams import VOICE_JOBS
from core_voice_contracts.tracing import (
    ATTR_AGENT_ID,
    ATTR_CAMPAIGN_ID,
    ATTR_DISPATCH_ID,
    ATTR_JOB_ID,
    ATTR_OUTCOME,
    ATTR_ROOM,
    ATTR_SUBJECT,
    SpanKind,
    current_or,
    current_traceparent,
    extract_headers,
    inject_headers,
    span,
    tracer,
)
from core_voice_dispatcher import intake
from core_voice_dispatcher.capacity import CapacityWatch, Waiting
from core_voice_dispatcher.errors import ConfigurationError
from core_voice_dispatcher.livekit_client import LIVEKIT_ERRORS, LiveKitClient
from core_voice_dispatcher.metrics import DispatcherMetrics, ErrorType, outcome_error_type
from core_voice_dispatcher.route_memory import RouteMemory
from core_voice_dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)
_tracer = tracer(__name__)
T_ = TypeVar("T_")

RETRY_BASE_S = 0.5
RETRY_MAX_S = 15.0
SERVER_DELIVER_HEADROOM = 4
"""The server redelivers a few times past our own budget, so that a crash during the last
attempt still ends in a recorded rejection instead of a silent drop."""

FRESH_JOB_S = 30.0
"""A job stored less than this ago, on its first delivery, is dispatched the fast way."""
PREFETCH_TTL_S = 5.0
"""A prefetch its job's delivery did not claim by then (another replica got the message)
is dropped."""
_PERMANENT_LIVEKIT_CODES = frozenset({"invalid_argument", "malformed", "out_of_range"})
_OUTCOME_LOG = {
    "dispatched": "job dispatched",
    "expired": "job expired",
    "rejected": "job rejected",
}


def retry_delay(attempt: int) -> float:
    """Backoff before attempt ``attempt + 1``: 0.5 s, 1 s, 2 s, ... at most 15 s."""
    return float(min(RETRY_MAX_S, RETRY_BASE_S * 2 ** max(0, attempt - 1)))


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


def reject_reason(value: str) -> RejectReason:
    """config_sync's reason as a `RejectReason`; an unknown word is ``no_route``."""
    try:
        return RejectReason(value)
    except ValueError:
        return RejectReason.NO_ROUTE


def job_id_of_dispatch(metadata: str) -> str | None:
    """The job id in a dispatch's metadata, if the dispatch is one of ours."""
    try:
        event = decode_job_event(metadata.encode())
    except DecodeError:
        return None
    return event.job_id if isinstance(event, JobRequested) else None


@dataclass(frozen=True, slots=True)
class Lookups:
    """The look-ups that decide a job, started together (None: not needed)."""

    route: "asyncio.Task[RouteReply] | None"
    room: "asyncio.Task[Room | None]"
    dispatches: "asyncio.Task[Dispatched | None] | None"
    participants: "asyncio.Task[list[ParticipantInfo]] | None"

    def tasks(self) -> list["asyncio.Task[Any]"]:
        found = (self.route, self.room, self.dispatches, self.participants)
        return [task for task in found if task is not None]


def _settle_tasks(tasks: list["asyncio.Task[Any]"]) -> None:
    """Cancel what still runs; an unused look-up's failure is not news (retrieved)."""
    for task in tasks:
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()


@dataclass(frozen=True, slots=True)
class Dispatched:
    """LiveKit holds the job's dispatch (created now, or found: ``event.already_existed``)."""

    event: JobDispatched
    metadata: str
    """The dispatch's metadata: the routed job."""
    taken: bool = False
    """A worker's job is already listed for it (a redelivered or replayed job)."""
    age_s: float = 0.0
    """How long ago LiveKit created the dispatch."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after a backoff; reject with ``reason`` once the budget is spent."""

    reason: RejectReason
    error: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Not yet decidable (a SIP caller may still join): look again in ``delay`` seconds."""

    delay: float


Outcome = Dispatched | JobExpired | JobRejected | Retry | Wait


def _livekit_error(exc: BaseException) -> str:
    if isinstance(exc, api.TwirpError):
        return f"livekit_{exc.code}"
    return f"livekit_{type(exc).__name__}"


def _discovers(job: JobRequested) -> bool:
    """No agent, campaign or number yet: the room's SIP caller will name the route."""
    return job.agent_id == subjects.UNROUTED and not job.campaign_id and not job.dialed_number


def _well_formed(job: JobRequested) -> bool:
    """Whether ``job``'s ids can be used as they are: the job id goes into outcome message
    ids (a NATS header), the agent id into outcome subjects. Anything else (a hostile or
    broken publisher) would fail on every delivery."""
    agent_ok = job.agent_id == subjects.UNROUTED or is_valid_id(job.agent_id)
    return agent_ok and is_token(job.job_id)


def route_request(job: JobRequested) -> RouteRequest:
    return RouteRequest(
        room_key=job.room_sid or job.room_name,
        agent_id=None if job.agent_id == subjects.UNROUTED else job.agent_id,
        campaign_id=job.campaign_id,
        dialed_number=job.dialed_number,
        trunk_id=job.trunk_id,
    )


class Dispatcher:
    """Handles job messages from the live consumer and from operators' replay consumers."""

    def __init__(
        self,
        settings: DispatcherSettings,
        nc: Client,
        js: JetStreamContext,
        lk: LiveKitClient,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.js = js
        self.lk = lk
        self.metrics: DispatcherMetrics = lk.metrics
        self._inflight: set[str] = set()
        self._prefetched: dict[str, tuple[JobRequested, Lookups]] = {}
        self.prefetch_counts: Counter[str] = Counter()
        """``started``; ``used``, ``expired`` (another replica got the job) or ``dropped``
        (not stored: a duplicate or a bus failure): how prefetches ended (for /healthz)."""
        self.memory: RouteMemory | None = (
            RouteMemory(settings.route_memory_size, settings.route_memory_max_age_s)
            if settings.route_memory_size > 0
            else None
        )
        self.routing_counts: Counter[str] = Counter()
        """``stale_dispatches`` (routed from memory), ``unavailable`` (config_sync could
        not be asked and nothing was remembered: retried)."""
        self.capacity: CapacityWatch | None = (
            CapacityWatch(settings, lk, self._publish_outcome)
            if settings.capacity_wait_s > 0
            else None
        )
        self.poison: Counter[str] = Counter()
        """Bus messages refused as poison, by ``<stream or feed>/<reason>`` (for /healthz):
        job messages terminated (``undecodable``, or ``invalid``: a job id that cannot be
        a message id, an agent id that cannot be a subject), and messages of the change
        and accepted-job feeds that were ignored."""

    # --- prefetch ----------------------------------------------------------------------

    def prefetch(self, job: JobRequested) -> bool:
        """Start ``job``'s look-ups now, while its webhook is being stored (`Prefetcher`).

        They then run while JetStream stores the job and delivers it to the consumer
        (~1.5-2.5 ms, far more under load), instead of after. Only a first, fresh
        delivery uses them (see `decide`); if the message went to another replica, they
        are dropped after ``PREFETCH_TTL_S``. Nothing is created here: the dispatch
        itself is still made only by the durable consumer.
        """
        if job.job_id in self._prefetched or len(self._prefetched) >= self.settings.max_concurrency:
            return False
        lookups = self._lookups(job)
        self._prefetched[job.job_id] = (job, lookups)
        self.prefetch_counts["started"] += 1
        asyncio.get_running_loop().call_later(PREFETCH_TTL_S, self._forget, job.job_id, "expired")
        return True

    def drop(self, job_id: str) -> None:
        """Forget a prefetch whose job was not stored by the webhook that started it."""
        self._forget(job_id, "dropped")

    def _forget(self, job_id: str, ending: str) -> None:
        forgotten = self._prefetched.pop(job_id, None)
        if forgotten is not None:
            self.prefetch_counts[ending] += 1
            _settle_tasks(forgotten[1].tasks())

    def _claim_prefetch(self, job: JobRequested, fresh: bool) -> Lookups | None:
        claimed = self._prefetched.pop(job.job_id, None)
        if claimed is None:
            return None
        prefetched_job, lookups = claimed
        if not fresh or prefetched_job != job:
            _settle_tasks(lookups.tasks())
            return None
        self.prefetch_counts["used"] += 1
        return lookups

    def _lookups(self, job: JobRequested, *, fresh: bool = True) -> Lookups:
        """Start the look-ups ``job`` needs. LiveKit answers a dispatch listing for a room
        that is gone only after an internal 3 s timeout, so that listing starts at once
        only for a fresh job (its room is almost surely open)."""
        discover = _discovers(job)
        return Lookups(
            route=None if discover else asyncio.create_task(self._route(job)),
            room=asyncio.create_task(self._live_room(job)),
            dispatches=asyncio.create_task(self._existing_dispatch(job)) if fresh else None,
            participants=(
                asyncio.create_task(self._participants(job))
                if discover or job.participant_identity
                else None
            ),
        )

    # --- one job ---------------------------------------------------------------------

    async def handle(self, msg: Msg, *, watch: bool = True) -> None:
        """Settle one job message: an outcome event and an ack, or a delayed nak.

        With ``watch`` (the live consumer), a dispatched job's message is handed to the
        capacity watch, which acknowledges it once a worker took the job.
        """
        try:
            event = decode_job_event(msg.data)
        except DecodeError:
            await self._poison(msg, "undecodable")
            return
        if isinstance(event, JobRequested) and not _well_formed(event):
            await self._poison(msg, "invalid")
            return
        if not isinstance(event, JobRequested):
            await msg.ack()
            return
        if self.capacity is not None and self.capacity.watching(event.job_id):
            # Dispatched and waiting for a worker here: that watch settles the job.
            await msg.ack()
            return
        if event.job_id in self._inflight:
            # The same job is being handled here (a replayed copy): look again shortly.
            await msg.nak(delay=1.0)
            return
        self._inflight.add(event.job_id)
        started = time.monotonic()
        try:
            # The job's trace (from the webhook) continues here; its dispatch metadata
            # carries this span's context on to the worker's call.
            with span(
                _tracer,
                "dispatch",
                kind=SpanKind.CONSUMER,
                context=extract_headers(msg.headers),
                attributes={
                    ATTR_JOB_ID: event.job_id,
                    ATTR_AGENT_ID: event.agent_id,
                    ATTR_ROOM: event.room_name,
                    ATTR_CAMPAIGN_ID: event.campaign_id,
                },
            ) as current:
                outcome = await self.decide(event, msg)
                current.set_attribute(ATTR_OUTCOME, type(outcome).__name__)
                await self._settle(event, msg, outcome, started, watch=watch)
        except (NatsError, TimeoutError) as exc:
            # The outcome could not be stored: leave the job to a redelivery.
            log.warning(
                "job outcome not stored: bus unavailable",
                extra={"job_id": event.job_id, "error": type(exc).__name__},
            )
            self.metrics.error(ErrorType.BUS_UNAVAILABLE)
            with contextlib.suppress(NatsError, TimeoutError):
                await msg.nak(delay=retry_delay(msg.metadata.num_delivered))
        finally:
            self._inflight.discard(event.job_id)

    async def _poison(self, msg: Msg, reason: str) -> None:
        """Terminate a job message no delivery can settle, and count it (/healthz)."""
        self.poison[f"{VOICE_JOBS}/{reason}"] += 1
        self.metrics.error(ErrorType.POISON)
        log.warning("poison job message terminated", extra={"subject": msg.subject, "why": reason})
        await msg.term()

    async def decide(self, job: JobRequested, msg: Msg) -> Outcome:
        """Find what should happen to ``job`` now (LiveKit calls, no events yet).

        The independent look-ups run at once (or already ran: see `prefetch`): routing,
        the room, its dispatches (a fresh job only, see `_lookups`) and for SIP jobs its
        participants. A room that is gone decides at once; for a replayed or redelivered
        job the dispatch listing waits until the room is known to be open.
        """
        discover = _discovers(job)
        age = dt.datetime.now(dt.UTC) - msg.metadata.timestamp
        fresh = msg.metadata.num_delivered == 1 and age.total_seconds() < FRESH_JOB_S
        started = self._claim_prefetch(job, fresh) or self._lookups(job, fresh=fresh)
        lookups = started.tasks()

        def start(coro: Coroutine[Any, Any, T_]) -> asyncio.Task[T_]:
            task = asyncio.create_task(coro)
            lookups.append(task)
            return task

        try:
            route, room = started.route, started.room
            dispatches, participants = started.dispatches, started.participants
            if await room is None:
                return self._expired(job, job.agent_id, ExpiredDetail.ROOM_GONE)
            if participants is not None:
                present = await participants
                if discover:  # no agent metadata: the SIP caller's dialed number routes it
                    callers = [p for p in present if intake.is_sip_caller(p)]
                    if not callers:
                        return self._no_caller_yet(job, msg)
                    caller = min(callers, key=lambda p: p.joined_at_ms)
                    job = msgspec.structs.replace(
                        job,
                        dialed_number=caller.attributes.get(intake.DIALED_NUMBER_ATTRIBUTE) or None,
                        trunk_id=caller.attributes.get(intake.TRUNK_ATTRIBUTE) or None,
                        participant_identity=caller.identity,
                    )
                    route = start(self._route(job))
                elif not any(p.identity == job.participant_identity for p in present):
                    return self._expired(job, job.agent_id, ExpiredDetail.CALLER_LEFT)
            existing = await (dispatches or self._existing_dispatch(job))
            if existing is not None:
                return existing
            assert route is not None
            request = route_request(job)
            match await route:
                case RouteError(error=error, retryable=True):
                    remembered = self._remembered(job, request, error)
                    if remembered is not None:
                        return await self._dispatch(job, remembered, stale=True)
                    return Retry(RejectReason.CONFIG_UNAVAILABLE, error)
                case RouteError(error=error):
                    return self._rejected(job, RejectReason.CONFIG_UNAVAILABLE, error)
                case RouteRejected(reason=reason, detail=detail):
                    if self.memory is not None:
                        self.memory.rejected(request)
                    return self._rejected(job, reject_reason(reason), detail or reason)
                case RouteResolved() as resolved:
                    if self.memory is not None:
                        self.memory.remember(request, resolved)
                    return await self._dispatch(job, resolved)
        except LIVEKIT_ERRORS as exc:
            if isinstance(exc, api.TwirpError) and exc.code in _PERMANENT_LIVEKIT_CODES:
                return self._rejected(job, RejectReason.DISPATCH_FAILED, _livekit_error(exc))
            return Retry(RejectReason.DISPATCH_FAILED, _livekit_error(exc))
        finally:
            _settle_tasks(lookups)

    def _remembered(
        self, job: JobRequested, request: RouteRequest, error: str
    ) -> RouteResolved | None:
        """The last answer for the job's agent, campaign or number, when config_sync could
        not be asked (a retryable error); None: retry as before."""
        recalled = self.memory.recall(request) if self.memory is not None else None
        if recalled is None:
            self.routing_counts["unavailable"] += 1
            return None
        self.routing_counts["stale_dispatches"] += 1
        log.warning(
            "job routed from memory",
            extra={
                "job_id": job.job_id,
                "agent_id": recalled.answer.agent_id,
                "key": recalled.key[0],
                "error": error,
                "age_s": round(recalled.age_s, 1),
                "confirmed": recalled.confirmed,
            },
        )
        return recalled.answer

    async def _dispatch(
        self, job: JobRequested, route: RouteResolved, *, stale: bool = False
    ) -> Outcome:
        if route.target == Target.LEGACY:
            if not route.legacy_agent_name:
                return self._rejected(
                    job, RejectReason.NO_ROUTE, "legacy target without a legacy agent name"
                )
            agent_name = route.legacy_agent_name
        else:
            agent_name = self.settings.worker_agent_name
        # The worker reads the job from the dispatch metadata: it carries the resolved agent.
        # ... and the trace context, so the call's span joins this dispatch's trace.
        routed = msgspec.structs.replace(
            job,
            agent_id=route.agent_id,
            campaign_id=route.campaign_id,
            traceparent=current_traceparent(),
        )
        metadata = encode(routed).decode()
        with span(
            _tracer,
            "create_dispatch",
            kind=SpanKind.CLIENT,
            attributes={ATTR_AGENT_ID: route.agent_id, ATTR_ROOM: job.room_name},
        ) as current:
            created = await self.lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(
                    agent_name=agent_name, room=job.room_name, metadata=metadata
                )
            )
            current.set_attribute(ATTR_DISPATCH_ID, created.id)
        if job.room_sid and await self._live_room(job) is None:
            # The room closed in between and LiveKit's auto-create made a new one for our
            # dispatch: take the dispatch back out rather than keep a worker in it.
            with contextlib.suppress(*LIVEKIT_ERRORS):
                await self.lk.agent_dispatch.delete_dispatch(created.id, job.room_name)
            return self._expired(job, route.agent_id, ExpiredDetail.ROOM_CLOSED_DURING_DISPATCH)
        dispatched = JobDispatched(
            job_id=job.job_id,
            room_name=job.room_name,
            agent_id=route.agent_id,
            dispatch_id=created.id,
            worker_agent_name=agent_name,
            target=route.target.value,
            campaign_id=route.campaign_id,
            via=route.via,
            route_stale=stale,
            requested_at=job.at,
            tenant_id=route.tenant_id,
        )
        return Dispatched(dispatched, metadata)

    def _no_caller_yet(self, job: JobRequested, msg: Msg) -> Outcome:
        stored = msg.metadata.timestamp
        waited = (dt.datetime.now(dt.UTC) - stored).total_seconds()
        remaining = self.settings.sip_wait_s - waited
        if remaining > 0 and msg.metadata.num_delivered < self.settings.max_deliver:
            return Wait(max(0.2, min(remaining, retry_delay(msg.metadata.num_delivered))))
        return self._rejected(
            job,
            RejectReason.NO_AGENT,
            f"room metadata names no agent and no SIP caller joined "
            f"within {self.settings.sip_wait_s:g} s",
        )

    # --- LiveKit and config_sync look-ups ----------------------------------------------

    async def _route(self, job: JobRequested) -> RouteReply:
        request = route_request(job)
        return await resolve_route(self.nc, request, timeout=self.settings.route_timeout_s)

    async def _live_room(self, job: JobRequested) -> Room | None:
        """The job's room if it is still open (same sid: a reused name is another room)."""
        return await self.lk.live_room(job.room_name, job.room_sid)

    async def _participants(self, job: JobRequested) -> list[ParticipantInfo]:
        listed = await self.lk.room.list_participants(
            api.ListParticipantsRequest(room=job.room_name)
        )
        return list(listed.participants)

    async def _existing_dispatch(self, job: JobRequested) -> Dispatched | None:
        """This job's dispatch if LiveKit already holds it (whatever agent name it used)."""
        for dispatch in await self.lk.agent_dispatch.list_dispatch(job.room_name):
            if not dispatch.agent_name or job_id_of_dispatch(dispatch.metadata) != job.job_id:
                continue
            routed = decode_job_event(dispatch.metadata.encode())
            assert isinstance(routed, JobRequested)
            legacy = dispatch.agent_name != self.settings.worker_agent_name
            event = JobDispatched(
                job_id=job.job_id,
                room_name=job.room_name,
                agent_id=routed.agent_id,
                dispatch_id=dispatch.id,
                worker_agent_name=dispatch.agent_name,
                already_existed=True,
                requested_at=routed.at,
                target=(Target.LEGACY if legacy else Target.POOL).value,
                campaign_id=routed.campaign_id,
            )
            created_ns = dispatch.state.created_at
            age = max(0.0, time.time() - created_ns / 1e9) if created_ns else 0.0
            return Dispatched(event, dispatch.metadata, taken=bool(dispatch.state.jobs), age_s=age)
        return None

    # --- outcomes ------------------------------------------------------------------------

    @staticmethod
    def _expired(job: JobRequested, agent_id: str, detail: ExpiredDetail) -> JobExpired:
        return JobExpired(
            job_id=job.job_id, room_name=job.room_name, agent_id=agent_id, detail=detail.value
        )

    @staticmethod
    def _rejected(job: JobRequested, reason: RejectReason, detail: str) -> JobRejected:
        return JobRejected(
            job_id=job.job_id,
            room_name=job.room_name,
            agent_id=job.agent_id,
            reason=reason,
            detail=detail,
        )

    async def _settle(
        self, job: JobRequested, msg: Msg, outcome: Outcome, started: float, *, watch: bool
    ) -> None:
        attempt = msg.metadata.num_delivered
        match outcome:
            case Dispatched(event=event, metadata=metadata, taken=taken, age_s=age):
                await self._publish_outcome(event, msg, started)
                if watch and not taken and self.capacity is not None:
                    await self.capacity.watch(
                        Waiting(
                            job=job,
                            msg=msg,
                            agent_id=event.agent_id,
                            agent_name=event.worker_agent_name,
                            metadata=metadata,
                            dispatch_id=event.dispatch_id,
                            dispatch_age_s=age,
                            started=started,
                        )
                    )
                    return
                await msg.ack()
                return
            case Wait(delay=delay):
                log.debug("job waits for a sip caller", extra={"job_id": job.job_id})
                await msg.nak(delay=delay)
                return
            case Retry(reason=reason, error=error) if attempt < self.settings.max_deliver:
                log.warning(
                    "dispatch retry",
                    extra={"job_id": job.job_id, "error": error, "attempt": attempt},
                )
                self.metrics.jobs.labels("retried").inc()
                self.metrics.error(outcome_error_type(error))
                await msg.nak(delay=retry_delay(attempt))
                return
            case Retry(reason=reason, error=error):
                outcome = self._rejected(job, reason, f"{error} (after {attempt} attempts)")
            case _:
                pass
        assert not isinstance(outcome, Retry | Wait | Dispatched)
        await self._publish_outcome(outcome, msg, started)
        await msg.ack()

    async def _publish_outcome(
        self, outcome: JobDispatched | JobExpired | JobRejected, msg: Msg, started: float
    ) -> None:
        match outcome:
            case JobDispatched():
                subject, kind = subjects.job_dispatched(outcome.agent_id), "dispatched"
            case JobExpired():
                subject, kind = subjects.job_expired(outcome.agent_id), "expired"
            case JobRejected():
                subject, kind = subjects.job_rejected(outcome.agent_id), "rejected"
        # In the dispatch span, or (a capacity watch settling it later) the job's trace.
        with span(
            _tracer,
            f"publish {type(outcome).__name__}",
            kind=SpanKind.PRODUCER,
            context=current_or(extract_headers(msg.headers)),
            attributes={
                ATTR_SUBJECT: subject,
                ATTR_JOB_ID: outcome.job_id,
                ATTR_AGENT_ID: outcome.agent_id,
            },
        ):
            await publish(
                self.js,
                subject,
                outcome,
                msg_id=f"{outcome.job_id}-{kind}",
                headers=inject_headers(),
            )
        stored = msg.metadata.timestamp.timestamp()
        fields: dict[str, object] = {
            "job_id": outcome.job_id,
            "agent_id": outcome.agent_id,
            "attempt": msg.metadata.num_delivered,
            "handle_ms": round((time.monotonic() - started) * 1000, 2),
            "since_stored_ms": round((time.time() - stored) * 1000, 2),
        }
        match outcome:
            case JobDispatched():
                fields |= {
                    "dispatch_id": outcome.dispatch_id,
                    "worker_agent_name": outcome.worker_agent_name,
                    "target": outcome.target,
                    "already_existed": outcome.already_existed,
                    "route_stale": outcome.route_stale,
                }
            case JobExpired():
                fields["detail"] = outcome.detail
            case JobRejected():
                fields["reason"] = outcome.reason.value
        self.metrics.jobs.labels(kind).inc()
        log.info(_OUTCOME_LOG[kind], extra=fields)


# --- pulling ---------------------------------------------------------------------------

Handler = Callable[[Msg], Awaitable[None]]


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
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.gone = False
        """The consumer was deleted under us (a finished or removed replay, an accident)."""

    def busy(self) -> int:
        return sum(1 for t in self._tasks if not t.done())

    async def run(self) -> None:
        backlog = 0
        while not self._stopping.is_set():
            free = self._concurrency - self.busy()
            if free <= 0:
                await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
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
                task = asyncio.create_task(self._run_one(msg), name=f"{self.name}-job")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

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
        pending = {t for t in self._tasks if not t.done()}
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

    def __init__(
        self, settings: DispatcherSettings, js: JetStreamContext, dispatcher: Dispatcher
    ) -> None:
        self._settings = settings
        self._js = js
        self._dispatcher = dispatcher
        self._stopping = asyncio.Event()
        self._lane: Lane | None = None
        self._retiring: set[asyncio.Task[None]] = set()

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
            self._dispatcher.handle,
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
            retiring = asyncio.create_task(self._lane.drain(self._settings.drain_timeout_s))
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)
            self._lane = None

    def stop(self) -> None:
        self._stopping.set()
        if self._lane is not None:
            self._lane.stop()

    async def drain(self, timeout: float) -> None:
        if self._lane is not None:
            await self._lane.drain(timeout)
        if self._retiring:
            await asyncio.wait(set(self._retiring), timeout=timeout)
