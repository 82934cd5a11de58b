"""Every service's own /metrics on real traffic: config_sync and the dispatcher as real
processes behind a real livekit-server and NATS (the dispatcher pipeline's rig), and a
voice-worker pool runtime on the same bus, its calls played over the real pool link.

Also: route labels stay bounded whatever ids clients send, no secret shows in any
/metrics, and the pool's heartbeat and ConfigHeld arrive on NATS with the right content.
"""

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import msgspec
import pytest
from livekit import api
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from core_voice_cli.demo import demo_agent
from core_voice_contracts import codec, subjects
from core_voice_contracts.admin_api import AgentPatch
from core_voice_contracts.bus import connect
from core_voice_contracts.events import (
    CallStarted,
    ConfigChanged,
    ConfigFound,
    ConfigHeld,
    JobDispatched,
    JobRequested,
    TurnLatency,
    WorkerStatus,
)
from core_voice_contracts.permissions import Role
from core_voice_contracts.pool_link import LinkConfig, LinkGreeting, LinkTurn
from core_voice_contracts.rpc import get_runtime_config
from core_voice_worker.link import PoolLink
from core_voice_worker.pool import PoolRuntime
from core_voice_worker.settings import WorkerSettings
from tests.fakes.webhooks import room_started_body, sign
from tests.harness.dispatcher import Rig, admin, running_rig
from tests.harness.events import job_events, outcome_of
from tests.harness.pool import pool_settings, running_pool
from tests.waiting import until

pytestmark = pytest.mark.integration

PROVIDER_KEY = f"sk-metrics-canary-{uuid.uuid4().hex}"
STATUS_INTERVAL_S = 0.3

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("service-metrics")) as running:
        yield running


def metrics_pool_settings(rig: Rig, worker_id: str) -> WorkerSettings:
    return pool_settings(
        rig.nats, worker_id, status_interval_s=STATUS_INTERVAL_S, max_concurrency=7
    )


@pytest.fixture(scope="module")
async def pool(rig: Rig) -> AsyncIterator[PoolRuntime]:
    settings = metrics_pool_settings(rig, "pool-metrics")
    async with running_pool(settings, rig.base / "pool-link" / "sock") as runtime:
        yield runtime


@pytest.fixture
async def bus(rig: Rig) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc, js = await connect(rig.nats.access(Role.OPERATOR), name="test-service-metrics")
    try:
        yield nc, js
    finally:
        await nc.drain()


# --- helpers ---------------------------------------------------------------------------


def metrics_text(url: str) -> str:
    resp = httpx.get(f"{url}/metrics", timeout=10)  # no Authorization header: none needed
    assert resp.status_code == 200, (url, resp.status_code, resp.text[:200])
    assert resp.headers["content-type"].startswith("text/plain")
    return resp.text


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` whose labels include ``labels`` (0 when there is none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= ls)


def series(found: Samples, name: str) -> set[frozenset[tuple[str, str]]]:
    return {ls for (n, ls), _ in found.items() if n == name}


def post_webhook(url: str, body: bytes, authorization: str | None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return httpx.post(
        f"{url}/webhook/livekit", content=body, headers=headers, timeout=10
    ).status_code


def new_agent(rig: Rig) -> str:
    agent_id = f"m-{uuid.uuid4().hex[:8]}"
    body = msgspec.structs.replace(
        demo_agent(), id=agent_id, name=f"agent {agent_id}", keys={"openai": PROVIDER_KEY}
    )
    admin(rig, "POST", "/agents", body)
    return agent_id


def pool_url(pool: PoolRuntime) -> str:
    return f"http://127.0.0.1:{pool.health.port}"


async def pool_metrics(pool: PoolRuntime) -> str:
    """The in-process pool's /metrics (asked without blocking the loop that serves it)."""
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{pool_url(pool)}/metrics")
    assert resp.status_code == 200
    return resp.text


# --- config_sync -----------------------------------------------------------------------


async def test_config_sync_metrics_move_on_real_traffic(
    rig: Rig, bus: tuple[Client, JetStreamContext]
) -> None:
    url = rig.stack.config_sync_url
    before = samples(metrics_text(url))
    agent_id = new_agent(rig)
    runtime = {"Authorization": f"Bearer {rig.stack.runtime_token}"}
    async with httpx.AsyncClient(base_url=url, headers=runtime, timeout=10) as client:
        for _ in range(2):
            resp = await client.get(f"/api/v1/agents/{agent_id}/runtime-config")
            assert resp.status_code == 200
        assert (await client.get("/api/v1/agents/m-nobody/runtime-config")).status_code == 404
    worker, _ = await connect(rig.nats.access(Role.WORKER), name="metrics-worker", ensure=False)
    try:
        reply = await get_runtime_config(worker, agent_id, timeout=5)
        assert isinstance(reply, ConfigFound)
    finally:
        await worker.drain()

    async def published() -> bool:
        after = samples(metrics_text(url))
        return value(after, "corevoice_config_sync_outbox_publish_seconds_count") > value(
            before, "corevoice_config_sync_outbox_publish_seconds_count"
        )

    await until(published, timeout=10)
    after = samples(metrics_text(url))

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("corevoice_config_sync_config_get_seconds_count", outcome="found") >= 3
    assert moved("corevoice_config_sync_config_get_seconds_count", outcome="not_found") >= 1
    assert moved("corevoice_config_sync_cache_requests_total", result="hit") >= 2
    assert moved("corevoice_config_sync_cache_requests_total", result="miss") >= 1
    assert (
        moved(
            "corevoice_config_sync_http_requests_total",
            route="/api/v1/agents/{agent_id}/runtime-config",
            method="GET",
            status="200",
        )
        == 2
    )
    assert (
        moved(
            "corevoice_config_sync_http_requests_total",
            route="/api/v1/agents",
            method="POST",
            status="201",
        )
        == 1
    )
    assert value(after, "corevoice_config_sync_outbox_pending") == 0


async def test_route_labels_do_not_grow_with_ids(rig: Rig) -> None:
    """1,000 requests for random agent ids (and random unknown paths): the series stay a
    handful, and no id a client sent appears in /metrics."""
    url = rig.stack.config_sync_url
    ids = [f"nobody-{uuid.uuid4().hex}" for _ in range(1000)]
    headers = {"Authorization": f"Bearer {rig.stack.admin_token}"}
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=30, limits=limits
    ) as client:
        gate = asyncio.Semaphore(20)

        async def one(path: str) -> int:
            async with gate:
                return (await client.get(path)).status_code

        codes = await asyncio.gather(
            *(one(f"/api/v1/agents/{i}") for i in ids),
            *(one(f"/nothing/{i}") for i in ids[:100]),
        )
    assert set(codes) == {404}
    text = metrics_text(url)
    found = samples(text)
    requests = series(found, "corevoice_config_sync_http_requests_total")
    assert len(requests) < 30, sorted(map(sorted, requests))
    routes = {dict(ls)["route"] for ls in requests}
    assert "/api/v1/agents/{agent_id}" in routes and "unmatched" in routes
    assert not any(i in text for i in ids)
    latency = series(found, "corevoice_config_sync_http_request_seconds_count")
    assert len(latency) < 20


# --- dispatcher ------------------------------------------------------------------------


async def test_dispatcher_metrics_move_on_a_real_dispatch(
    rig: Rig, bus: tuple[Client, JetStreamContext]
) -> None:
    _, js = bus
    url = rig.dispatcher_url
    before = samples(metrics_text(url))
    agent_id = new_agent(rig)
    room = f"room-{agent_id}"
    async with api.LiveKitAPI(
        rig.livekit_url, rig.stack.livekit.api_key, rig.stack.livekit.api_secret
    ) as lk:
        created = await lk.room.create_room(
            api.CreateRoomRequest(name=room, metadata=json.dumps({"agent_id": agent_id}))
        )
        try:
            requested = await job_events(js, subjects.job_requested(agent_id), 1)
            job = requested[0]
            assert isinstance(job, JobRequested)
            dispatched = await outcome_of(js, job.job_id)
            assert isinstance(dispatched, JobDispatched), dispatched
        finally:
            await lk.room.delete_room(api.DeleteRoomRequest(room=created.name))
    # The latencies need no state downstream: the request time and tenant travel along.
    assert dispatched.requested_at == job.at
    agent = admin(rig, "GET", f"/agents/{agent_id}", None).json()
    assert dispatched.tenant_id == agent["tenant_id"] != ""

    # Refused webhooks are counted by their code; an event name LiveKit never sends
    # folds into "other" (a signed webhook may name anything).
    assert post_webhook(url, b"{}", None) == 401
    made_up = {"event": f"made_up_{uuid.uuid4().hex}", "id": "EV_odd", "createdAt": "0"}
    made_up["createdAt"] = str(int(time.time()))
    odd = json.dumps(made_up).encode()
    key, secret = rig.stack.livekit.api_key, rig.stack.livekit.api_secret
    assert post_webhook(url, odd, sign(odd, key, secret)) == 204
    bad_metadata = room_started_body(f"r-{agent_id}", f"RM_{agent_id}", "{not json")
    assert post_webhook(url, bad_metadata, sign(bad_metadata, key, secret)) == 204

    async def consumer_read() -> bool:
        return "corevoice_dispatcher_consumer_pending{" in metrics_text(url)

    await until(consumer_read, timeout=15)
    text = metrics_text(url)
    after = samples(text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        moved("corevoice_dispatcher_webhooks_total", event="room_started", outcome="accepted") >= 1
    )
    assert moved("corevoice_dispatcher_webhook_seconds_count") >= 1
    assert moved("corevoice_dispatcher_dispatch_seconds_count", outcome="ok") >= 1
    assert moved("corevoice_dispatcher_jobs_total", outcome="dispatched") >= 1
    assert (
        moved("corevoice_dispatcher_webhooks_total", event="unknown", outcome="missing_signature")
        == 1
    )
    events = {dict(ls)["event"] for ls in series(after, "corevoice_dispatcher_webhooks_total")}
    assert "other" in events and not any(e.startswith("made_up_") for e in events)
    assert value(after, "corevoice_dispatcher_consumer_pending", consumer="dispatcher") >= 0
    assert series(after, "corevoice_dispatcher_capacity_waiting")


# --- the worker pool -------------------------------------------------------------------


async def test_pool_heartbeat_arrives_with_its_state(rig: Rig, pool: PoolRuntime) -> None:
    nc, _ = await connect(rig.nats.access(Role.TELEMETRY), name="metrics-status", ensure=False)
    try:
        sub = await nc.subscribe(subjects.WORKER_STATUS)
        seen: list[WorkerStatus] = []
        async with asyncio.timeout(5):
            while len(seen) < 2:
                event = codec.decode_worker_event((await sub.next_msg(timeout=5)).data)
                if isinstance(event, WorkerStatus) and event.worker_id == "pool-metrics":
                    seen.append(event)
    finally:
        await nc.drain()
    first, second = seen
    assert (first.capacity, first.active_calls, first.draining) == (7, 0, False)
    assert first.interval_s == STATUS_INTERVAL_S
    gap = (second.at - first.at).total_seconds()
    assert 0.5 * STATUS_INTERVAL_S < gap < 3 * STATUS_INTERVAL_S


async def test_a_stopping_pool_says_so_last(rig: Rig) -> None:
    nc, _ = await connect(rig.nats.access(Role.TELEMETRY), name="metrics-final", ensure=False)
    try:
        sub = await nc.subscribe(subjects.WORKER_STATUS)
        runtime = PoolRuntime(
            metrics_pool_settings(rig, "pool-going"), link_path=rig.base / "going-link" / "sock"
        )
        await runtime.start()
        mine: list[WorkerStatus] = []

        async def beat() -> WorkerStatus:
            while True:
                event = codec.decode_worker_event((await sub.next_msg(timeout=5)).data)
                if isinstance(event, WorkerStatus) and event.worker_id == "pool-going":
                    return event

        mine.append(await beat())  # running: a plain heartbeat
        await runtime.stop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                while True:
                    event = codec.decode_worker_event((await sub.next_msg(timeout=1.0)).data)
                    if isinstance(event, WorkerStatus) and event.worker_id == "pool-going":
                        mine.append(event)
    finally:
        await nc.drain()
    assert mine and not mine[0].draining
    assert mine[-1].draining and mine[-1].active_calls == 0


async def test_config_held_reports_the_commit_time_of_a_propagated_edit(
    rig: Rig, pool: PoolRuntime, bus: tuple[Client, JetStreamContext]
) -> None:
    _, js = bus
    agent_id = new_agent(rig)
    link = await PoolLink.connect(str(pool.link_path))
    try:
        answer = await link.get_config(
            call_id=f"AJ_{uuid.uuid4().hex[:8]}",
            job_id=f"job-{agent_id}",
            room_name=f"room-{agent_id}",
            agent_id=agent_id,
            campaign_id=None,
            timeout=5,
        )
        assert isinstance(answer, LinkConfig) and answer.config.version == 1
        nc, _ = await connect(rig.nats.access(Role.TELEMETRY), name="metrics-held", ensure=False)
        try:
            sub = await nc.subscribe(subjects.CONFIG_HELD)
            admin(rig, "PATCH", f"/agents/{agent_id}", AgentPatch(instructions="v2 please"))
            async with asyncio.timeout(10):
                while True:
                    event = codec.decode_worker_event((await sub.next_msg(timeout=10)).data)
                    if isinstance(event, ConfigHeld) and event.agent_id == agent_id:
                        break
        finally:
            await nc.drain()
    finally:
        await link.aclose()
    changes = await js.subscribe(subjects.config_changed(agent_id), ordered_consumer=True)
    try:
        changed = codec.decode_config_stream_event((await changes.next_msg(timeout=5)).data)
    finally:
        await changes.unsubscribe()
    assert isinstance(changed, ConfigChanged) and changed.version == 2
    assert (event.worker_id, event.version, event.tenant_id) == (
        "pool-metrics",
        2,
        changed.tenant_id,
    )
    assert event.changed_at == changed.at
    assert dt.timedelta(0) <= event.at - event.changed_at < dt.timedelta(seconds=5)
    found = samples(await pool_metrics(pool))
    assert (
        value(found, "corevoice_worker_config_fetch_seconds_count", worker_id="pool-metrics") >= 2
    )


async def test_job_processes_report_turns_live_through_the_pool(
    rig: Rig, pool: PoolRuntime
) -> None:
    agent_id = new_agent(rig)
    call_id = f"AJ_{uuid.uuid4().hex[:8]}"
    pool.note_accepted(call_id)  # what PoolServer does when LiveKit assigns the job
    before = samples(await pool_metrics(pool))
    link = await PoolLink.connect(str(pool.link_path))
    try:
        answer = await link.get_config(
            call_id=call_id,
            job_id=f"job-{agent_id}",
            room_name=f"room-{agent_id}",
            agent_id=agent_id,
            campaign_id=None,
            timeout=5,
        )
        assert isinstance(answer, LinkConfig)
        requested_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        await link.publish(
            CallStarted(
                call_id=call_id,
                job_id=f"job-{agent_id}",
                room_name=f"room-{agent_id}",
                agent_id=agent_id,
                tenant_id=answer.config.tenant_id,
                config_version=1,
                worker_id="pool-metrics",
                requested_at=requested_at,
                accepted_at=dt.datetime.now(dt.UTC),
            )
        )
        link.tell(LinkGreeting(call_id=call_id, latency_s=0.42))
        link.tell(
            LinkTurn(
                call_id=call_id,
                turn=TurnLatency(stt_final_s=0.1, llm_ttft_s=0.3, tts_ttfb_s=0.2, e2e_s=0.9),
            )
        )

        async def observed() -> bool:
            found = samples(await pool_metrics(pool))
            return value(found, "corevoice_worker_turn_latency_seconds_count", stage="e2e") > value(
                before, "corevoice_worker_turn_latency_seconds_count", stage="e2e"
            )

        await until(observed, timeout=5)  # while the call still runs
        found = samples(await pool_metrics(pool))
    finally:
        await link.aclose()

    def moved(name: str, **labels: str) -> float:
        return value(found, name, **labels) - value(before, name, **labels)

    for stage in ("stt", "llm_ttft", "tts_ttfb", "e2e"):
        assert moved("corevoice_worker_turn_latency_seconds_count", stage=stage) == 1, stage
    assert moved("corevoice_worker_turn_latency_seconds_count", stage="end_of_turn") == 0
    assert moved("corevoice_worker_turn_latency_seconds_sum", stage="e2e") == pytest.approx(0.9)
    assert moved("corevoice_worker_greeting_latency_seconds_count") == 1
    assert value(found, "corevoice_worker_utilisation", worker_id="pool-metrics") >= 0
    types = {dict(ls)["type"] for ls in series(found, "corevoice_worker_errors_total")}
    assert {"config_fetch", "call_lost", "event_publish"} <= types
    # The pool stamped the call's start with its own assignment time.
    nc, js = await connect(rig.nats.access(Role.OPERATOR), name="metrics-calls")
    try:
        sub = await js.subscribe(subjects.call_started(agent_id), ordered_consumer=True)
        started = codec.decode_call_event((await sub.next_msg(timeout=10)).data)
    finally:
        await nc.drain()
    assert isinstance(started, CallStarted)
    assert started.requested_at == requested_at
    assert started.accepted_at is not None and started.accepted_at <= dt.datetime.now(dt.UTC)


# --- secrets ---------------------------------------------------------------------------


async def test_no_secret_appears_in_any_metrics(rig: Rig, pool: PoolRuntime) -> None:
    new_agent(rig)  # a provider key stored, and read through every path above
    secrets = [
        PROVIDER_KEY,
        rig.stack.admin_token,
        rig.stack.runtime_token,
        *rig.nats.passwords.values(),
    ]
    if len(rig.stack.livekit.api_secret) >= 16:  # not the public dev one ("secret")
        secrets.append(rig.stack.livekit.api_secret)
    texts = {
        "config_sync": metrics_text(rig.stack.config_sync_url),
        "dispatcher": metrics_text(rig.dispatcher_url),
        "worker": await pool_metrics(pool),
    }
    for name, text in texts.items():
        assert "corevoice_" in text, name
        for secret in secrets:
            assert secret not in text, f"a secret in the {name}'s /metrics"
