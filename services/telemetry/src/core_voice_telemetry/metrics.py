"""The Prometheus metrics and how each event moves them.

Metric and label names are the dashboard contract: change them only with the Grafana
dashboards and alert rules in ``deploy/``. Labels are ids and fixed codes, never
free text, so cardinality stays bounded by the number of agents.
"""

from prometheus_client import CollectorRegistry, Counter, Histogram

from core_voice_contracts.events import (
    CallEnded,
    CallEvent,
    CallFailed,
    CallStarted,
    ConfigChanged,
    JobAccepted,
    JobDispatched,
    JobEvent,
    JobExpired,
    JobRejected,
    JobRequested,
)

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs_requested = Counter(
            "corevoice_jobs_requested", "Jobs requested by room webhooks", ["agent_id"], registry=r
        )
        self.jobs_dispatched = Counter(
            "corevoice_jobs_dispatched",
            "Jobs dispatched to the pool",
            ["agent_id"],
            registry=r,
        )
        self.jobs_accepted = Counter(
            "corevoice_jobs_accepted",
            "Jobs a worker pool was assigned by LiveKit",
            ["agent_id"],
            registry=r,
        )
        self.jobs_rejected = Counter(
            "corevoice_jobs_rejected",
            "Jobs not routed",
            ["agent_id", "reason"],
            registry=r,
        )
        self.jobs_expired = Counter(
            "corevoice_jobs_expired",
            "Jobs whose room was gone",
            ["agent_id"],
            registry=r,
        )
        self.calls_started = Counter(
            "corevoice_calls_started", "Calls a worker started", ["agent_id"], registry=r
        )
        self.calls_ended = Counter(
            "corevoice_calls_ended", "Calls that ended normally", ["agent_id"], registry=r
        )
        self.calls_failed = Counter(
            "corevoice_calls_failed", "Calls that failed", ["agent_id", "error"], registry=r
        )
        self.call_duration = Histogram(
            "corevoice_call_duration_seconds",
            "Duration of ended calls",
            ["agent_id"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.greeting_latency = Histogram(
            "corevoice_greeting_latency_seconds",
            "Call start to the first greeting audio",
            ["agent_id"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_latency = Histogram(
            "corevoice_turn_latency_seconds",
            "End of caller speech to the start of the agent's answer",
            ["agent_id"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.config_changes = Counter(
            "corevoice_config_changes", "Agent config changes", ["agent_id", "kind"], registry=r
        )
        self.poison_messages = Counter(
            "corevoice_telemetry_poison_messages",
            "Messages terminated unapplied: undecodable, invalid (agent id), or failed "
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

    def observe_job(self, event: JobEvent) -> None:
        match event:
            case JobRequested(agent_id=agent):
                self.jobs_requested.labels(agent).inc()
            case JobDispatched(agent_id=agent):
                self.jobs_dispatched.labels(agent).inc()
            case JobAccepted(agent_id=agent):
                self.jobs_accepted.labels(agent).inc()
            case JobRejected(agent_id=agent, reason=reason):
                self.jobs_rejected.labels(agent, reason.value).inc()
            case JobExpired(agent_id=agent):
                self.jobs_expired.labels(agent).inc()

    def observe_call(self, event: CallEvent) -> None:
        match event:
            case CallStarted(agent_id=agent):
                self.calls_started.labels(agent).inc()
            case CallEnded(agent_id=agent):
                self.calls_ended.labels(agent).inc()
                self.call_duration.labels(agent).observe(event.duration_s)
                if event.greeting_latency_s is not None:
                    self.greeting_latency.labels(agent).observe(event.greeting_latency_s)
                for latency in event.turn_latencies_s:
                    self.turn_latency.labels(agent).observe(latency)
            case CallFailed(agent_id=agent, error=error):
                self.calls_failed.labels(agent, error).inc()

    def observe_config(self, event: ConfigChanged) -> None:
        self.config_changes.labels(event.agent_id, event.kind.value).inc()
