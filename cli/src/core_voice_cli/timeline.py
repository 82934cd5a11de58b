"""Call timelines built from the job and call events, as `corevoice calls` shows them.

Pure: no bus, no clock but the one passed in, so every rule here is unit-tested on event
lists. A timeline is one call (a LiveKit job, ``call_id``) with the events of the job
(room) that led to it; a job that never became a call (rejected, expired, or still
waiting) is a timeline without a call id. Events only carry timings and ids, never what
was said, so neither does a timeline.

    timelines = build_timelines([Record(event, stored_at, traceparent), ...])
    for step in timelines[0].steps():
        print(step.name, step.at)
"""

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from core_voice_contracts.events import (
    CallEnded,
    CallEvent,
    CallFailed,
    CallStarted,
    JobAccepted,
    JobDispatched,
    JobEvent,
    JobExpired,
    JobRejected,
    JobRequested,
    TurnLatency,
)

Event = JobEvent | CallEvent

_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_id_of(traceparent: str) -> str | None:
    """The trace id of a W3C ``traceparent`` header, or None when it is absent or invalid
    (an all-zero trace id is invalid by the spec)."""
    match = _TRACEPARENT_RE.match(traceparent.strip().lower())
    if match is None or match.group(1) == "0" * 32:
        return None
    return match.group(1)


@dataclass(frozen=True)
class Record:
    """One event as read from its stream: ``stored_at`` is JetStream's own timestamp,
    which says when the bus had it durably (the "stored" step), independent of the
    publisher's clock."""

    event: Event
    stored_at: dt.datetime
    traceparent: str = ""


class Outcome(StrEnum):
    """Where a call or job stands, as far as the events in the window tell."""

    PENDING = "pending"
    """A job with no call and no verdict yet (waiting for a worker, or still routing)."""
    ACTIVE = "active"
    """A worker holds the call and has not reported its end."""
    ENDED = "ended"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


CALL_OUTCOMES = frozenset({Outcome.ACTIVE, Outcome.ENDED, Outcome.FAILED})
"""Outcomes of timelines that have a call; the others are jobs that never became one."""


@dataclass(frozen=True)
class Step:
    """One point of a timeline: ``at`` is None when its event is not in the window."""

    name: str
    at: dt.datetime | None
    detail: str = ""


@dataclass
class Timeline:
    """Everything the streams say about one call, or one job that never became a call."""

    job_id: str
    call_id: str | None = None
    requested: Record | None = None
    dispatched: list[Record] = field(default_factory=list)
    accepted: Record | None = None
    started: Record | None = None
    ended: Record | None = None
    failed: Record | None = None
    rejected: Record | None = None
    expired: Record | None = None

    # --- identity ---------------------------------------------------------------------

    def _records(self) -> list[Record]:
        """In the order of the call's life: the trace id is taken from the first."""
        ordered = [self.requested, *self.dispatched, self.accepted, self.started]
        ordered += [self.ended, self.failed, self.rejected, self.expired]
        return [r for r in ordered if r is not None]

    @property
    def id(self) -> str:
        """The id `calls show` takes first: the call id, or the job id of a job alone."""
        return self.call_id or self.job_id

    @property
    def room_name(self) -> str:
        return next((r.event.room_name for r in self._records()), "")

    @property
    def agent_id(self) -> str:
        return next((r.event.agent_id for r in self._records()), "")

    @property
    def tenant_id(self) -> str:
        """From the call's events; JobDispatched has it too; a rejected job has none."""
        for record in self._records():
            event = record.event
            if isinstance(event, JobDispatched | CallStarted | CallEnded | CallFailed) and (
                event.tenant_id
            ):
                return event.tenant_id
        return ""

    @property
    def campaign_id(self) -> str | None:
        for record in self._records():
            event = record.event
            if not isinstance(event, JobExpired | JobRejected) and event.campaign_id:
                return event.campaign_id
        return None

    @property
    def worker_id(self) -> str:
        for record in (self.started, self.accepted, self.ended, self.failed):
            event = record.event if record is not None else None
            if (
                isinstance(event, JobAccepted | CallStarted | CallEnded | CallFailed)
                and event.worker_id
            ):
                return event.worker_id
        return ""

    @property
    def trace_ids(self) -> list[str]:
        """Distinct trace ids of the events, first seen first: one when tracing works."""
        seen: list[str] = []
        for record in self._records():
            trace = trace_id_of(record.traceparent)
            if trace is not None and trace not in seen:
                seen.append(trace)
        return seen

    @property
    def trace_id(self) -> str | None:
        ids = self.trace_ids
        return ids[0] if ids else None

    # --- outcome ----------------------------------------------------------------------

    @property
    def outcome(self) -> Outcome:
        end = self._end()
        if isinstance(end, CallEnded):
            return Outcome.ENDED
        if isinstance(end, CallFailed):
            return Outcome.FAILED
        if self.call_id is not None:
            return Outcome.ACTIVE
        if self.rejected is not None:
            return Outcome.REJECTED
        if self.expired is not None:
            return Outcome.EXPIRED
        return Outcome.PENDING

    def _end(self) -> CallEnded | CallFailed | None:
        """The call's terminal event; the first one counts if both were recorded (the
        bus collapses a second report only within its duplicate window)."""
        ends = [r for r in (self.ended, self.failed) if r is not None]
        if not ends:
            return None
        first = min(ends, key=lambda r: r.stored_at).event
        assert isinstance(first, CallEnded | CallFailed)
        return first

    @property
    def reason(self) -> str:
        """Why it ended as it did: the end reason, failure code, reject reason, expiry."""
        end = self._end()
        if isinstance(end, CallEnded):
            return end.end_reason
        if isinstance(end, CallFailed):
            return end.error
        if self.call_id is None and self.rejected is not None:
            assert isinstance(self.rejected.event, JobRejected)
            return self.rejected.event.reason.value
        if self.call_id is None and self.expired is not None:
            assert isinstance(self.expired.event, JobExpired)
            return self.expired.event.detail
        return ""

    @property
    def detail(self) -> str:
        """The failure's or rejection's free-text detail (never user data, by contract)."""
        end = self._end()
        if isinstance(end, CallFailed):
            return end.detail
        if end is None and self.call_id is None and self.rejected is not None:
            assert isinstance(self.rejected.event, JobRejected)
            return self.rejected.event.detail
        return ""

    @property
    def duration_s(self) -> float | None:
        """The call's own measure; None for a call still running or a job alone."""
        end = self._end()
        if isinstance(end, CallEnded):
            return end.duration_s
        if isinstance(end, CallFailed):
            return end.duration_s
        return None

    def running_s(self, now: dt.datetime) -> float | None:
        """How long an active call has been running, from when its worker joined."""
        joined = self.joined_at
        if self.outcome is not Outcome.ACTIVE or joined is None:
            return None
        return max(0.0, (now - joined).total_seconds())

    # --- versions and turns -----------------------------------------------------------

    @property
    def config_versions(self) -> list[int]:
        """Every config version the call ran on, in the order applied."""
        end = self._end()
        if end is not None and end.config_versions:
            return list(end.config_versions)
        for record in (self.started, self.ended, self.failed):
            if record is not None:
                event = record.event
                if isinstance(event, CallStarted | CallEnded | CallFailed) and event.config_version:
                    return [event.config_version]
        return []

    @property
    def turns(self) -> list[TurnLatency]:
        end = self._end()
        if isinstance(end, CallEnded):
            if end.turn_metrics:
                return list(end.turn_metrics)
            # An older worker sent only end-to-end latencies.
            return [TurnLatency(e2e_s=s) for s in end.turn_latencies_s]
        return []

    @property
    def worst_turn_s(self) -> float | None:
        """The slowest turn end to end (caller stops speaking -> agent audio)."""
        figures = [t.e2e_s for t in self.turns if t.e2e_s is not None]
        return max(figures) if figures else None

    @property
    def greeting_latency_s(self) -> float | None:
        end = self._end()
        return end.greeting_latency_s if isinstance(end, CallEnded) else None

    # --- steps ------------------------------------------------------------------------

    @property
    def webhook_at(self) -> dt.datetime | None:
        """The webhook's time: JobRequested, else the copy later events carry of it."""
        if self.requested is not None:
            return self.requested.event.at
        for record in (*self.dispatched, self.started):
            if record is not None:
                event = record.event
                if isinstance(event, JobDispatched | CallStarted) and event.requested_at:
                    return event.requested_at
        return None

    @property
    def joined_at(self) -> dt.datetime | None:
        return self.started.event.at if self.started is not None else None

    @property
    def first_at(self) -> dt.datetime:
        """When the timeline begins (lists sort on it): the webhook, else its first event."""
        known = [r.event.at for r in self._records()]
        webhook = self.webhook_at
        if webhook is not None:
            known.append(webhook)
        return min(known)

    def steps(self) -> list[Step]:
        """Webhook, stored, dispatched, offered, joined, greeting, then the end.

        The first six are always listed (``at`` None when missing from the window, or
        not reached), so a reader sees what is absent; the end is listed when there is
        one. A job alone stops at its verdict.
        """
        steps = [
            Step("webhook", self.webhook_at, self._webhook_detail()),
            Step("stored", self.requested.stored_at if self.requested else None),
            self._dispatched_step(),
        ]
        if self.call_id is not None or self.accepted is not None:
            steps.append(self._offered_step())
            steps.append(self._joined_step())
            steps.append(self._greeting_step())
        steps.extend(self._end_steps())
        return steps

    def _webhook_detail(self) -> str:
        if self.requested is None:
            return "JobRequested not in the window" if self.webhook_at else ""
        event = self.requested.event
        assert isinstance(event, JobRequested)
        return f"trigger {event.trigger}" if event.trigger else ""

    def _dispatched_step(self) -> Step:
        if not self.dispatched:
            return Step("dispatched", None)
        event = self.dispatched[0].event
        assert isinstance(event, JobDispatched)
        parts = [f"{event.target} {event.worker_agent_name}".strip()]
        if event.via:
            parts.append(f"via {event.via}")
        if event.route_stale:
            parts.append("stale route")
        if len(self.dispatched) > 1:
            parts.append(f"{len(self.dispatched)} dispatches")
        return Step("dispatched", event.at, ", ".join(p for p in parts if p))

    def _offered_step(self) -> Step:
        if self.accepted is not None:
            event = self.accepted.event
            assert isinstance(event, JobAccepted)
            return Step("offered", event.at, f"worker {event.worker_id}")
        if self.started is not None:
            event_s = self.started.event
            assert isinstance(event_s, CallStarted)
            if event_s.accepted_at is not None:
                return Step("offered", event_s.accepted_at, "JobAccepted not in the window")
        return Step("offered", None)

    def _joined_step(self) -> Step:
        if self.started is None:
            return Step("joined", None)
        event = self.started.event
        assert isinstance(event, CallStarted)
        parts = [f"config v{event.config_version}"]
        if event.config_stale:
            parts.append("stale config")
        parts.append(f"config load {event.config_load_s:.3f} s, setup {event.setup_s:.3f} s")
        return Step("joined", event.at, ", ".join(parts))

    def _greeting_step(self) -> Step:
        """The worker times the greeting from its request (once the caller is in the
        room); ``joined + latency`` is exact when the caller was there first."""
        latency = self.greeting_latency_s
        joined = self.joined_at
        if latency is None or joined is None:
            return Step("greeting", None)
        at = joined + dt.timedelta(seconds=latency)
        return Step("greeting", at, f"first audio {latency:.3f} s after asking")

    def _end_steps(self) -> list[Step]:
        steps: list[Step] = []
        end = self._end()
        if isinstance(end, CallEnded):
            reason = end.end_reason or "no reason given"
            steps.append(Step("ended", end.at, f"{reason}, after {end.duration_s:.3f} s"))
        elif isinstance(end, CallFailed):
            retry = " (retryable)" if end.retryable else ""
            steps.append(Step("failed", end.at, _with_detail(end.error, end.detail) + retry))
        if self.rejected is not None:
            event = self.rejected.event
            assert isinstance(event, JobRejected)
            steps.append(Step("rejected", event.at, _with_detail(event.reason.value, event.detail)))
        if self.expired is not None:
            expired = self.expired.event
            assert isinstance(expired, JobExpired)
            steps.append(Step("expired", expired.at, expired.detail))
        return steps

    def matches(self, wanted: str) -> bool:
        """`calls show` takes a call id, or as a convenience a job id or a room name."""
        return wanted in (self.call_id, self.job_id, self.room_name)


def _with_detail(code: str, detail: str) -> str:
    """``code: detail``; the dispatcher repeats the code as the detail when it has no more."""
    return f"{code}: {detail}" if detail and detail != code else code


def build_timelines(records: Iterable[Record]) -> list[Timeline]:
    """Group events into timelines: one per call id, plus one per job without a call.

    A job's own events (requested, dispatched, rejected, expired) go with every call of
    that job: a job re-dispatched after its first call failed shows as two calls with the
    same webhook. Within a kind the first event counts (redeliveries are duplicates),
    except dispatches, which are all kept. Returned oldest first.
    """
    jobs: dict[str, Timeline] = {}
    calls: dict[str, Timeline] = {}
    for record in sorted(records, key=lambda r: r.stored_at):
        event = record.event
        if isinstance(event, JobAccepted | CallStarted | CallEnded | CallFailed):
            call = calls.setdefault(event.call_id, Timeline(job_id=event.job_id))
            call.call_id = event.call_id
            call.job_id = call.job_id or event.job_id
            _place_call_event(call, record)
        else:
            _place_job_event(jobs.setdefault(event.job_id, Timeline(job_id=event.job_id)), record)
    timelines: list[Timeline] = []
    called_jobs = set()
    for call in calls.values():
        job = jobs.get(call.job_id)
        if job is not None:
            called_jobs.add(call.job_id)
            call.requested, call.dispatched = job.requested, job.dispatched
            call.rejected, call.expired = job.rejected, job.expired
        timelines.append(call)
    timelines.extend(job for job_id, job in jobs.items() if job_id not in called_jobs)
    return sorted(timelines, key=lambda t: t.first_at)


def _place_call_event(call: Timeline, record: Record) -> None:
    match record.event:
        case JobAccepted():
            call.accepted = call.accepted or record
        case CallStarted():
            call.started = call.started or record
        case CallEnded():
            call.ended = call.ended or record
        case CallFailed():
            call.failed = call.failed or record


def _place_job_event(job: Timeline, record: Record) -> None:
    match record.event:
        case JobRequested():
            job.requested = job.requested or record
        case JobDispatched():
            job.dispatched.append(record)
        case JobRejected():
            job.rejected = job.rejected or record
        case JobExpired():
            job.expired = job.expired or record


def find(timelines: Sequence[Timeline], wanted: str) -> list[Timeline]:
    """The timelines ``wanted`` names: a call id names one; a job id or a room name may
    name several calls (a re-dispatched job), newest last."""
    by_call = [t for t in timelines if t.call_id == wanted]
    return by_call or [t for t in timelines if t.matches(wanted)]
