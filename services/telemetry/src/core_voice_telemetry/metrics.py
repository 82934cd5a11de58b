"""The Prometheus metrics and how each event moves them.

Metric and label names are the dashboard contract (docs/metrics.md): change them only
with the Grafana dashboards and alert rules in ``deploy/``. Labels are ids and fixed
codes, never free text, and every id label passes the `LabelGuard`, so /metrics stays
bounded whatever rooms name.

Two kinds of input: *counting* (``observe_*``, from the durable consumers, once per
event) and *state* (``learn_*``, idempotent: routing, active calls), which the start-up
replay applies as well without counting anything twice.
"""

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core_voice_contracts.events import (
    CallEnded,
    CallEvent,
    CallFailed,
    CallFailure,
    CallStarted,
    ChangeKind,
    ConfigChanged,
    ConfigHeld,
    JobAccepted,
    JobDispatched,
    JobEvent,
    JobExpired,
    JobRejected,
    JobRequested,
    WorkerStatus,
)
from core_voice_telemetry.active import ActiveCalls
from core_voice_telemetry.fleet import Fleet, Propagation, _seconds
from core_voice_telemetry.labels import LabelGuard

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_DISPATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
_DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)
_PROPAGATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

TURN_STAGES = ("stt", "end_of_turn", "llm_ttft", "tts_ttfb", "e2e")

JOB_LABELS = ["tenant", "agent", "campaign"]
CALL_LABELS = ["tenant", "agent", "campaign", "config_version"]


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_agents: int = 1000,
        max_campaigns: int = 1000,
        max_versions: int = 3,
        active_lookback_s: float = 6 * 3600.0,
        propagation_window_s: float = 30.0,
        request_wait_s: float = 10.0,
        max_waiting_requests: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._waiting: OrderedDict[str, tuple[float, str, str | None, int]] = OrderedDict()
        """job_id -> (since, agent_id, campaign_id, how many) of `JobRequested` events of
        an agent not routed yet, counted when their job's next event comes (see
        `observe_job`), after ``request_wait_s``, or when more than
        ``max_waiting_requests`` wait."""
        self._request_wait_s = request_wait_s
        self._max_waiting = max_waiting_requests
        self._clock = clock
        r = self.registry
        self.label_overflow = Counter(
            "corevoice_telemetry_label_overflow",
            "Events whose agent, campaign or config version was folded into other/older "
            "(label: agent, campaign, config_version = the bounded set was full; "
            "unrouted = the agent was never routed)",
            ["label"],
            registry=r,
        )
        self._version_series: dict[tuple[str, str], set[tuple[Counter, tuple[str, ...]]]] = {}
        self.guard = LabelGuard(
            max_agents=max_agents,
            max_campaigns=max_campaigns,
            max_versions=max_versions,
            overflow=lambda label: self.label_overflow.labels(label).inc(),
            retire_version=self._retire_version,
        )
        self.active = ActiveCalls(active_lookback_s)
        self.fleet = Fleet()
        self.feeds: dict[str, str] = {}
        """Feed -> state (ok, starting, restarting, stopped), kept by the consumers."""
        self.jobs_requested = Counter(
            "corevoice_jobs_requested", "Jobs requested by room webhooks", JOB_LABELS, registry=r
        )
        self.jobs_dispatched = Counter(
            "corevoice_jobs_dispatched",
            "Jobs dispatched (target: pool or legacy)",
            [*JOB_LABELS, "target"],
            registry=r,
        )
        self.jobs_accepted = Counter(
            "corevoice_jobs_accepted",
            "Jobs a worker pool was assigned by LiveKit",
            JOB_LABELS,
            registry=r,
        )
        self.jobs_rejected = Counter(
            "corevoice_jobs_rejected", "Jobs not routed", [*JOB_LABELS, "reason"], registry=r
        )
        self.jobs_expired = Counter(
            "corevoice_jobs_expired", "Jobs whose room was gone", JOB_LABELS, registry=r
        )
        self.calls_started = Counter(
            "corevoice_calls_started", "Calls a worker started", CALL_LABELS, registry=r
        )
        self.calls_ended = Counter(
            "corevoice_calls_ended", "Calls that ended normally", CALL_LABELS, registry=r
        )
        self.calls_failed = Counter(
            "corevoice_calls_failed",
            "Calls that could not start or broke (reason: a CallFailure code)",
            [*CALL_LABELS, "reason"],
            registry=r,
        )
        self.calls_stale_config = Counter(
            "corevoice_calls_stale_config",
            "Calls started on a last known good config config_sync could not confirm",
            ["tenant", "agent"],
            registry=r,
        )
        self.call_duration = Histogram(
            "corevoice_call_duration_seconds",
            "Duration of calls that ended normally",
            JOB_LABELS,
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.dispatch_latency = Histogram(
            "corevoice_dispatch_latency_seconds",
            "From the webhook (JobRequested) to the dispatch (stage=dispatched), to a pool "
            "assigned (accepted), to the agent in the room (joined)",
            ["tenant", "agent", "stage"],
            buckets=_DISPATCH_BUCKETS,
            registry=r,
        )
        self.greeting_latency = Histogram(
            "corevoice_greeting_latency_seconds",
            "Call start to the first greeting audio",
            JOB_LABELS,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_latency = Histogram(
            "corevoice_turn_latency_seconds",
            "Per turn, from the end of the caller's speech: final transcript (stt), "
            "end-of-turn decision, LLM first token, TTS first byte, agent audio (e2e)",
            [*JOB_LABELS, "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.config_changes = Counter(
            "corevoice_config_changes",
            "Agent config changes (kind: created, updated, deleted, campaign)",
            ["tenant", "agent", "kind"],
            registry=r,
        )
        self.config_propagation = Histogram(
            "corevoice_config_propagation_seconds",
            "Config commit to the first pool holding it (target=first) and to every live "
            "pool (target=all)",
            ["tenant", "target"],
            buckets=_PROPAGATION_BUCKETS,
            registry=r,
        )
        self.config_propagation_incomplete = Counter(
            "corevoice_config_propagation_incomplete",
            "Config versions not held by every live pool within the propagation window",
            ["tenant"],
            registry=r,
        )
        self.propagation = Propagation(
            self.fleet,
            propagation_window_s,
            first=lambda tenant, s: self.config_propagation.labels(tenant, "first").observe(s),
            all_=lambda tenant, s: self.config_propagation.labels(tenant, "all").observe(s),
            incomplete=lambda tenant: self.config_propagation_incomplete.labels(tenant).inc(),
        )
        self.poison_messages = Counter(
            "corevoice_telemetry_poison_messages",
            "Messages dropped unapplied: undecodable, invalid (agent id), or failed "
            "on every delivery",
            ["stream", "reason"],
            registry=r,
        )
        self.feed_restarts = Counter(
            "corevoice_telemetry_feed_restarts",
            "Times a stream consumer task failed and was started again",
            ["stream"],
            registry=r,
        )
        self.consumer_pending = Gauge(
            "corevoice_telemetry_consumer_pending",
            "Events in a durable consumer not yet applied (pending + unacknowledged)",
            ["stream"],
            registry=r,
        )
        r.register(_StateCollector(self))

    # --- labels -------------------------------------------------------------------------

    def _job_labels(
        self, agent_id: str, campaign_id: str | None, tenant_id: str = "", *, count: bool = True
    ) -> tuple[str, str, str]:
        """(tenant, agent, campaign); ``count``: a fold is counted as an overflow (once
        per event, so the replay and the second look at an event pass False)."""
        agent = self.guard.agent(agent_id, count=count)
        campaign = self.guard.campaign(campaign_id, count=count)
        return self.guard.tenant(agent_id, tenant_id), agent, campaign

    def _call_labels(
        self, agent_id: str, campaign_id: str | None, tenant_id: str, version: int
    ) -> tuple[str, str, str, str]:
        tenant, agent, campaign = self._job_labels(agent_id, campaign_id, tenant_id)
        return tenant, agent, campaign, self.guard.version(agent, version)

    def _count_call(self, counter: Counter, labels: tuple[str, ...]) -> None:
        """Inc a calls_* counter, remembering its series under its (agent, version)."""
        counter.labels(*labels).inc()
        self._version_series.setdefault((labels[1], labels[3]), set()).add((counter, labels))

    def _retire_version(self, agent: str, version: str) -> None:
        for counter, labels in self._version_series.pop((agent, version), set()):
            counter.remove(*labels)

    # --- state (idempotent: the start-up replay applies these too) ----------------------

    def learn_config(self, event: ConfigChanged) -> None:
        if event.kind is not ChangeKind.DELETED:
            self.guard.route(event.agent_id, event.tenant_id, event.campaign_id)

    def learn_job(self, event: JobEvent) -> None:
        if isinstance(event, JobDispatched):
            self.guard.route(event.agent_id, event.tenant_id, event.campaign_id)

    def learn_call(self, event: CallEvent) -> None:
        match event:
            case CallStarted():
                self.guard.route(event.agent_id, event.tenant_id, event.campaign_id)
                labels = self._job_labels(
                    event.agent_id, event.campaign_id, event.tenant_id, count=False
                )
                self.active.start(event.call_id, event.at, labels)
            case CallEnded() | CallFailed():
                self.active.end(event.call_id, event.at)

    # --- counting (once per event, from the durable consumers) ---------------------------

    def observe_job(self, event: JobEvent) -> None:
        """Count ``event``. A `JobRequested` of an agent not routed yet waits for its job's
        next event: the jobs feed can run ahead of the config feed, and the dispatch is
        what routes the agent, so counting at once folded a new agent's first job into
        ``other``. A job whose next event never comes is counted (folded) after
        ``request_wait_s``."""
        self.learn_job(event)
        if isinstance(event, JobRequested):
            self._requested(event)
            return
        self._count_waiting(event.job_id)
        match event:
            case JobDispatched():
                labels = self._job_labels(event.agent_id, event.campaign_id, event.tenant_id)
                self.jobs_dispatched.labels(*labels, event.target).inc()
                if event.requested_at is not None and not event.already_existed:
                    self._dispatch(labels, "dispatched", event.at - event.requested_at)
            case JobAccepted():
                labels = self._job_labels(event.agent_id, event.campaign_id)
                self.jobs_accepted.labels(*labels).inc()
                if event.requested_at is not None:
                    self._dispatch(labels, "accepted", event.at - event.requested_at)
            case JobRejected():
                labels = self._job_labels(event.agent_id, None)
                self.jobs_rejected.labels(*labels, event.reason.value).inc()
            case JobExpired():
                self.jobs_expired.labels(*self._job_labels(event.agent_id, None)).inc()

    def _requested(self, event: JobRequested) -> None:
        if self.guard.routed(event.agent_id):
            self._count_waiting(event.job_id)
            self._count_requested(event.agent_id, event.campaign_id)
            return
        since, _, _, n = self._waiting.pop(event.job_id, (self._clock(), "", None, 0))
        self._waiting[event.job_id] = (since, event.agent_id, event.campaign_id, n + 1)
        while len(self._waiting) > self._max_waiting:
            self._count_requested(*self._waiting.popitem(last=False)[1][1:])
        self.count_overdue()

    def _count_waiting(self, job_id: str) -> None:
        """Count ``job_id``'s waiting request(s), and every one waiting too long."""
        if (waiting := self._waiting.pop(job_id, None)) is not None:
            self._count_requested(*waiting[1:])
        self.count_overdue()

    def count_overdue(self) -> None:
        """Count the requests that waited ``request_wait_s`` for their job's next event
        (called on each job event and periodically, so none waits on a quiet bus)."""
        cutoff = self._clock() - self._request_wait_s
        while self._waiting and next(iter(self._waiting.values()))[0] <= cutoff:
            self._count_requested(*self._waiting.popitem(last=False)[1][1:])

    def _count_requested(self, agent_id: str, campaign_id: str | None, n: int = 1) -> None:
        for _ in range(n):  # a fold is one overflow per event
            self.jobs_requested.labels(*self._job_labels(agent_id, campaign_id)).inc()

    def _dispatch(self, labels: tuple[str, str, str], stage: str, lag: dt.timedelta) -> None:
        tenant, agent, _ = labels
        self.dispatch_latency.labels(tenant, agent, stage).observe(_seconds(lag))

    def observe_call(self, event: CallEvent) -> None:
        self.learn_call(event)
        labels = self._call_labels(
            event.agent_id, event.campaign_id, event.tenant_id, event.config_version
        )
        job_labels = labels[:3]
        match event:
            case CallStarted():
                self._count_call(self.calls_started, labels)
                if event.config_stale:
                    self.calls_stale_config.labels(*job_labels[:2]).inc()
                if event.requested_at is not None:
                    self._dispatch(job_labels, "joined", event.at - event.requested_at)
            case CallEnded():
                self._count_call(self.calls_ended, labels)
                self.call_duration.labels(*job_labels).observe(max(event.duration_s, 0.0))
                if event.greeting_latency_s is not None:
                    self.greeting_latency.labels(*job_labels).observe(event.greeting_latency_s)
                self._turns(job_labels, event)
            case CallFailed():
                self._count_call(self.calls_failed, (*labels, _reason(event.error)))

    def _turns(self, labels: tuple[str, str, str], event: CallEnded) -> None:
        if not event.turn_metrics:  # a worker of the previous release: e2e figures only
            for e2e in event.turn_latencies_s:
                self.turn_latency.labels(*labels, "e2e").observe(e2e)
            return
        for turn in event.turn_metrics:
            figures = zip(
                TURN_STAGES,
                (
                    turn.stt_final_s,
                    turn.end_of_turn_s,
                    turn.llm_ttft_s,
                    turn.tts_ttfb_s,
                    turn.e2e_s,
                ),
                strict=True,
            )
            for stage, seconds in figures:
                if seconds is not None:
                    self.turn_latency.labels(*labels, stage).observe(seconds)

    def observe_config(self, event: ConfigChanged) -> None:
        self.learn_config(event)
        agent = self.guard.agent(event.agent_id, count=True)
        tenant = self.guard.tenant(event.agent_id, event.tenant_id)
        self.config_changes.labels(tenant, agent, event.kind.value).inc()

    # --- live state from the pools (core NATS) -------------------------------------------

    def observe_worker(self, event: WorkerStatus | ConfigHeld) -> None:
        match event:
            case WorkerStatus():
                self.fleet.beat(event)
            case ConfigHeld():
                self.propagation.held(event, self.guard.tenant(event.agent_id, event.tenant_id))


_REASONS = frozenset(code.value for code in CallFailure)
"""Every code the contracts define: a new one becomes a label without a change here."""


def _reason(error: str) -> str:
    """A `CallFailure` code; anything else is ``other`` (``error`` is a free string on
    the wire, and a label must not be)."""
    return error if error in _REASONS else "other"


class _StateCollector(Collector):
    """Gauges computed at scrape time from state: active calls, the fleet, feeds up."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self.metrics
        m.active.prune(dt.datetime.now(dt.UTC))
        active = GaugeMetricFamily("corevoice_calls_active", "Calls in progress", labels=JOB_LABELS)
        for labels, count in sorted(m.active.counts().items()):
            active.add_metric(list(labels), count)
        yield active
        totals = m.fleet.totals()
        for name, doc, value in (
            (
                "corevoice_workers",
                "Live worker pools (heard from within 3 heartbeats)",
                totals.workers,
            ),
            ("corevoice_workers_draining", "Live pools draining", totals.draining),
            ("corevoice_workers_capacity", "Call slots of the live pools", totals.capacity),
            ("corevoice_workers_active_calls", "Calls the live pools hold", totals.active_calls),
            (
                "corevoice_workers_utilisation",
                "Active calls over capacity of the live pools (0..1)",
                totals.utilisation,
            ),
            (
                "corevoice_workers_stale_configs",
                "Configs the live pools serve as last known good",
                totals.stale_configs,
            ),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        up = GaugeMetricFamily(
            "corevoice_telemetry_feed_up", "1 while a feed consumes", labels=["stream"]
        )
        for stream, state in sorted(m.feeds.items()):
            up.add_metric([stream], 1.0 if state == "ok" else 0.0)
        yield up
