"""The cluster stack (`core_voice_cli.cluster.ClusterStack`) as the cluster tests drive it:
rooms in bursts across both LiveKit nodes, edits, the events read back from the streams,
and the per-room ledger the assertions are made on."""

import asyncio
import contextlib
import datetime as dt
import json
import shutil
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import pytest
from livekit import api
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from core_voice_cli.cluster import ClusterOptions, ClusterStack
from core_voice_cli.demo import demo_agent
from core_voice_cli.rooms import call_room
from core_voice_contracts import codec, subjects
from core_voice_contracts.admin_api import AgentPatch
from core_voice_contracts.bus import NatsAccess, connect
from core_voice_contracts.events import (
    CallEnded,
    CallFailed,
    CallStarted,
    ConfigHeld,
    JobAccepted,
    JobDispatched,
    JobExpired,
    JobRejected,
    JobRequested,
    WorkerStatus,
)
from core_voice_contracts.permissions import Role
from core_voice_contracts.streams import VOICE_CALLS, VOICE_JOBS
from tests.harness.route_proxy import RouteProxies

POOL_CAPACITY = 4
CALLER_WAIT_S = 3.0
"""A call with no caller ends ``no_caller`` this long after its agent joined: a short,
real call (job process, room join, session, events) with nobody to talk to."""


def require_redis() -> None:
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        pytest.fail(
            "redis-server is missing: the cluster tests run two LiveKit nodes joined by "
            "Redis. Install it: apt-get install -y --no-install-recommends redis-server "
            "(it belongs in scripts/bootstrap.sh APT_PACKAGES)",
            pytrace=False,
        )


@contextlib.contextmanager
def running_cluster(base: Path, proxies: RouteProxies) -> Iterator[ClusterStack]:
    """The cluster with every NATS route through ``proxies`` (a partition cuts them)."""
    require_redis()
    options = ClusterOptions(
        pool_capacity=POOL_CAPACITY,
        pool_env={
            "WORKER_CALLER_WAIT_S": str(CALLER_WAIT_S),
            "WORKER_NUM_IDLE_PROCESSES": "1",
            "WORKER_EXECUTOR": "process",
            "WORKER_STATUS_INTERVAL_S": "1",
            "WORKER_DRAIN_TIMEOUT_S": "30",
        },
        dispatcher_env={
            "DISPATCHER_CAPACITY_WAIT_S": "25",
            "DISPATCHER_LIVEKIT_TIMEOUT_S": "2",
            "DISPATCHER_ACK_WAIT_S": "10",
        },
    )
    stack = ClusterStack(base, options)
    ports = [n.cluster_port for n in stack.nats_nodes if n.cluster_port is not None]
    stack.route_via({port: proxies.add(port) for port in ports})
    with stack:
        yield stack


# --- talking to it ----------------------------------------------------------------------


def admin_client(stack: ClusterStack, replica: int = 0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.config_syncs[replica].url,
        headers={
            "Authorization": f"Bearer {stack.admin_token}",
            "Content-Type": "application/json",
        },
        timeout=10,
    )


async def create_agent(stack: ClusterStack) -> str:
    agent_id = f"c-{uuid.uuid4().hex[:8]}"
    body = msgspec.structs.replace(demo_agent(), id=agent_id, name=f"cluster {agent_id}")
    async with admin_client(stack) as client:
        created = await client.post("/api/v1/agents", content=msgspec.json.encode(body))
    assert created.status_code == 201, created.text
    return agent_id


async def edit(stack: ClusterStack, agent_id: str, n: int) -> int | None:
    """One edit (a new version) through any live config_sync replica; its version, or
    None when no replica took it (counted by the caller, never silently)."""
    patch = AgentPatch(instructions=f"You are the receptionist, edit {n}.")
    for replica, service in enumerate(stack.config_syncs):
        if not service.running():
            continue
        with contextlib.suppress(httpx.HTTPError):
            async with admin_client(stack, replica) as client:
                resp = await client.patch(
                    f"/api/v1/agents/{agent_id}", content=msgspec.json.encode(patch)
                )
            if resp.status_code == 200:
                version: int = resp.json()["version"]
                return version
    return None


@contextlib.asynccontextmanager
async def livekit_apis(stack: ClusterStack) -> AsyncIterator[list[api.LiveKitAPI]]:
    clients = [api.LiveKitAPI(n.http_url, n.api_key, n.api_secret) for n in stack.livekit_nodes]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


@dataclass
class Rooms:
    """Rooms this test created: name -> sid (the job id is ``job-<sid>``)."""

    sids: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    @property
    def job_ids(self) -> set[str]:
        return {f"job-{sid}" for sid in self.sids.values()}


async def burst(
    lks: list[api.LiveKitAPI], agent_id: str, rooms: Rooms, count: int, per_s: float = 40.0
) -> None:
    """``count`` rooms naming ``agent_id``, created alternately through each LiveKit node
    at ``per_s`` a second. A room LiveKit refused (a node down) is noted, not hidden."""

    async def one(n: int) -> None:
        name = f"{agent_id}-{uuid.uuid4().hex[:8]}"
        request = call_room(name, json.dumps({"agent_id": agent_id}))
        try:
            room = await lks[n % len(lks)].room.create_room(request)
        except Exception as exc:  # a refused room is a result of the test
            rooms.failed.append(f"{name} via node {n % len(lks) + 1}: {exc!r}")
            return
        rooms.sids[name] = room.sid

    tasks = []
    for n in range(count):
        tasks.append(asyncio.create_task(one(n)))
        await asyncio.sleep(1 / per_s)
    await asyncio.gather(*tasks)


# --- the events, read back --------------------------------------------------------------


async def operator_bus(stack: ClusterStack) -> tuple[Client, JetStreamContext]:
    access = NatsAccess.for_role(
        Role.OPERATOR,
        stack.nats_url,
        password=stack.nats_nodes[0].passwords[Role.OPERATOR.value],
        stream_replicas=3,
    )
    for _ in range(80):
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            return await connect(access, name="pytest-cluster", ensure=False)
        await asyncio.sleep(0.25)
    raise AssertionError("could not connect to the NATS cluster")


async def read_stream(js: JetStreamContext, stream: str, subject: str) -> list[bytes]:
    """Every message of ``subject`` in ``stream`` now; retried while JetStream is briefly
    unavailable (leaders moving after a fault or a heal)."""
    for attempt in range(40):
        try:
            return await _read_stream(js, stream, subject)
        except (NatsError, TimeoutError):
            if attempt == 39:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def _read_stream(js: JetStreamContext, stream: str, subject: str) -> list[bytes]:
    """Every message of ``subject`` in ``stream`` now (an ordered consumer from the start)."""
    info = await js.stream_info(stream, subjects_filter=subject)
    want = sum((info.state.subjects or {}).values())
    sub = await js.subscribe(subject, ordered_consumer=True)
    out: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(out) < want:
                out.append((await sub.next_msg(timeout=30)).data)
    finally:
        await sub.unsubscribe()
    return out


@dataclass
class Ledger:
    """What happened to each job, from VOICE_JOBS and VOICE_CALLS."""

    requested: Counter[str] = field(default_factory=Counter)
    dispatched: Counter[str] = field(default_factory=Counter)
    ends: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """job -> its expired/rejected reasons."""
    calls: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """job -> call ids that started."""
    call_ends: dict[str, list[CallEnded | CallFailed]] = field(
        default_factory=lambda: defaultdict(list)
    )
    started: dict[str, CallStarted] = field(default_factory=dict)
    """call id -> its CallStarted."""
    accepted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """job -> the pools LiveKit assigned it to (`JobAccepted`)."""
    requested_at: dict[str, dt.datetime] = field(default_factory=dict)
    accepted_at: dict[str, dt.datetime] = field(default_factory=dict)
    room_of: dict[str, str] = field(default_factory=dict)
    settled_at: dict[str, dt.datetime] = field(default_factory=dict)
    """job -> its first outcome event (dispatched, expired or rejected)."""

    def stall_s(self, jobs: set[str]) -> float:
        """The longest a job of ``jobs`` waited for its outcome after it was stored."""
        waits = [
            (self.settled_at[j] - self.requested_at[j]).total_seconds()
            for j in jobs
            if j in self.settled_at and j in self.requested_at
        ]
        return max(waits, default=0.0)

    def outcome(self, job: str) -> str:
        """One word for the job: ``called``, ``rejected:<reason>``, ``expired:<reason>``,
        ``dispatched`` (no call yet), ``pending`` or ``missing``."""
        if self.call_ends[job]:
            return "called"
        if self.ends[job]:
            return self.ends[job][-1]
        if self.dispatched[job] and self.accepted[job] and not self.calls[job]:
            return "accepted-no-call"  # a pool took it; no call event (yet)
        if self.dispatched[job]:
            return "dispatched"  # no call event (yet)
        return "pending" if self.requested[job] else "missing"

    def timings(self) -> dict[str, float]:
        """Medians (s): job stored -> worker took it, took -> call started, started -> ended."""
        took, start, life = [], [], []
        for call in self.started.values():
            if call.requested_at is not None and call.accepted_at is not None:
                took.append((call.accepted_at - call.requested_at).total_seconds())
            if call.accepted_at is not None:
                start.append((call.at - call.accepted_at).total_seconds())
            for end in self.call_ends[call.job_id]:
                life.append((end.at - call.at).total_seconds())
        return {
            "stored_to_taken_s": round(percentile(took, 0.5), 2),
            "taken_to_started_s": round(percentile(start, 0.5), 2),
            "started_to_ended_s": round(percentile(life, 0.5), 2),
        }

    def contradicted(self, jobs: set[str]) -> list[str]:
        """Jobs a worker served whose outcome event says otherwise (``room_gone``): the
        dispatcher that created the dispatch could not store `JobDispatched` (its node cut
        off), and the job, delivered again after the call was over, found no room."""
        return sorted(j for j in jobs if self.calls[j] and self.ends[j])

    def problems(self, jobs: set[str]) -> list[str]:
        """Every way a job broke "exactly one outcome, nothing lost, nothing twice"."""
        out = []
        for job in sorted(jobs):
            if self.requested[job] != 1:
                out.append(f"{job}: stored {self.requested[job]} times")
            if self.dispatched[job] > 1:
                out.append(f"{job}: dispatched {self.dispatched[job]} times")
            if len(self.ends[job]) > 1:
                out.append(f"{job}: {len(self.ends[job])} end events {self.ends[job]}")
            if len(self.calls[job]) > 1:
                out.append(f"{job}: {len(self.calls[job])} calls (agents) in one room")
            if len(self.call_ends[job]) > 1:
                out.append(f"{job}: {len(self.call_ends[job])} terminal call events")
            if self.calls[job] and not self.call_ends[job]:
                out.append(f"{job}: call started, never ended")

        return out


async def ledger(js: JetStreamContext, agent_id: str) -> Ledger:
    out = Ledger()
    for data in await read_stream(js, VOICE_JOBS, subjects.jobs_for_agent(agent_id)):
        event = codec.decode_job_event(data)
        match event:
            case JobRequested():
                out.requested[event.job_id] += 1
                out.requested_at.setdefault(event.job_id, event.at)
                out.room_of[event.job_id] = event.room_name
            case JobAccepted():
                out.accepted[event.job_id].add(event.worker_id)
                out.accepted_at.setdefault(event.job_id, event.at)
            case JobDispatched():
                out.dispatched[event.job_id] += 1
                out.settled_at.setdefault(event.job_id, event.at)
            case JobExpired():
                out.ends[event.job_id].append(f"expired:{event.detail}")
                out.settled_at.setdefault(event.job_id, event.at)
            case JobRejected():
                out.ends[event.job_id].append(f"rejected:{event.reason}")
                out.settled_at.setdefault(event.job_id, event.at)
    for data in await read_stream(js, VOICE_CALLS, subjects.calls_for_agent(agent_id)):
        call = codec.decode_call_event(data)
        match call:
            case CallStarted():
                out.calls[call.job_id].add(call.call_id)
                out.started[call.call_id] = call
            case CallEnded() | CallFailed():
                out.call_ends[call.job_id].append(call)
    return out


async def settled(
    js: JetStreamContext,
    agent_id: str,
    jobs: set[str],
    timeout: float,
) -> tuple[Ledger, float]:
    """Wait until every job has its outcome (a call's end, or a rejection or expiry);
    return the ledger and how long that took. A call a killed pool took is ended by the
    dispatcher's ``worker_lost`` (LiveKit notices the dead agent ~20 s later, or the pool's
    heartbeat stops), after its grace period."""
    began = time.monotonic()
    deadline = began + timeout
    while True:
        book = await ledger(js, agent_id)
        open_jobs = [
            j
            for j in jobs
            if book.outcome(j) in ("pending", "missing", "dispatched", "accepted-no-call")
        ]
        if not open_jobs or time.monotonic() > deadline:
            return book, time.monotonic() - began
        await asyncio.sleep(1.0)


@dataclass
class Watch:
    """Live core-NATS feeds the tests measure from: pool heartbeats and ConfigHeld."""

    statuses: list[WorkerStatus] = field(default_factory=list)
    held: list[ConfigHeld] = field(default_factory=list)

    def peak(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for status in self.statuses:
            out[status.worker_id] = max(out[status.worker_id], status.active_calls)
        return dict(out)

    def lags(self, agent_id: str, since: dt.datetime) -> list[float]:
        return [
            (h.at - h.changed_at).total_seconds()
            for h in self.held
            if h.agent_id == agent_id and h.changed_at >= since
        ]

    def holders(self, agent_id: str, version: int) -> set[str]:
        return {h.worker_id for h in self.held if h.agent_id == agent_id and h.version >= version}


@contextlib.asynccontextmanager
async def watching(nc: Client) -> AsyncIterator[Watch]:
    watch = Watch()

    async def on_msg(msg: Msg) -> None:
        with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError, Exception):
            event = codec.decode_worker_event(msg.data)
            if isinstance(event, WorkerStatus):
                watch.statuses.append(event)
            elif isinstance(event, ConfigHeld):
                watch.held.append(event)

    sub = await nc.subscribe(subjects.WORKERS_ALL, cb=on_msg)
    try:
        yield watch
    finally:
        await sub.unsubscribe()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
