"""What handling a job ends in, and how an ending is announced on the bus.

`decide` returns an `Outcome`: `Dispatched`, an outcome event (`JobExpired`,
`JobRejected`), or `Retry` / `Wait` (no event yet: the message is nak'ed with a delay).
`OutcomePublisher` stores each event under ``<job_id>-<outcome>``, so a repeat after a
crash or a replay is dropped by the stream; the capacity watch publishes through it too,
once a held job is settled.
"""

import logging
import time
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from core_voice_contracts import subjects
from core_voice_contracts.bus import publish
from core_voice_contracts.events import (
    ExpiredDetail,
    JobDispatched,
    JobExpired,
    JobRejected,
    JobRequested,
    RejectReason,
)
from core_voice_contracts.tracing import (
    ATTR_AGENT_ID,
    ATTR_JOB_ID,
    ATTR_SUBJECT,
    SpanKind,
    current_or,
    extract_headers,
    inject_headers,
    span,
    tracer,
)
from core_voice_dispatcher.metrics import DispatcherMetrics

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

RETRY_BASE_S = 0.5
RETRY_MAX_S = 15.0
_OUTCOME_LOG = {
    "dispatched": "job dispatched",
    "expired": "job expired",
    "rejected": "job rejected",
}


def retry_delay(attempt: int) -> float:
    """Backoff before attempt ``attempt + 1``: 0.5 s, 1 s, 2 s, ... at most 15 s."""
    return float(min(RETRY_MAX_S, RETRY_BASE_S * 2 ** max(0, attempt - 1)))


def reject_reason(value: str) -> RejectReason:
    """config_sync's reason as a `RejectReason`; an unknown word is ``no_route``."""
    try:
        return RejectReason(value)
    except ValueError:
        return RejectReason.NO_ROUTE


@dataclass(frozen=True, slots=True)
class Dispatched:
    """LiveKit holds the job's dispatch (created now, or found: ``event.already_existed``)."""

    event: JobDispatched
    metadata: str
    """The dispatch's metadata: the routed job."""
    taken: bool = False
    """A worker's job is already listed for it (a redelivered or replayed job)."""
    age_s: float = 0.0
    """How long ago LiveKit created the dispatch (one found)."""
    sent_at: float | None = None
    """When the request creating it was sent (monotonic; one created now)."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after a backoff; reject with ``reason`` once the budget is spent."""

    reason: RejectReason
    error: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Not yet decidable (a SIP caller may still join): look again in ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Served:
    """A worker took the job (its `JobAccepted` was seen here) and the room is gone: the
    job was settled before, by another delivery. JetStream redelivers at least once (a
    lost ack, a consumer leader that changed during a NATS partition), and the call may
    be over by then; recording ``room_gone`` would contradict the call that happened."""


Outcome = Dispatched | JobExpired | JobRejected | Retry | Wait | Served
OutcomeEvent = JobDispatched | JobExpired | JobRejected


def expired(job: JobRequested, agent_id: str, detail: ExpiredDetail) -> JobExpired:
    return JobExpired(
        job_id=job.job_id, room_name=job.room_name, agent_id=agent_id, detail=detail.value
    )


def rejected(job: JobRequested, reason: RejectReason, detail: str) -> JobRejected:
    return JobRejected(
        job_id=job.job_id,
        room_name=job.room_name,
        agent_id=job.agent_id,
        reason=reason,
        detail=detail,
    )


class OutcomePublisher:
    """Publishes outcome events (traced, logged once, counted in the job metrics)."""

    def __init__(self, js: JetStreamContext, metrics: DispatcherMetrics) -> None:
        self._js = js
        self._metrics = metrics

    async def publish(
        self, outcome: OutcomeEvent, msg: Msg, started: float, *, first: bool = False
    ) -> bool:
        """Store ``outcome`` of the job in ``msg``, whose handling began at ``started``
        (monotonic): the log line carries how long it took. With ``first`` it is stored
        only if the job has no outcome yet: under the message id its `JobDispatched`
        has, so JetStream drops it as a duplicate of that. Returns False when dropped."""
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
            ack = await publish(
                self._js,
                subject,
                outcome,
                msg_id=f"{outcome.job_id}-{'dispatched' if first else kind}",
                headers=inject_headers(),
            )
        if first and ack.duplicate:
            log.info(
                "job already settled",
                extra={"job_id": outcome.job_id, "attempt": msg.metadata.num_delivered},
            )
            return False
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
        self._metrics.jobs.labels(kind).inc()
        log.info(_OUTCOME_LOG[kind], extra=fields)
        return True
