"""Telemetry's event -> metric mapping: every catalogued metric and label, the cardinality
guard, the active-call set, the fleet and config propagation (no bus: events applied
directly to `Metrics`; the consumers are tested against real NATS in
tests/integration/test_telemetry.py)."""

import datetime as dt

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core_voice_contracts.events import (
    CallEnded,
    CallFailed,
    CallStarted,
    ChangeKind,
    ConfigChanged,
    ConfigHeld,
    JobAccepted,
    JobDispatched,
    JobExpired,
    JobRejected,
    JobRequested,
    RejectReason,
    TurnLatency,
    WorkerStatus,
)
from core_voice_telemetry.active import ActiveCalls
from core_voice_telemetry.fleet import Fleet, Propagation
from core_voice_telemetry.metrics import Metrics
from tests.fakes.clock import Clock

pytestmark = pytest.mark.unit

T0 = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=10)
"""Recent: calls older than the look-back (hours) are pruned as never-ended, so a fixed
date here failed once the day went on."""


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def series(m: Metrics) -> int:
    """Every sample line /metrics would serve."""
    text = generate_latest(m.registry).decode()
    return sum(len(f.samples) for f in text_string_to_metric_families(text))


def routed(m: Metrics, agent: str = "sales", tenant: str = "acme", version: int = 1) -> None:
    m.observe_config(
        ConfigChanged(agent_id=agent, tenant_id=tenant, version=version, kind=ChangeKind.CREATED)
    )


def started(call: str, agent: str = "sales", **kw: object) -> CallStarted:
    fields: dict[str, object] = {
        "call_id": call,
        "job_id": f"j-{call}",
        "room_name": "r",
        "agent_id": agent,
        "tenant_id": "acme",
        "config_version": 1,
        "at": at(10),
    }
    fields.update(kw)
    return CallStarted(**fields)  # type: ignore[arg-type]


def test_job_events_move_the_job_counters_and_dispatch_latencies() -> None:
    m = Metrics()
    routed(m)
    m.observe_job(
        JobRequested(job_id="j1", room_name="r", room_sid="RM", agent_id="sales", at=at(0))
    )
    m.observe_job(
        JobDispatched(
            job_id="j1",
            room_name="r",
            agent_id="sales",
            dispatch_id="d",
            worker_agent_name="core-voice",
            campaign_id="spring",
            tenant_id="acme",
            requested_at=at(0),
            at=at(0.3),
        )
    )
    m.observe_job(
        JobAccepted(
            job_id="j1",
            room_name="r",
            agent_id="sales",
            call_id="c1",
            worker_id="w1",
            campaign_id="spring",
            requested_at=at(0),
            at=at(0.6),
        )
    )
    m.observe_job(
        JobRejected(job_id="j2", room_name="r", agent_id="sales", reason=RejectReason.NO_ROUTE)
    )
    m.observe_job(JobExpired(job_id="j3", room_name="r", agent_id="sales"))
    base = {"tenant": "acme", "agent": "sales"}
    assert value(m, "corevoice_jobs_requested_total", **base, campaign="none") == 1
    assert (
        value(m, "corevoice_jobs_dispatched_total", **base, campaign="spring", target="pool") == 1
    )
    assert value(m, "corevoice_jobs_accepted_total", **base, campaign="spring") == 1
    assert (
        value(m, "corevoice_jobs_rejected_total", **base, campaign="none", reason="no_route") == 1
    )
    assert value(m, "corevoice_jobs_expired_total", **base, campaign="none") == 1
    for stage, seconds in (("dispatched", 0.3), ("accepted", 0.6)):
        labels = {**base, "stage": stage}
        assert value(m, "corevoice_dispatch_latency_seconds_count", **labels) == 1
        assert value(m, "corevoice_dispatch_latency_seconds_sum", **labels) == pytest.approx(
            seconds
        )


def test_a_replayed_dispatch_observes_no_dispatch_latency() -> None:
    m = Metrics()
    m.observe_job(
        JobDispatched(
            job_id="j1",
            room_name="r",
            agent_id="sales",
            dispatch_id="d",
            worker_agent_name="core-voice",
            tenant_id="acme",
            already_existed=True,
            requested_at=at(0),
            at=at(600),
        )
    )
    labels = {"tenant": "acme", "agent": "sales", "campaign": "none", "target": "pool"}
    assert value(m, "corevoice_jobs_dispatched_total", **labels) == 1
    stage = {"tenant": "acme", "agent": "sales", "stage": "dispatched"}
    assert value(m, "corevoice_dispatch_latency_seconds_count", **stage) is None


def test_call_events_move_outcomes_latencies_and_the_active_gauge() -> None:
    m = Metrics()
    routed(m)
    m.observe_call(started("c1", campaign_id=None, config_stale=True, requested_at=at(8.5)))
    active = {"tenant": "acme", "agent": "sales", "campaign": "none"}
    assert value(m, "corevoice_calls_active", **active) == 1
    m.observe_call(
        CallEnded(
            call_id="c1",
            job_id="j-c1",
            room_name="r",
            agent_id="sales",
            tenant_id="acme",
            config_version=1,
            duration_s=42.0,
            greeting_latency_s=0.8,
            turn_metrics=[
                TurnLatency(stt_final_s=0.2, end_of_turn_s=0.3, llm_ttft_s=0.4, e2e_s=0.9),
                TurnLatency(tts_ttfb_s=0.15),
            ],
            at=at(52),
        )
    )
    m.observe_call(started("c2", requested_at=None))
    m.observe_call(
        CallFailed(
            call_id="c2",
            job_id="j-c2",
            room_name="r",
            agent_id="sales",
            tenant_id="acme",
            config_version=1,
            error="provider_unavailable",
            at=at(20),
        )
    )
    m.observe_call(
        CallFailed(
            call_id="c3",
            job_id="j",
            room_name="r",
            agent_id="sales",
            tenant_id="acme",
            error="free text from somewhere",
        )
    )
    call = {**active, "config_version": "1"}
    assert value(m, "corevoice_calls_started_total", **call) == 2
    assert value(m, "corevoice_calls_ended_total", **call) == 1
    assert value(m, "corevoice_calls_failed_total", **call, reason="provider_unavailable") == 1
    assert (
        value(m, "corevoice_calls_failed_total", **active, config_version="none", reason="other")
        == 1
    )
    assert value(m, "corevoice_calls_stale_config_total", tenant="acme", agent="sales") == 1
    assert value(m, "corevoice_calls_active", **active) == 0  # still served, at 0
    assert value(m, "corevoice_call_duration_seconds_sum", **active) == 42.0
    assert value(m, "corevoice_greeting_latency_seconds_sum", **active) == pytest.approx(0.8)
    joined = {"tenant": "acme", "agent": "sales", "stage": "joined"}
    assert value(m, "corevoice_dispatch_latency_seconds_sum", **joined) == pytest.approx(1.5)
    for stage, seconds in (
        ("stt", 0.2),
        ("end_of_turn", 0.3),
        ("llm_ttft", 0.4),
        ("tts_ttfb", 0.15),
        ("e2e", 0.9),
    ):
        labels = {**active, "stage": stage}
        assert value(m, "corevoice_turn_latency_seconds_count", **labels) == 1, stage
        assert value(m, "corevoice_turn_latency_seconds_sum", **labels) == pytest.approx(seconds)


def test_turn_figures_of_an_older_worker_count_as_end_to_end() -> None:
    m = Metrics()
    routed(m)
    m.observe_call(
        CallEnded(
            call_id="c1",
            job_id="j",
            room_name="r",
            agent_id="sales",
            tenant_id="acme",
            config_version=1,
            duration_s=3,
            turn_latencies_s=[0.5, 0.7],
        )
    )
    labels = {"tenant": "acme", "agent": "sales", "campaign": "none", "stage": "e2e"}
    assert value(m, "corevoice_turn_latency_seconds_count", **labels) == 2


def test_config_changes_count_by_tenant_agent_and_kind() -> None:
    m = Metrics()
    routed(m)
    m.observe_config(
        ConfigChanged(agent_id="sales", tenant_id="acme", version=2, kind=ChangeKind.UPDATED)
    )
    m.observe_config(
        ConfigChanged(
            agent_id="sales",
            tenant_id="acme",
            version=3,
            kind=ChangeKind.CAMPAIGN,
            campaign_id="spring",
        )
    )
    for kind in ("created", "updated", "campaign"):
        assert (
            value(m, "corevoice_config_changes_total", tenant="acme", agent="sales", kind=kind) == 1
        )


# --- the cardinality guard ----------------------------------------------------------------


def test_an_agent_never_routed_is_folded_into_other_with_an_unknown_tenant() -> None:
    m = Metrics()
    routed(m)
    before = series(m)
    for i in range(500):
        made_up = f"made-up-{i}"
        m.observe_job(JobRequested(job_id=f"j{i}", room_name="r", room_sid="RM", agent_id=made_up))
        m.observe_job(
            JobRejected(
                job_id=f"j{i}", room_name="r", agent_id=made_up, reason=RejectReason.UNKNOWN_AGENT
            )
        )
    other = {"tenant": "unknown", "agent": "other", "campaign": "none"}
    assert value(m, "corevoice_jobs_requested_total", **other) == 500
    assert value(m, "corevoice_telemetry_label_overflow_total", label="unrouted") == 1000
    # Two series (requested, rejected) and one overflow counter (+ its _created): not 500.
    assert series(m) - before <= 6


def test_a_new_agents_first_request_waits_for_its_dispatch_to_be_labelled() -> None:
    """The jobs feed can run ahead of the config feed: the request of an agent created a
    moment ago comes before its announcement. Its dispatch routes the agent, so the
    request waits for it instead of being folded into ``other``."""
    m = Metrics()
    labels = {"tenant": "acme", "agent": "fresh", "campaign": "none"}
    m.observe_job(JobRequested(job_id="j1", room_name="r", room_sid="RM", agent_id="fresh"))
    m.observe_job(JobRequested(job_id="j1", room_name="r", room_sid="RM", agent_id="fresh"))
    assert value(m, "corevoice_jobs_requested_total", **labels) is None
    m.observe_job(
        JobDispatched(
            job_id="j1",
            room_name="r",
            agent_id="fresh",
            dispatch_id="d",
            worker_agent_name="core-voice",
            tenant_id="acme",
        )
    )
    assert value(m, "corevoice_jobs_requested_total", **labels) == 2
    assert value(m, "corevoice_telemetry_label_overflow_total", label="unrouted") is None
    # Routed now: the next request is counted at once.
    m.observe_job(JobRequested(job_id="j2", room_name="r", room_sid="RM", agent_id="fresh"))
    assert value(m, "corevoice_jobs_requested_total", **labels) == 3


def test_a_request_whose_job_goes_quiet_is_folded_after_the_wait_or_the_bound() -> None:
    now = [0.0]
    m = Metrics(request_wait_s=10.0, max_waiting_requests=2, clock=lambda: now[0])
    other = {"tenant": "unknown", "agent": "other", "campaign": "none"}
    for i in range(3):  # the third pushes the oldest out of the bound
        m.observe_job(JobRequested(job_id=f"j{i}", room_name="r", room_sid="RM", agent_id="x"))
    assert value(m, "corevoice_jobs_requested_total", **other) == 1
    now[0] = 9.0
    m.count_overdue()
    assert value(m, "corevoice_jobs_requested_total", **other) == 1
    now[0] = 10.0
    m.count_overdue()
    assert value(m, "corevoice_jobs_requested_total", **other) == 3
    assert value(m, "corevoice_telemetry_label_overflow_total", label="unrouted") == 3


def test_a_deleted_agent_is_not_routed_by_its_deletion() -> None:
    m = Metrics()
    m.observe_config(
        ConfigChanged(agent_id="gone", tenant_id="acme", version=4, kind=ChangeKind.DELETED)
    )
    assert not m.guard.routed("gone")
    assert (
        value(m, "corevoice_config_changes_total", tenant="unknown", agent="other", kind="deleted")
        == 1
    )


def test_agents_beyond_the_bound_fold_into_other_and_are_counted() -> None:
    m = Metrics(max_agents=5)
    for i in range(50):
        routed(m, agent=f"agent-{i}", tenant="acme")
        m.observe_call(started(f"c{i}", agent=f"agent-{i}"))
    agents = {
        s.labels["agent"]
        for f in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in f.samples
        if s.name == "corevoice_calls_started_total"
    }
    assert agents == {f"agent-{i}" for i in range(5)} | {"other"}
    folded = {"tenant": "acme", "agent": "other", "campaign": "none", "config_version": "other"}
    assert value(m, "corevoice_calls_started_total", **folded) == 45
    # 45 config changes and 45 call starts folded.
    assert value(m, "corevoice_telemetry_label_overflow_total", label="agent") == 90


def test_campaigns_are_labelled_once_routed_and_bounded() -> None:
    m = Metrics(max_campaigns=2)
    routed(m)
    for i in range(4):
        m.observe_call(started(f"c{i}", campaign_id=f"camp-{i}"))
    campaigns = {
        s.labels["campaign"]
        for f in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in f.samples
        if s.name == "corevoice_calls_started_total"
    }
    assert campaigns == {"camp-0", "camp-1", "other"}
    # A room naming a campaign nobody routed does not create a campaign label either.
    m2 = Metrics()
    routed(m2)
    m2.observe_job(
        JobRequested(job_id="j", room_name="r", room_sid="RM", agent_id="sales", campaign_id="x")
    )
    labels = {"tenant": "acme", "agent": "sales", "campaign": "other"}
    assert value(m2, "corevoice_jobs_requested_total", **labels) == 1


def test_an_agent_keeps_its_newest_config_versions_and_older_ones_fold() -> None:
    m = Metrics(max_versions=3)
    routed(m)
    for version in range(1, 7):
        m.observe_call(started(f"c{version}", config_version=version))
    m.observe_call(started("late", config_version=2))
    versions = {
        s.labels["config_version"]
        for f in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in f.samples
        if s.name == "corevoice_calls_started_total"
    }
    assert versions == {"4", "5", "6", "older"}
    assert value(m, "corevoice_telemetry_label_overflow_total", label="config_version") == 1


# --- state: active calls --------------------------------------------------------------------


def test_active_calls_are_idempotent_and_a_late_start_does_not_come_back() -> None:
    active = ActiveCalls(lookback_s=3600)
    labels = ("acme", "sales", "none")
    active.start("c1", at(0), labels)
    active.start("c1", at(0), labels)  # replayed
    assert active.counts() == {labels: 1}
    active.end("c1", at(5))
    active.start("c1", at(0), labels)  # the start delivered again after the end
    active.end("c2", at(6))  # a call that failed before it started
    active.start("c2", at(1), labels)
    assert active.counts() == {labels: 0}
    active.start("c3", at(0), labels)
    active.prune(at(3601))  # never ended: forgotten after the look-back
    assert len(active) == 0


def test_learning_counts_nothing() -> None:
    """The start-up replay applies `learn_*`: state only, no counter moves."""
    m = Metrics()
    m.learn_config(
        ConfigChanged(agent_id="sales", tenant_id="acme", version=1, kind=ChangeKind.CREATED)
    )
    m.learn_call(started("c1"))
    assert m.guard.routed("sales")
    labels = {"tenant": "acme", "agent": "sales", "campaign": "none"}
    assert value(m, "corevoice_calls_active", **labels) == 1
    assert value(m, "corevoice_calls_started_total", **labels, config_version="1") is None
    assert value(m, "corevoice_config_changes_total", **labels) is None


# --- fleet and propagation --------------------------------------------------------------------


def test_fleet_gauges_follow_heartbeats_and_forget_a_silent_pool() -> None:
    m = Metrics()
    clock = Clock(100.0)
    m.fleet = Fleet(clock)
    m.observe_worker(WorkerStatus(worker_id="w1", capacity=4, active_calls=3, interval_s=5))
    m.observe_worker(
        WorkerStatus(
            worker_id="w2", capacity=4, active_calls=1, draining=True, interval_s=5, stale_configs=2
        )
    )
    assert value(m, "corevoice_workers") == 2
    assert value(m, "corevoice_workers_draining") == 1
    assert value(m, "corevoice_workers_capacity") == 8
    assert value(m, "corevoice_workers_active_calls") == 4
    assert value(m, "corevoice_workers_utilisation") == 0.5
    assert value(m, "corevoice_workers_stale_configs") == 2
    clock.now += 10
    m.observe_worker(WorkerStatus(worker_id="w1", capacity=4, active_calls=2, interval_s=5))
    clock.now += 6  # w2 silent for 16 s > 3 x 5 s
    assert value(m, "corevoice_workers") == 1
    assert value(m, "corevoice_workers_utilisation") == 0.5
    assert value(m, "corevoice_workers_stale_configs") == 0


def held(worker: str, seconds: float, version: int = 2) -> ConfigHeld:
    return ConfigHeld(
        worker_id=worker,
        agent_id="sales",
        tenant_id="acme",
        version=version,
        changed_at=at(0),
        at=at(seconds),
    )


def propagation(m: Metrics, clock: Clock, window_s: float = 30.0) -> None:
    m.fleet = Fleet(clock)
    m.propagation = Propagation(
        m.fleet,
        window_s,
        first=lambda t, s: m.config_propagation.labels(t, "first").observe(s),
        all_=lambda t, s: m.config_propagation.labels(t, "all").observe(s),
        incomplete=lambda t: m.config_propagation_incomplete.labels(t).inc(),
        clock=clock,
    )


def test_config_propagation_to_the_first_pool_and_to_all() -> None:
    m = Metrics()
    routed(m)
    clock = Clock(100.0)
    propagation(m, clock)
    for w in ("w1", "w2", "w3"):
        m.observe_worker(WorkerStatus(worker_id=w, capacity=2, active_calls=0, interval_s=60))
    first = {"tenant": "acme", "target": "first"}
    every = {"tenant": "acme", "target": "all"}
    # Version 1: no pool known to hold the agent yet, so "all" is whoever reported
    # within the window, observed when it closes.
    m.observe_worker(held("w1", 0.1, version=1))
    m.observe_worker(held("w2", 0.4, version=1))
    assert value(m, "corevoice_config_propagation_seconds_count", **every) is None
    clock.now += 31
    m.propagation.sweep()
    assert value(m, "corevoice_config_propagation_seconds_sum", **every) == pytest.approx(0.4)
    assert value(m, "corevoice_config_propagation_incomplete_total", tenant="acme") is None
    # Version 2: w1 and w2 hold the agent (w3 never did: it is not waited for).
    m.observe_worker(held("w1", 0.2))
    assert value(m, "corevoice_config_propagation_seconds_count", **first) == 2
    assert value(m, "corevoice_config_propagation_seconds_count", **every) == 1
    m.observe_worker(held("w1", 0.3))  # the same pool again changes nothing
    m.observe_worker(held("w2", 0.5))
    assert value(m, "corevoice_config_propagation_seconds_count", **first) == 2
    assert value(m, "corevoice_config_propagation_seconds_count", **every) == 2
    assert value(m, "corevoice_config_propagation_seconds_sum", **every) == pytest.approx(0.9)
    m.observe_worker(held("w3", 0.9))  # late, after all: finished already
    assert value(m, "corevoice_config_propagation_seconds_count", **every) == 2
    assert len(m.propagation) == 0


def test_config_propagation_not_reaching_every_pool_in_the_window_is_incomplete() -> None:
    m = Metrics()
    routed(m)
    clock = Clock(100.0)
    propagation(m, clock, window_s=30)
    for w in ("w1", "w2"):
        m.observe_worker(WorkerStatus(worker_id=w, capacity=2, active_calls=0, interval_s=60))
        m.observe_worker(held(w, 0.1, version=1))
    m.observe_worker(held("w1", 0.2))
    clock.now += 10
    m.propagation.sweep()
    assert value(m, "corevoice_config_propagation_incomplete_total", tenant="acme") is None
    clock.now += 25
    m.propagation.sweep()
    assert value(m, "corevoice_config_propagation_incomplete_total", tenant="acme") == 1
    assert len(m.propagation) == 0


def test_a_holder_that_goes_away_is_not_waited_for() -> None:
    m = Metrics()
    routed(m)
    clock = Clock(100.0)
    propagation(m, clock)
    for w in ("w1", "w2"):
        m.observe_worker(WorkerStatus(worker_id=w, capacity=2, active_calls=0, interval_s=5))
        m.observe_worker(held(w, 0.1, version=1))
    m.observe_worker(held("w1", 0.2))
    clock.now += 10
    m.observe_worker(WorkerStatus(worker_id="w1", capacity=2, active_calls=0, interval_s=5))
    clock.now += 6  # w2 silent for 16 s: gone
    m.propagation.sweep()
    every = {"tenant": "acme", "target": "all"}
    assert value(m, "corevoice_config_propagation_seconds_sum", **every) == pytest.approx(0.2)
    assert value(m, "corevoice_config_propagation_incomplete_total", tenant="acme") is None
