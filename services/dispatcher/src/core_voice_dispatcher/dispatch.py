"""Deciding a `JobRequested` and settling its message: a LiveKit agent dispatch, or why not.

The pull consumers that deliver job messages here are `consumer` (and `replay`); the
look-ups a decision needs, and their prefetch, are `lookups`; the outcomes and their
publication are `outcomes`.

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
import dataclasses
import datetime as dt
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgspec
from livekit import api
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from core_voice_contracts import subjects
from core_voice_contracts.codec import decode_job_event, encode
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import (
    ExpiredDetail,
    JobDispatched,
    JobExpired,
    JobRequested,
    RejectReason,
)
from core_voice_contracts.ids import is_token, is_valid_id
from core_voice_contracts.routing import (
    RouteError,
    RouteRejected,
    RouteRequest,
    RouteResolved,
    Target,
)
from core_voice_contracts.streams import VOICE_JOBS
from core_voice_contracts.tracing import (
    ATTR_AGENT_ID,
    ATTR_CAMPAIGN_ID,
    ATTR_DISPATCH_ID,
    ATTR_JOB_ID,
    ATTR_OUTCOME,
    ATTR_ROOM,
    SpanKind,
    current_traceparent,
    extract_headers,
    span,
    tracer,
)
from core_voice_dispatcher import webhook_plan
from core_voice_dispatcher.capacity import CapacityWatch, Waiting
from core_voice_dispatcher.livekit_client import LIVEKIT_ERRORS, LiveKitClient, livekit_error
from core_voice_dispatcher.lookups import (
    JobLookups,
    Prefetches,
    discovers,
    route_request,
    settle_tasks,
)
from core_voice_dispatcher.metrics import DispatcherMetrics, ErrorType, outcome_error_type
from core_voice_dispatcher.outcomes import (
    Dispatched,
    Outcome,
    OutcomePublisher,
    Retry,
    Served,
    Wait,
    expired,
    reject_reason,
    rejected,
    retry_delay,
)
from core_voice_dispatcher.route_memory import RouteMemory
from core_voice_dispatcher.served import accepted_in_stream
from core_voice_dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)
_tracer = tracer(__name__)
T_ = TypeVar("T_")

UNSTORED_MEMORY = 10_000
"""Dispatches whose `JobDispatched` could not be stored, remembered at most (a job id
and its event each: a few MB at the bound)."""
FRESH_JOB_S = 30.0
"""A job stored less than this ago, on its first delivery, is dispatched the fast way."""
_PERMANENT_LIVEKIT_CODES = frozenset({"invalid_argument", "malformed", "out_of_range"})


def _well_formed(job: JobRequested) -> bool:
    """Whether ``job``'s ids can be used as they are: the job id goes into outcome message
    ids (a NATS header), the agent id into outcome subjects. Anything else (a hostile or
    broken publisher) would fail on every delivery."""
    agent_ok = job.agent_id == subjects.UNROUTED or is_valid_id(job.agent_id)
    return agent_ok and is_token(job.job_id)


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
        self.lk = lk
        self.metrics: DispatcherMetrics = lk.metrics
        self._inflight: set[str] = set()
        self._js = js
        self.outcomes = OutcomePublisher(js, self.metrics)
        self.lookups = JobLookups(settings, nc, lk)
        self.prefetches = Prefetches(self.lookups, settings.max_concurrency)
        """What the webhook endpoint prefetches through (`webhook_endpoint.Prefetcher`)."""
        self.memory: RouteMemory | None = (
            RouteMemory(settings.route_memory_size, settings.route_memory_max_age_s)
            if settings.route_memory_size > 0
            else None
        )
        self.routing_counts: Counter[str] = Counter()
        """``stale_dispatches`` (routed from memory), ``unavailable`` (config_sync could
        not be asked and nothing was remembered: retried)."""
        self.capacity: CapacityWatch | None = (
            CapacityWatch(settings, lk, self.outcomes.publish)
            if settings.capacity_wait_s > 0
            else None
        )
        self.served_lookups: Counter[str] = Counter()
        """Redelivered jobs with their room gone looked up in VOICE_JOBS (`served`):
        ``found`` (settled, not ``room_gone``), ``not_found``, ``unreadable``; and
        ``unstored_dispatch`` (this process made the dispatch and could not store its
        `JobDispatched`: stored when the redelivery finds the room gone)."""
        self._unstored: OrderedDict[str, Dispatched] = OrderedDict()
        """Dispatches made here whose `JobDispatched` the bus refused, by job id (bounded:
        `UNSTORED_MEMORY`). The room may be gone when JetStream delivers the job again
        (a NATS partition outlasting the call); the dispatch was made all the same, so
        that is the job's outcome, not ``room_gone``."""
        self.poison: Counter[str] = Counter()
        """Bus messages refused as poison, by ``<stream or feed>/<reason>`` (for /healthz):
        job messages terminated (``undecodable``, or ``invalid``: a job id that cannot be
        a message id, an agent id that cannot be a subject), and messages of the change
        and accepted-job feeds that were ignored."""

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
        outcome: Outcome | None = None
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
                self._unstored.pop(event.job_id, None)
        except (NatsError, TimeoutError) as exc:
            if isinstance(outcome, Dispatched):
                self._unstored[event.job_id] = outcome
                self._unstored.move_to_end(event.job_id)
                while len(self._unstored) > UNSTORED_MEMORY:
                    self._unstored.popitem(last=False)
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

        The independent look-ups run at once (or already ran: see `Prefetches`): routing,
        the room, its dispatches (a fresh job only, see `JobLookups.start`) and for SIP jobs its
        participants. A room that is gone decides at once; for a replayed or redelivered
        job the dispatch listing waits until the room is known to be open.
        """
        discover = discovers(job)
        age = dt.datetime.now(dt.UTC) - msg.metadata.timestamp
        fresh = msg.metadata.num_delivered == 1 and age.total_seconds() < FRESH_JOB_S
        started = self.prefetches.claim(job, fresh) or self.lookups.start(job, fresh=fresh)
        lookups = started.tasks()

        def start(coro: Coroutine[Any, Any, T_]) -> asyncio.Task[T_]:
            task = asyncio.create_task(coro)
            lookups.append(task)
            return task

        try:
            route, room = started.route, started.room
            dispatches, participants = started.dispatches, started.participants
            if await room is None:
                return await self._room_gone(job, msg)
            if participants is not None:
                present = await participants
                if discover:  # no agent metadata: the SIP caller's dialed number routes it
                    callers = [p for p in present if webhook_plan.is_sip_caller(p)]
                    if not callers:
                        return self._no_caller_yet(job, msg)
                    caller = min(callers, key=lambda p: p.joined_at_ms)
                    job = msgspec.structs.replace(
                        job,
                        dialed_number=caller.attributes.get(webhook_plan.DIALED_NUMBER_ATTRIBUTE)
                        or None,
                        trunk_id=caller.attributes.get(webhook_plan.TRUNK_ATTRIBUTE) or None,
                        participant_identity=caller.identity,
                    )
                    route = start(self.lookups.route(job))
                elif not any(p.identity == job.participant_identity for p in present):
                    return expired(job, job.agent_id, ExpiredDetail.CALLER_LEFT)
            existing = await (dispatches or self.lookups.existing_dispatch(job))
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
                    return rejected(job, RejectReason.CONFIG_UNAVAILABLE, error)
                case RouteRejected(reason=reason, detail=detail):
                    if self.memory is not None:
                        self.memory.rejected(request)
                    return rejected(job, reject_reason(reason), detail or reason)
                case RouteResolved() as resolved:
                    if self.memory is not None:
                        self.memory.remember(request, resolved)
                    return await self._dispatch(job, resolved)
        except LIVEKIT_ERRORS as exc:
            if isinstance(exc, api.TwirpError) and exc.code in _PERMANENT_LIVEKIT_CODES:
                return rejected(job, RejectReason.DISPATCH_FAILED, livekit_error(exc))
            return Retry(RejectReason.DISPATCH_FAILED, livekit_error(exc))
        finally:
            settle_tasks(lookups)

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
                return rejected(
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
            sent = time.monotonic()  # the capacity watch's re-offers count from here
            created = await self.lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(
                    agent_name=agent_name, room=job.room_name, metadata=metadata
                )
            )
            current.set_attribute(ATTR_DISPATCH_ID, created.id)
        if job.room_sid and await self.lookups.live_room(job) is None:
            # The room closed in between and LiveKit's auto-create made a new one for our
            # dispatch: take the dispatch back out rather than keep a worker in it.
            with contextlib.suppress(*LIVEKIT_ERRORS):
                await self.lk.agent_dispatch.delete_dispatch(created.id, job.room_name)
            return expired(job, route.agent_id, ExpiredDetail.ROOM_CLOSED_DURING_DISPATCH)
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
        return Dispatched(dispatched, metadata, sent_at=sent)

    def _no_caller_yet(self, job: JobRequested, msg: Msg) -> Outcome:
        stored = msg.metadata.timestamp
        waited = (dt.datetime.now(dt.UTC) - stored).total_seconds()
        remaining = self.settings.sip_wait_s - waited
        if remaining > 0 and msg.metadata.num_delivered < self.settings.max_deliver:
            return Wait(max(0.2, min(remaining, retry_delay(msg.metadata.num_delivered))))
        return rejected(
            job,
            RejectReason.NO_AGENT,
            f"room metadata names no agent and no SIP caller joined "
            f"within {self.settings.sip_wait_s:g} s",
        )

    async def _room_gone(self, job: JobRequested, msg: Msg) -> Outcome:
        """The room is gone. A first delivery expires; a job delivered again may have been
        dispatched and served while this process or the bus could not record it."""
        if self.capacity is not None and self.capacity.accepted(job.job_id):
            return Served()
        unstored = self._unstored.get(job.job_id)
        if unstored is not None:
            self.served_lookups["unstored_dispatch"] += 1
            return dataclasses.replace(unstored, taken=True)  # nothing left to watch
        attempt = msg.metadata.num_delivered
        if attempt == 1:
            return expired(job, job.agent_id, ExpiredDetail.ROOM_GONE)
        found = await self._accepted_in_stream(job, msg)
        if found is None:  # the stream cannot say now (a NATS election)
            return Retry(RejectReason.DISPATCH_FAILED, "accepted_lookup_unavailable")
        if found:
            return Served()
        if attempt < self.settings.max_deliver:
            # The pool's JobAccepted may still be on its way (its node cut off, its
            # publish retrying): look again after the backoff; the last attempt expires.
            return Retry(RejectReason.DISPATCH_FAILED, "accepted_not_seen")
        return expired(job, job.agent_id, ExpiredDetail.ROOM_GONE)

    async def _accepted_in_stream(self, job: JobRequested, msg: Msg) -> bool | None:
        """Whether a worker took ``job`` though this process never saw it (`served`);
        None if the stream cannot be read now."""
        found = await accepted_in_stream(self._js, job, msg.metadata.sequence.stream)
        self.served_lookups[{True: "found", False: "not_found", None: "unreadable"}[found]] += 1
        return found

    async def _settle(
        self, job: JobRequested, msg: Msg, outcome: Outcome, started: float, *, watch: bool
    ) -> None:
        attempt = msg.metadata.num_delivered
        match outcome:
            case Dispatched(event=event, metadata=metadata, taken=taken, age_s=age, sent_at=sent):
                await self.outcomes.publish(event, msg, started)
                if watch and not taken and self.capacity is not None:
                    await self.capacity.watch(
                        Waiting(
                            job=job,
                            msg=msg,
                            agent_id=event.agent_id,
                            agent_name=event.worker_agent_name,
                            metadata=metadata,
                            dispatch_id=event.dispatch_id,
                            offered_at=time.monotonic() - age if sent is None else sent,
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
            case Served():
                log.info("job already served", extra={"job_id": job.job_id, "attempt": attempt})
                await msg.ack()
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
                outcome = rejected(job, reason, f"{error} (after {attempt} attempts)")
            case _:
                pass
        assert not isinstance(outcome, Retry | Wait | Dispatched | Served)
        # A job delivered again whose room is gone may have been dispatched and served
        # already (JetStream delivers at least once: an ack lost with a NATS node): its
        # expiry is stored only if it has no outcome yet.
        again = attempt > 1 and isinstance(outcome, JobExpired)
        await self.outcomes.publish(outcome, msg, started, first=again)
        await msg.ack()
