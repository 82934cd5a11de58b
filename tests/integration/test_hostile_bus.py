"""Hostile bus messages against every endpoint and consumer, on real servers (issue 9).

Garbage, JSON nested 100,000 deep, ~1 MiB bodies, wrong types and invalid UTF-8 are
published by identities allowed to publish there (the operator; the worker for
``voice.config.get``, which only workers may ask): permission is no proof of good data.
Every request gets a typed ``bad_request``; every consumer terminates or skips the
message, counts it, and handles a valid message afterwards.

Before the fix, msgspec's `RecursionError` (deep nesting) and `UnicodeDecodeError`
(invalid UTF-8 in a tag) got past every ``except DecodeError``: the telemetry consumer
task died silently, the dispatcher re-delivered the job until ``max_deliver``, and the
admin API answered 500.
"""

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from livekit import api
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from core_voice_cli.stack import Stack
from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import connect, publish
from core_voice_contracts.events import (
    CallStarted,
    ChangeKind,
    ConfigChanged,
    ConfigGetError,
    ConfigGetRequest,
    ConfigNotFound,
    JobAccepted,
    JobDispatched,
    JobRequested,
)
from core_voice_contracts.permissions import Role
from core_voice_contracts.routing import RouteError, RouteRejected, RouteRequest
from core_voice_contracts.streams import VOICE_CALLS, VOICE_CONFIG, VOICE_JOBS
from core_voice_worker.pool import PoolRuntime
from tests.harness.dispatcher import Rig, create_agent, livekit_process, unique
from tests.harness.events import job_events
from tests.harness.pool import pool_settings, running_pool
from tests.waiting import until

pytestmark = pytest.mark.integration

DEPTH = 100_000
ONE_MIB = 1024 * 1024 - 4096
"""Just under NATS's default 1 MiB payload limit, with room for the headers."""


def hostile(tag: str, **valid: str) -> dict[str, bytes]:
    """Hostile bodies for a message family whose tag is ``tag``; ``valid`` fields make the
    deep-field case a real message with one extra field nested too deep."""
    head = json.dumps({"type": tag, **valid}).encode()[:-1]
    return {
        "garbage": b"\x00\xff\xfe{garbage",
        "deep list": b"[" * DEPTH,
        "deep field": head + b',"x":' + b"[" * DEPTH + b"]" * DEPTH + b"}",
        "one mebibyte": b'{"type":"' + b"x" * ONE_MIB + b'"}',
        "wrong types": b'{"type":"' + tag.encode() + b'","job_id":5,"agent_id":[],"x":{}}',
        "invalid utf-8": b'{"type":"\xff\xfe"}',
    }


# --- the rig: NATS, LiveKit, config_sync, dispatcher, telemetry, one pool runtime -------


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The dispatcher tests' rig (capacity watch on, so the dispatcher follows accepted
    jobs) plus telemetry, all on the stack's own NATS server and credentials."""
    base = tmp_path_factory.mktemp("hostile")
    stack = Stack(base, worker=False)
    running = Rig(base, stack.nats, stack, overrides={"DISPATCHER_CAPACITY_WAIT_S": "60"})
    try:
        running.start(stack.nats.process(), 20)
        running.start(livekit_process(running), 30)
        running.start(stack.config_sync_process())
        running.start(running.dispatcher_process())
        running.start(stack.telemetry_process())
        yield running
    finally:
        running.stop()


@pytest.fixture
async def bus(rig: Rig) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc, js = await connect(rig.nats.access(Role.OPERATOR), name="test-hostile")
    try:
        yield nc, js
    finally:
        await nc.drain()


@pytest.fixture
async def as_worker(rig: Rig) -> AsyncIterator[Client]:
    nc, _ = await connect(rig.nats.access(Role.WORKER), name="test-hostile-worker", ensure=False)
    try:
        yield nc
    finally:
        await nc.drain()


@pytest.fixture(scope="module")
async def pool(rig: Rig) -> AsyncIterator[PoolRuntime]:
    settings = pool_settings(rig.nats, "pool-hostile", config_timeout_s=0.5)
    async with running_pool(settings, Path(rig.base) / "link" / "sock") as runtime:
        yield runtime


def health(url: str) -> dict[str, object]:
    resp = httpx.get(f"{url}/healthz", timeout=5)
    body: dict[str, object] = resp.json()
    return body


def counted(body: dict[str, object], field: str) -> dict[str, int]:
    found = body.get(field, {})
    assert isinstance(found, dict)
    return {str(k): int(v) for k, v in found.items()}


def samples(
    url: str, name: str, text: str | None = None
) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of ``name`` on ``url``/metrics (or in ``text``), by its sorted labels."""
    if text is None:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def telemetry_poison(rig: Rig, stream: str) -> float:
    found = samples(rig.stack.telemetry_url, "corevoice_telemetry_poison_messages_total")
    return found.get((("reason", "undecodable"), ("stream", stream)), 0.0)


# --- request/reply: config_sync ---------------------------------------------------------


async def test_config_get_answers_every_hostile_request_with_bad_request(
    rig: Rig, as_worker: Client
) -> None:
    before = counted(health(rig.stack.config_sync_url), "refused")
    cases = hostile("config.get.v1", agent_id="a")
    cases["oversized id"] = codec.encode(ConfigGetRequest(agent_id="a" * ONE_MIB))
    for name, data in cases.items():
        reply = await as_worker.request(subjects.CONFIG_GET, data, timeout=10)
        assert codec.decode_config_reply(reply.data) == ConfigGetError(
            error="bad_request", retryable=False
        ), name
    # Still answering: a valid request for an agent that does not exist.
    missing = await as_worker.request(
        subjects.CONFIG_GET, codec.encode(ConfigGetRequest(agent_id=unique("none"))), timeout=5
    )
    assert isinstance(codec.decode_config_reply(missing.data), ConfigNotFound)
    after = counted(health(rig.stack.config_sync_url), "refused")
    assert after.get("get/undecodable", 0) - before.get("get/undecodable", 0) == len(cases) - 1
    assert after.get("get/oversized", 0) - before.get("get/oversized", 0) == 1


async def test_routing_resolve_answers_every_hostile_request_with_bad_request(
    rig: Rig, bus: tuple[Client, JetStreamContext]
) -> None:
    nc, _ = bus
    before = counted(health(rig.stack.config_sync_url), "refused")
    cases = hostile("route.request.v1", room_key="r")
    cases["oversized key"] = codec.encode(RouteRequest(room_key="r" * ONE_MIB))
    for name, data in cases.items():
        reply = await nc.request(subjects.ROUTING_RESOLVE, data, timeout=10)
        assert codec.decode_route_reply(reply.data) == RouteError(
            error="bad_request", retryable=False
        ), name
    valid = await nc.request(
        subjects.ROUTING_RESOLVE,
        codec.encode(RouteRequest(room_key="r", agent_id=unique("none"))),
        timeout=5,
    )
    assert isinstance(codec.decode_route_reply(valid.data), RouteRejected)
    after = counted(health(rig.stack.config_sync_url), "refused")
    moved = after.get("resolve/undecodable", 0) - before.get("resolve/undecodable", 0)
    assert moved == len(cases) - 1
    assert after.get("resolve/oversized", 0) - before.get("resolve/oversized", 0) == 1


def test_admin_api_refuses_a_body_nested_too_deep_with_400(rig: Rig) -> None:
    deep = 10_000  # under the API's body limit, far over what msgspec parses
    for body in (b"[" * deep, b'{"id": "a", "name": "n", "x": ' + b"[" * deep):
        resp = httpx.post(
            f"{rig.stack.config_sync_url}/api/v1/agents",
            content=body,
            headers={
                "Authorization": f"Bearer {rig.stack.admin_token}",
                "Content-Type": "application/json",
            },
            timeout=10,
        )
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "malformed_json"
    assert httpx.get(f"{rig.stack.config_sync_url}/healthz", timeout=5).status_code == 200


# --- consumers ----------------------------------------------------------------------------


async def test_the_dispatch_consumer_terminates_poison_jobs_and_dispatches_the_next(
    rig: Rig, bus: tuple[Client, JetStreamContext]
) -> None:
    _, js = bus
    agent_id = unique("hostile")
    create_agent(rig, agent_id)
    subject = subjects.job_requested(agent_id)
    cases = hostile("job.requested.v1", job_id="job-x", room_name="r", room_sid="RM_x")
    before = counted(health(rig.dispatcher_url), "poison")
    for data in cases.values():
        await js.publish(subject, data)
    # Well-formed JSON, ids that cannot be used: a job id with CR LF (a message id
    # header), an agent id that is no subject token.
    invalid = [
        JobRequested(job_id="job-\r\nNats-Msg-Id: x", room_name="r", room_sid="RM", agent_id="a"),
        JobRequested(job_id="job-ok", room_name="r", room_sid="RM", agent_id="a.b"),
    ]
    for job in invalid:
        await js.publish(subject, codec.encode(job))

    def poison() -> dict[str, int]:
        now = counted(health(rig.dispatcher_url), "poison")
        return {k: now.get(k, 0) - before.get(k, 0) for k in now}

    want = {f"{VOICE_JOBS}/undecodable": len(cases), f"{VOICE_JOBS}/invalid": len(invalid)}
    await until(lambda: poison() == want, timeout=20)
    info = await js.consumer_info(VOICE_JOBS, "dispatcher")
    assert info.num_redelivered == 0  # terminated at the first delivery, not retried

    # The consumer goes on: a real room naming the agent is dispatched.
    lk = api.LiveKitAPI(rig.livekit_url, rig.stack.livekit.api_key, rig.stack.livekit.api_secret)
    try:
        room = await lk.room.create_room(
            api.CreateRoomRequest(
                name=unique("after-poison"), metadata=json.dumps({"agent_id": agent_id})
            )
        )
        (dispatched,) = await job_events(js, subjects.job_dispatched(agent_id), 1, timeout=20)
    finally:
        await lk.aclose()
    assert isinstance(dispatched, JobDispatched) and dispatched.job_id == f"job-{room.sid}"
    assert health(rig.dispatcher_url)["checks"] == {"nats": "ok", "consumer": "ok"}


async def test_the_dispatcher_feeds_skip_and_count_hostile_messages(
    rig: Rig, bus: tuple[Client, JetStreamContext]
) -> None:
    nc, js = bus
    before = counted(health(rig.dispatcher_url), "poison")
    cases = hostile("job.accepted.v1", job_id="j", room_name="r", agent_id="a")
    for data in cases.values():
        await nc.publish(subjects.job_accepted("hostile"), data)
    # A JobAccepted whose job id is 1 MiB: 10,000 of them would be 10 GiB remembered.
    huge = JobAccepted(
        job_id="j" * ONE_MIB, room_name="r", agent_id="a", call_id="c", worker_id="w"
    )
    await nc.publish(subjects.job_accepted("hostile"), codec.encode(huge))
    config = hostile("config.changed.v1", agent_id="a")
    for data in config.values():
        await js.publish(subjects.config_changed(unique("hostile")), data)

    def moved(key: str) -> int:
        return counted(health(rig.dispatcher_url), "poison").get(key, 0) - before.get(key, 0)

    await until(lambda: moved("accepted/undecodable") == len(cases), timeout=10)
    await until(lambda: moved("accepted/invalid") == 1, timeout=10)
    await until(lambda: moved(f"{VOICE_CONFIG}/undecodable") == len(config), timeout=10)
    assert health(rig.dispatcher_url)["status"] == "ok"


async def test_telemetry_terminates_poison_events_and_keeps_counting(
    rig: Rig, bus: tuple[Client, JetStreamContext]
) -> None:
    _, js = bus
    agent_id = unique("tel")
    # VOICE_CONFIG keeps one message per subject: each hostile one gets its own.
    families: dict[str, tuple[Callable[[], str], dict[str, bytes]]] = {
        VOICE_JOBS: (lambda: subjects.job_requested(agent_id), hostile("job.requested.v1")),
        VOICE_CALLS: (lambda: subjects.call_started(agent_id), hostile("call.started.v1")),
        VOICE_CONFIG: (
            lambda: subjects.config_changed(unique("tel")),
            hostile("config.changed.v1"),
        ),
    }

    async def settled() -> bool:
        """Telemetry has taken everything earlier tests published."""
        for stream, suffix in (
            (VOICE_JOBS, "jobs"),
            (VOICE_CALLS, "calls"),
            (VOICE_CONFIG, "config"),
        ):
            info = await js.consumer_info(stream, f"telemetry-{suffix}")
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    await until(settled, timeout=15)
    before = {stream: telemetry_poison(rig, stream) for stream in families}
    for subject, cases in families.values():
        for data in cases.values():
            await js.publish(subject(), data)
    want = {stream: len(cases) for stream, (_, cases) in families.items()}

    def moved() -> dict[str, float]:
        return {stream: telemetry_poison(rig, stream) - before[stream] for stream in families}

    await until(lambda: moved() == want, timeout=15)
    # Every feed still consumes: one valid event each is counted. The config first: it
    # routes the agent, which then has its own label (telemetry's cardinality guard).
    await publish(
        js,
        subjects.config_changed(agent_id),
        ConfigChanged(agent_id=agent_id, tenant_id="t", version=1, kind=ChangeKind.CREATED),
    )
    config_labels = (("agent", agent_id), ("kind", "created"), ("tenant", "t"))
    await until(
        lambda: (
            samples(rig.stack.telemetry_url, "corevoice_config_changes_total").get(config_labels)
            == 1.0
        ),
        timeout=10,
    )
    await publish(
        js,
        subjects.job_requested(agent_id),
        JobRequested(job_id=f"job-{agent_id}", room_name="r", room_sid="RM", agent_id=agent_id),
    )
    await publish(
        js,
        subjects.call_started(agent_id),
        CallStarted(
            call_id="c1",
            job_id="j",
            room_name="r",
            agent_id=agent_id,
            tenant_id="t",
            config_version=1,
        ),
    )
    job_labels = (("agent", agent_id), ("campaign", "none"), ("tenant", "t"))
    wanted = {
        "corevoice_jobs_requested_total": job_labels,
        "corevoice_calls_started_total": (
            *job_labels[:2],
            ("config_version", "1"),
            ("tenant", "t"),
        ),
    }

    def applied() -> bool:
        return all(
            samples(rig.stack.telemetry_url, name).get(labels) == 1.0
            for name, labels in wanted.items()
        )

    await until(applied, timeout=10)
    body = health(rig.stack.telemetry_url)
    assert body == {"status": "ok", "feeds": {"jobs": "ok", "calls": "ok", "config": "ok"}}


async def test_the_pool_feeds_skip_and_count_hostile_messages(
    rig: Rig, pool: PoolRuntime, bus: tuple[Client, JetStreamContext]
) -> None:
    nc, js = bus
    await until(lambda: pool.mirror.live, timeout=10)  # replayed what earlier tests left
    before = pool.bad_messages()

    def moved(feed: str, reason: str) -> int:
        return pool.bad_messages().get((feed, reason), 0) - before.get((feed, reason), 0)

    jobs = hostile("job.requested.v1", job_id="j", room_name="r", room_sid="RM", agent_id="a")
    for data in jobs.values():
        await nc.publish(subjects.job_requested("hostile"), data)
    oversized = JobRequested(
        job_id="j", room_name="r", room_sid="RM", agent_id="a", campaign_id="c" * ONE_MIB
    )
    await nc.publish(subjects.job_requested("hostile"), codec.encode(oversized))
    agent_id = unique("pool")
    config = hostile("config.changed.v1", agent_id="a")
    for data in config.values():  # VOICE_CONFIG keeps one per subject: one subject each
        await js.publish(subjects.config_changed(unique("pool")), data)
    await until(lambda: moved("jobs", "undecodable") == len(jobs), timeout=10)
    await until(lambda: moved("jobs", "invalid") == 1, timeout=10)
    await until(lambda: moved("config", "undecodable") == len(config), timeout=10)
    # The config feed goes on: a valid announcement is taken.
    await publish(
        js,
        subjects.config_changed(agent_id),
        ConfigChanged(agent_id=agent_id, tenant_id="t", version=7, kind=ChangeKind.UPDATED),
    )
    await until(lambda: pool.mirror.announced(agent_id) == 7, timeout=10)
    url = f"http://127.0.0.1:{pool.health.port}"
    async with httpx.AsyncClient() as client:  # the pool serves from this test's loop
        text = (await client.get(f"{url}/metrics", timeout=5)).text
    found = samples(url, "corevoice_worker_poison_messages_total", text)
    worker = ("worker_id", "pool-hostile")
    for (feed, reason), count in pool.bad_messages().items():
        assert found[(("feed", feed), ("reason", reason), worker)] == count
