"""Telemetry as its own process on a real NATS server (JetStream, per-role users).

What only the running service can show: a restart in the middle of a stream loses no
event and rebuilds the active-call gauge and the routed agents; heartbeats make and
expire the fleet gauges; `ConfigHeld` reports give propagation lag; 10,000 jobs naming
made-up agents leave the number of series bounded. The event -> metric mapping itself
is unit-tested (tests/unit/test_telemetry_metrics.py).
"""

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from core_voice_cli.procs import ManagedProcess, free_port, http_ready
from core_voice_cli.servers import NatsServer
from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import publish
from core_voice_contracts.events import (
    CallEnded,
    CallFailed,
    CallStarted,
    ChangeKind,
    ConfigChanged,
    ConfigHeld,
    JobRejected,
    JobRequested,
    RejectReason,
    WorkerStatus,
    utcnow,
)
from core_voice_contracts.permissions import Role
from core_voice_contracts.streams import VOICE_CALLS, VOICE_JOBS
from tests.waiting import until

pytestmark = pytest.mark.integration

WINDOW_S = 2.0
"""TELEMETRY_PROPAGATION_WINDOW_S of the service under test."""

Labels = tuple[tuple[str, str], ...]


class Telemetry:
    """The service as a process that tests stop and start again on the same port."""

    def __init__(self, nats: NatsServer, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **nats.env(Role.TELEMETRY),
            "TELEMETRY_HTTP_PORT": str(self.port),
            "TELEMETRY_PROPAGATION_WINDOW_S": str(WINDOW_S),
            "TELEMETRY_PENDING_INTERVAL_S": "0.2",
            "PYTHONUNBUFFERED": "1",
        }
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        self.process = ManagedProcess(
            "telemetry",
            [sys.executable, "-m", "core_voice_telemetry"],
            log_dir=self.log_dir,
            env={**os.environ, **self.env},
            ready=http_ready(f"{self.url}/healthz"),
        )
        self.process.start().wait_ready(60)

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.stop() == 0, self.process.log_tail()
            self.process = None

    def samples(self, name: str) -> dict[Labels, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return {
            tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        }

    def value(self, name: str, **labels: str) -> float:
        return self.samples(name).get(tuple(sorted(labels.items())), 0.0)

    def series(self) -> int:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return sum(len(family.samples) for family in text_string_to_metric_families(text))


@pytest.fixture(scope="module")
def telemetry(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Telemetry]:
    service = Telemetry(nats_server, tmp_path_factory.mktemp("telemetry"))
    service.start()
    try:
        yield service
    finally:
        service.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def settled(js: JetStreamContext) -> bool:
    """Telemetry's durable consumers have applied everything published so far."""
    for stream, durable in ((VOICE_JOBS, "telemetry-jobs"), (VOICE_CALLS, "telemetry-calls")):
        info = await js.consumer_info(stream, durable)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


def call_started(agent_id: str, call_id: str) -> CallStarted:
    return CallStarted(
        call_id=call_id,
        job_id=f"job-{call_id}",
        room_name=f"room-{call_id}",
        agent_id=agent_id,
        tenant_id="acme",
        config_version=1,
    )


def call_ended(agent_id: str, call_id: str) -> CallEnded:
    return CallEnded(
        call_id=call_id,
        job_id=f"job-{call_id}",
        room_name=f"room-{call_id}",
        agent_id=agent_id,
        tenant_id="acme",
        config_version=1,
        duration_s=12.0,
    )


def job_requested(agent_id: str, n: int) -> JobRequested:
    return JobRequested(
        job_id=f"job-{agent_id}-{n}", room_name="r", room_sid="RM", agent_id=agent_id
    )


async def test_a_restart_mid_stream_loses_no_event_and_rebuilds_active_calls(
    telemetry: Telemetry, bus: tuple[Client, JetStreamContext]
) -> None:
    _, js = bus
    agent = unique("restart")
    await publish(
        js,
        subjects.config_changed(agent),
        ConfigChanged(agent_id=agent, tenant_id="acme", version=1, kind=ChangeKind.CREATED),
    )
    # An agent that has only jobs while telemetry is down: only the replay of
    # VOICE_CONFIG can tell the restarted telemetry it was routed.
    quiet = unique("quiet")
    await publish(
        js,
        subjects.config_changed(quiet),
        ConfigChanged(agent_id=quiet, tenant_id="acme", version=1, kind=ChangeKind.CREATED),
    )
    calls = [f"{agent}-c{i}" for i in range(7)]
    for call_id in calls[:5]:
        await publish(js, subjects.call_started(agent), call_started(agent, call_id))
    await publish(js, subjects.call_ended(agent), call_ended(agent, calls[0]))
    for n in range(100):
        await publish(js, subjects.job_requested(agent), job_requested(agent, n))
    job = {"tenant": "acme", "agent": agent, "campaign": "none"}
    call = {**job, "config_version": "1"}
    await until(lambda: telemetry.value("corevoice_jobs_requested_total", **job) == 100, 15)
    assert telemetry.value("corevoice_calls_started_total", **call) == 5
    assert telemetry.value("corevoice_calls_active", **job) == 4

    telemetry.stop()
    # While telemetry is down: two more calls start, one ends, one fails, 100 more jobs.
    for call_id in calls[5:]:
        await publish(js, subjects.call_started(agent), call_started(agent, call_id))
    await publish(js, subjects.call_ended(agent), call_ended(agent, calls[1]))
    failed = CallFailed(
        call_id=calls[2],
        job_id="j",
        room_name="r",
        agent_id=agent,
        tenant_id="acme",
        config_version=1,
        error="call_error",
    )
    await publish(js, subjects.call_failed(agent), failed)
    for n in range(100, 200):
        await publish(js, subjects.job_requested(agent), job_requested(agent, n))
    for n in range(3):
        await publish(js, subjects.job_requested(quiet), job_requested(quiet, n))

    # ...and 100 more while it starts again.
    async def more_jobs() -> None:
        for n in range(200, 300):
            await publish(js, subjects.job_requested(agent), job_requested(agent, n))
            await asyncio.sleep(0.005)

    publishing = asyncio.create_task(more_jobs())
    await asyncio.to_thread(telemetry.start)
    await publishing
    await until(lambda: settled(js), 15)
    # Counters restart at zero (as Prometheus expects) and count every event since the
    # stop exactly once; the agent is still routed (relearned from VOICE_CONFIG), so
    # its events are not folded into "other".
    await until(lambda: telemetry.value("corevoice_jobs_requested_total", **job) == 200, 15)
    assert telemetry.value("corevoice_jobs_requested_total", **{**job, "agent": quiet}) == 3
    assert telemetry.value("corevoice_calls_started_total", **call) == 2
    assert telemetry.value("corevoice_calls_ended_total", **call) == 1
    assert telemetry.value("corevoice_calls_failed_total", **call, reason="call_error") == 1
    # The gauge counts every call in progress, including those started before the
    # restart: c3, c4, c5, c6 (c0 and c1 ended, c2 failed).
    assert telemetry.value("corevoice_calls_active", **job) == 4
    # A start delivered late for a call already ended does not bring it back.
    await js.publish(subjects.call_started(agent), codec.encode(call_started(agent, calls[0])))
    await until(lambda: settled(js), 15)
    await until(lambda: telemetry.value("corevoice_calls_started_total", **call) == 3, 10)
    assert telemetry.value("corevoice_calls_active", **job) == 4
    for call_id in calls[3:]:
        await publish(js, subjects.call_ended(agent), call_ended(agent, call_id))
    await until(lambda: telemetry.value("corevoice_calls_active", **job) == 0, 10)
    await until(
        lambda: telemetry.value("corevoice_telemetry_consumer_pending", stream=VOICE_JOBS) == 0, 10
    )
    for stream in (VOICE_JOBS, VOICE_CALLS, "workers"):
        assert telemetry.value("corevoice_telemetry_feed_up", stream=stream) == 1


def beat(
    worker: str,
    *,
    capacity: int = 4,
    active: int = 0,
    interval_s: float = 0.3,
    draining: bool = False,
) -> bytes:
    return codec.encode(
        WorkerStatus(
            worker_id=worker,
            capacity=capacity,
            active_calls=active,
            interval_s=interval_s,
            draining=draining,
            stale_configs=1,
        )
    )


async def test_heartbeats_make_the_fleet_gauges_and_a_silent_pool_expires(
    telemetry: Telemetry, worker_bus: Client
) -> None:
    w1, w2 = unique("pool"), unique("pool")
    # Garbage and an id nobody has are counted and skipped, not held.
    await worker_bus.publish(subjects.WORKER_STATUS, b"\x00{garbage")
    await worker_bus.publish(subjects.WORKER_STATUS, beat("w" * 100_000))
    await until(
        lambda: (
            telemetry.value(
                "corevoice_telemetry_poison_messages_total", stream="workers", reason="undecodable"
            )
            == 1
            and telemetry.value(
                "corevoice_telemetry_poison_messages_total", stream="workers", reason="invalid"
            )
            == 1
        ),
        5,
    )
    assert telemetry.value("corevoice_workers") == 0
    await worker_bus.publish(subjects.WORKER_STATUS, beat(w1, capacity=4, active=3))
    await worker_bus.publish(subjects.WORKER_STATUS, beat(w2, capacity=4, active=1, draining=True))
    await worker_bus.flush()
    await until(lambda: telemetry.value("corevoice_workers") == 2, 5)
    assert telemetry.value("corevoice_workers_capacity") == 8
    assert telemetry.value("corevoice_workers_active_calls") == 4
    assert telemetry.value("corevoice_workers_utilisation") == 0.5
    assert telemetry.value("corevoice_workers_draining") == 1
    assert telemetry.value("corevoice_workers_stale_configs") == 2

    async def keep_beating() -> None:
        while True:
            await worker_bus.publish(subjects.WORKER_STATUS, beat(w1, capacity=4, active=2))
            await asyncio.sleep(0.1)

    beating = asyncio.create_task(keep_beating())
    try:
        # w2 is silent: gone after three of its intervals (0.9 s).
        await until(lambda: telemetry.value("corevoice_workers") == 1, 5)
        assert telemetry.value("corevoice_workers_utilisation") == 0.5
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
    await until(lambda: telemetry.value("corevoice_workers") == 0, 5)
    assert telemetry.value("corevoice_workers_utilisation") == 0


async def test_config_held_reports_give_propagation_to_first_all_and_incomplete(
    telemetry: Telemetry, bus: tuple[Client, JetStreamContext], worker_bus: Client
) -> None:
    _, js = bus
    agent, tenant = unique("prop"), unique("tenant")
    changed = ConfigChanged(agent_id=agent, tenant_id=tenant, version=2, kind=ChangeKind.UPDATED)
    await publish(js, subjects.config_changed(agent), changed)
    await until(
        lambda: (
            telemetry.value(
                "corevoice_config_changes_total", tenant=tenant, agent=agent, kind="updated"
            )
            == 1
        ),
        10,
    )
    w1, w2 = unique("pool"), unique("pool")

    async def keep_beating() -> None:
        while True:
            for worker in (w1, w2):
                await worker_bus.publish(subjects.WORKER_STATUS, beat(worker, interval_s=1.0))
            await asyncio.sleep(0.2)

    def held(worker: str, version: int) -> bytes:
        return codec.encode(
            ConfigHeld(
                worker_id=worker,
                agent_id=agent,
                tenant_id=tenant,
                version=version,
                changed_at=changed.at,
            )
        )

    def count(target: str) -> float:
        return telemetry.value(
            "corevoice_config_propagation_seconds_count", tenant=tenant, target=target
        )

    beating = asyncio.create_task(keep_beating())
    try:
        await until(lambda: telemetry.value("corevoice_workers") >= 2, 5)
        # Version 1: no pool is known to hold the agent yet: "all" is whoever reported
        # within the window, observed when it closes; nothing is incomplete.
        for worker in (w1, w2):
            await worker_bus.publish(subjects.CONFIG_HELD, held(worker, 1))
        await until(lambda: count("first") == 1, 5)
        assert count("all") == 0
        await until(lambda: count("all") == 1, WINDOW_S + 5)
        # Version 2: both pools hold the agent; "all" once the second reports.
        await worker_bus.publish(subjects.CONFIG_HELD, held(w1, 2))
        await until(lambda: count("first") == 2, 5)
        assert count("all") == 1
        await worker_bus.publish(subjects.CONFIG_HELD, held(w2, 2))
        await until(lambda: count("all") == 2, 5)
        lag = telemetry.value(
            "corevoice_config_propagation_seconds_sum", tenant=tenant, target="all"
        )
        assert 0 <= lag < 2 * (utcnow() - changed.at).total_seconds()
        # Version 3 reaches one pool of two: incomplete once the window is past.
        await worker_bus.publish(subjects.CONFIG_HELD, held(w1, 3))
        await until(lambda: count("first") == 3, 5)
        await until(
            lambda: (
                telemetry.value("corevoice_config_propagation_incomplete_total", tenant=tenant) == 1
            ),
            WINDOW_S + 5,
        )
        assert count("all") == 2
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating


async def test_ten_thousand_jobs_naming_made_up_agents_leave_the_series_bounded(
    telemetry: Telemetry, bus: tuple[Client, JetStreamContext]
) -> None:
    _, js = bus
    other = {"tenant": "unknown", "agent": "other", "campaign": "none"}
    requested = telemetry.value("corevoice_jobs_requested_total", **other)
    rejected = telemetry.value("corevoice_jobs_rejected_total", **other, reason="unknown_agent")
    # Every series the rejections and requests of made-up agents can make exists once.
    await publish(js, subjects.job_requested("seed-x"), job_requested("seed-x", 0))
    await publish(
        js,
        subjects.job_rejected("seed-x"),
        JobRejected(  # the request of an agent never routed is counted on its outcome
            job_id="job-seed-x-0",
            room_name="r",
            agent_id="seed-x",
            reason=RejectReason.UNKNOWN_AGENT,
        ),
    )
    await until(
        lambda: telemetry.value("corevoice_jobs_requested_total", **other) == requested + 1, 10
    )
    await until(lambda: settled(js), 10)
    before = telemetry.series()

    async def room(n: int) -> None:
        agent = unique("made-up")
        await publish(js, subjects.job_requested(agent), job_requested(agent, n))
        reject = JobRejected(
            job_id=f"job-{agent}-{n}",
            room_name="r",
            agent_id=agent,
            reason=RejectReason.UNKNOWN_AGENT,
        )
        await publish(js, subjects.job_rejected(agent), reject)

    for start in range(0, 10_000, 500):
        await asyncio.gather(*(room(n) for n in range(start, start + 500)))
    await until(
        lambda: (
            telemetry.value("corevoice_jobs_requested_total", **other) == requested + 1 + 10_000
        ),
        60,
        interval=0.5,
    )
    await until(lambda: settled(js), 30)
    assert (
        telemetry.value("corevoice_jobs_rejected_total", **other, reason="unknown_agent")
        == rejected + 1 + 10_000
    )
    # Histogram buckets of dispatch latency etc. are not touched by these events; the only
    # growth allowed is none at all (every folded series existed already).
    assert telemetry.series() == before
    assert telemetry.value("corevoice_telemetry_label_overflow_total", label="unrouted") >= 20_000
