"""dispatch: LiveKit webhook -> JetStream -> dispatcher -> LiveKit agent dispatch.

Everything is real and local: nats-server, livekit-server posting its webhooks to the
dispatcher, config_sync answering ``voice.routing.resolve``, the dispatcher as its own
process. Baselines, in the same run, are LiveKit's own two ways to dispatch: the agent in
the room's configuration at creation (``room_config``, the target's reference), and an
explicit dispatch the room's creator makes itself right away (``explicit``, the LiveKit
call our path ends in, without the webhook, JetStream and routing before it). Ours runs
twice: rooms created plain (``ours``, as rooms created elsewhere are) and rooms created as
Core Voice creates them, naming the hold agent in their configuration (``ours_hold``,
`core_voice_cli.rooms.call_room`: no default dispatch, see docs/dispatcher.md "Bursts").

Every path ends at the same place: a probe agent worker (LiveKit's agent protocol over
its websocket, as livekit-agents speaks it) notes when LiveKit offers it the job, then
ends the job at once. So "room created -> job offered to a worker" is measured the same
way for all, and the difference is what our path adds.

Measured:

- latency: rooms created one at a time, the four paths in rotating order; p50 / p99,
  and the dispatcher's own view, webhook verified -> dispatch created (event times);
- throughput: a burst of rooms per path; jobs offered per second at the probe, and the
  dispatches our dispatcher created per second;
- ingestion: signed webhooks posted as fast as the endpoint answers, each verified and
  acknowledged by JetStream before the 204; rate and loss (stored jobs vs 204s), for the
  all-in-one dispatcher and for an ingest-only node (``DISPATCHER_ROLE=ingest``).
"""

import asyncio
import base64
import contextlib
import gc
import hashlib
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import aiohttp
import msgspec
from livekit import api
from livekit.protocol import agent as agent_pb
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from core_voice_cli.bench import Measure, percentile
from core_voice_cli.demo import demo_agent
from core_voice_cli.procs import ManagedProcess, free_port, http_ready
from core_voice_cli.rooms import call_room
from core_voice_cli.stack import WORKER_AGENT_NAME, Stack
from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import NatsAccess, connect, publish
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import JobAccepted, JobDispatched, JobRequested, WorkerStatus
from core_voice_contracts.permissions import Role
from core_voice_contracts.streams import VOICE_JOBS
from core_voice_contracts.webhooks import OUTCOME_HEADER

BASELINE_AGENT = "bench-baseline"
WARMUP_ROOMS = 10
LATENCY_ROOMS = 300
SETTLE_S = 0.05
BURST_ROOMS = 300
BURST_SETTLE_S = 3.0
RATE_ROUNDS = 5
"""Bursts of the hold path and of the room configuration each; their medians compared."""
INGEST_WEBHOOKS = 10_000
INGEST_CONCURRENCY = 64
ADDED_P99_TARGET_MS = 10.0
LIVEKIT_AGENT_CACHE_REFRESH_S = 5.5
INGEST_TARGET_PER_S = 1000.0
HOLD_RATE_TARGET = 0.8


PROBE_WORKER_ID = "bench-probe"


class ProbeWorker:
    """A LiveKit agent worker that records when each job is offered, then ends it.

    Standing in for the pool (``announce``), it also says `JobAccepted` on the bus for each
    job it takes, as the pool does the moment LiveKit assigns it one: the dispatcher's
    capacity watch then counts the job taken without asking LiveKit. And it sends the
    pool's `WorkerStatus` heartbeat every second: a pool silent for three intervals is
    gone, and the dispatcher reports every call it took and never started `worker_lost`
    (`unstarted`), which without the heartbeat ran 300 LiveKit checks beside the next
    burst. The heartbeat says the probe is never full and turns nothing away, as a pool
    with room says: a launch still queued in LiveKit is then not offered twice.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        api_secret: str,
        agent_name: str,
        *,
        announce: JetStreamContext | None = None,
        heartbeat: Client | None = None,
    ) -> None:
        self._url = url.replace("http", "ws", 1).rstrip("/") + "/agent"
        self._token = api.AccessToken(api_key, api_secret).with_grants(api.VideoGrants(agent=True))
        self.agent_name = agent_name
        self._announce = announce
        self._announcing: set[asyncio.Task[None]] = set()
        self._bus = heartbeat
        self._heartbeat: asyncio.Task[None] | None = None
        self.offered: dict[str, float] = {}
        """Room -> when its first job was offered."""
        self.offers: Counter[str] = Counter()
        """Room -> jobs offered (one, unless a room got a second job)."""
        self.job_ids: dict[str, set[str]] = {}
        """Room -> the ids of the jobs offered (an offer repeated for one job is one)."""
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> "ProbeWorker":
        self._session = aiohttp.ClientSession()
        ws = await self._session.ws_connect(
            self._url, headers={"Authorization": f"Bearer {self._token.to_jwt()}"}, heartbeat=10
        )
        register = agent_pb.WorkerMessage()
        register.register.type = agent_pb.JobType.JT_ROOM
        register.register.agent_name = self.agent_name
        register.register.version = "bench"
        await ws.send_bytes(register.SerializeToString())
        first = agent_pb.ServerMessage()
        first.ParseFromString(await ws.receive_bytes(timeout=10))
        if not first.HasField("register"):
            raise RuntimeError("livekit did not register the probe worker")
        self._reader = asyncio.create_task(self._read(ws))
        if self._bus is not None:
            self._heartbeat = asyncio.create_task(self._beat(self._bus))
        return self

    async def _beat(self, nc: Client) -> None:
        status = WorkerStatus(
            worker_id=PROBE_WORKER_ID,
            capacity=100_000,
            active_calls=0,
            interval_s=1.0,
            agent_name=self.agent_name,
        )
        while True:
            with contextlib.suppress(NatsError):
                await nc.publish(subjects.WORKER_STATUS, codec.encode(status))
            await asyncio.sleep(status.interval_s)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.BINARY:
                continue
            now = time.perf_counter()
            msg = agent_pb.ServerMessage()
            msg.ParseFromString(frame.data)
            if not msg.HasField("availability"):
                continue
            job = msg.availability.job
            self.offered.setdefault(job.room.name, now)
            self.offers[job.room.name] += 1
            self.job_ids.setdefault(job.room.name, set()).add(job.id)
            waiter = self._waiting.pop(job.room.name, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)
            answer = agent_pb.WorkerMessage()
            answer.availability.job_id = job.id
            answer.availability.available = True
            answer.availability.terminate = True  # done at once: LiveKit marks it succeeded
            await ws.send_bytes(answer.SerializeToString())
            if self._announce is not None:
                task = asyncio.create_task(self._accepted(self._announce, job))
                self._announcing.add(task)
                task.add_done_callback(self._announcing.discard)

    async def _accepted(self, js: JetStreamContext, job: agent_pb.Job) -> None:
        try:
            routed = codec.decode_job_event(job.metadata.encode())
        except DecodeError:
            return
        if isinstance(routed, JobRequested):
            accepted = JobAccepted(
                job_id=routed.job_id,
                room_name=routed.room_name,
                agent_id=routed.agent_id,
                call_id=job.id,
                worker_id=PROBE_WORKER_ID,
            )
            await publish(js, subjects.job_accepted(routed.agent_id), accepted)

    async def offered_at(self, room: str, timeout: float = 30.0) -> float:
        if room in self.offered:
            return self.offered[room]
        future = self._waiting.setdefault(room, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(future, timeout)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._session is not None:
            await self._session.close()


def dispatcher_process(stack: Stack, name: str, port: int, **env: str) -> ManagedProcess:
    environment = dict(os.environ)
    environment.update(stack.nats.env(Role.DISPATCHER))
    environment.update(
        LIVEKIT_URL=stack.livekit.url,
        LIVEKIT_API_KEY=stack.livekit.api_key,
        LIVEKIT_API_SECRET=stack.livekit.api_secret,
        WORKER_AGENT_NAME=WORKER_AGENT_NAME,
        DISPATCHER_HTTP_PORT=str(port),
        DISPATCHER_SIP_WAIT_S="0",  # baseline rooms have no metadata: settle them at once
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    environment.update(env)
    return ManagedProcess(
        name,
        [sys.executable, "-m", "core_voice_dispatcher"],
        log_dir=stack.log_dir,
        env=environment,
        ready=http_ready(f"http://127.0.0.1:{port}/healthz"),
    )


@contextlib.asynccontextmanager
async def probes(
    stack: Stack, nc: Client, js: JetStreamContext
) -> AsyncIterator[tuple[ProbeWorker, ProbeWorker]]:
    key, secret = stack.livekit.api_key, stack.livekit.api_secret
    ours = await ProbeWorker(
        stack.livekit.http_url, key, secret, WORKER_AGENT_NAME, announce=js, heartbeat=nc
    ).start()
    base = await ProbeWorker(stack.livekit.http_url, key, secret, BASELINE_AGENT).start()
    try:
        yield ours, base
    finally:
        await ours.close()
        await base.close()


class Route(StrEnum):
    """How a room gets its agent: ours, and LiveKit's own two ways as baselines."""

    OURS = "ours"  # metadata names the agent; webhook -> dispatcher -> explicit dispatch
    OURS_HOLD = "ours_hold"  # the same, the room created with the hold agent (rooms.call_room)
    ROOM_CONFIG = "room_config"  # the agent in the room's configuration at creation
    EXPLICIT = "explicit"  # the caller itself creates the explicit dispatch right away


@dataclass(frozen=True)
class Paths:
    """Rooms for each `Route`, each ending at a probe worker."""

    lk: api.LiveKitAPI
    ours: ProbeWorker
    base: ProbeWorker
    agent_id: str
    livekit: tuple[str, str, str]
    """(http url, api key, api secret), for `invalidate_agent_names`."""

    async def invalidate_agent_names(self) -> None:
        """Make LiveKit drop its cached list of agent names now.

        LiveKit re-learns which agent names have workers when the cache is a minute old
        (``EnabledCacheTTL``) or when a worker of a new name registers, and every job
        launch in the 5 s that takes (``CheckEnabledTimeout``) holds one of its 50 launch
        slots until the round ends: whichever burst the minute mark falls into stalls
        for up to 5 s, the room configuration's too. A worker of a name never seen
        registers (and leaves), so the next room starts a fresh round the bench can
        wait out, and every burst gets the same ~55 s of a warm cache.
        """
        url, key, secret = self.livekit
        name = f"bench-refresh-{uuid.uuid4().hex[:8]}"
        await (await ProbeWorker(url, key, secret, name).start()).close()

    def probe(self, route: Route) -> ProbeWorker:
        return self.ours if route in (Route.OURS, Route.OURS_HOLD) else self.base

    async def start(self, route: Route, name: str) -> float:
        """Create the room (and for EXPLICIT its dispatch); return when it began."""
        started = time.perf_counter()
        match route:
            case Route.OURS:
                metadata = json.dumps({"agent_id": self.agent_id})
                await self.lk.room.create_room(api.CreateRoomRequest(name=name, metadata=metadata))
            case Route.OURS_HOLD:
                await self.lk.room.create_room(
                    call_room(name, json.dumps({"agent_id": self.agent_id}))
                )
            case Route.ROOM_CONFIG:
                agents = [api.RoomAgentDispatch(agent_name=BASELINE_AGENT)]
                await self.lk.room.create_room(api.CreateRoomRequest(name=name, agents=agents))
            case Route.EXPLICIT:
                await self.lk.room.create_room(api.CreateRoomRequest(name=name))
                await self.lk.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(agent_name=BASELINE_AGENT, room=name)
                )
        return started


async def latencies(paths: Paths, prefix: str, n: int) -> dict[Route, list[float]]:
    """Rooms one at a time, the routes in rotating order; ms from creation to the job offer.

    Each room is deleted once its job was offered, as a call's room closes when it ends:
    left open, hundreds of idle rooms pile up in LiveKit and its per-room background work
    grows through the run (measured: LiveKit CPU per room 8.8 -> 13.5 ms over 120 rooms).
    This process's own garbage collector is held off meanwhile (as ``timeit`` does): a
    pause of the measuring client is not a property of any path.
    """
    out: dict[Route, list[float]] = {route: [] for route in Route}
    routes = list(Route)
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            for route in routes[i % len(routes) :] + routes[: i % len(routes)]:
                room = f"{prefix}-{route}-{i}"
                started = await paths.start(route, room)
                offered = await paths.probe(route).offered_at(room)
                out[route].append((offered - started) * 1000)
                await paths.lk.room.delete_room(api.DeleteRoomRequest(room=room))
                await asyncio.sleep(SETTLE_S)  # the room's closing work (room_finished...)
    finally:
        gc.enable()
    return out


async def burst(paths: Paths, route: Route, prefix: str, n: int) -> tuple[float, float, float]:
    """Create ``n`` rooms as fast as LiveKit takes them (32 at a time).

    Returns (wall-clock start, rooms/s created, jobs/s offered to the probe). LiveKit
    re-learns which agent names have workers once a minute, taking 5 s, and launches in
    that window stall: the burst starts just after a round it forced
    (`Paths.invalidate_agent_names`, then one room), so no path meets the minute mark.
    Left to chance, the mark fell into the hold path's burst in every run of 2026-12-01
    (45/s instead of ~110/s).
    """
    probe = paths.probe(route)
    await paths.invalidate_agent_names()
    await paths.start(route, f"{prefix}-prime")
    await probe.offered_at(f"{prefix}-prime")
    await asyncio.sleep(LIVEKIT_AGENT_CACHE_REFRESH_S)
    gate = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with gate:
            await paths.start(route, f"{prefix}-{i}")

    wall, started = time.time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    created = time.perf_counter()
    offered = await asyncio.gather(*(probe.offered_at(f"{prefix}-{i}", 120) for i in range(n)))

    # Each burst's rooms close before the next burst, as calls' rooms do when they end:
    # left open, hundreds of rooms slow LiveKit for whichever path runs after them.
    async def close(name: str) -> None:
        async with gate:
            await paths.lk.room.delete_room(api.DeleteRoomRequest(room=name))

    await asyncio.gather(*(close(f"{prefix}-{i}") for i in range(n)), close(f"{prefix}-prime"))
    await asyncio.sleep(BURST_SETTLE_S)
    return wall, n / (created - started), n / (max(offered) - started)


def rooms_with_a_second_job(*probes: ProbeWorker) -> tuple[int, int]:
    """Rooms offered more than one job: (rooms naming an agent in their configuration or
    dispatched by their creator, plain rooms of our webhook path). Plain rooms apart: in a
    burst their launches queue in LiveKit past the capacity watch's 6 s re-offer, and until
    the pools' heartbeats held such re-offers, nearly every one got a second job
    (docs/dispatcher.md)."""
    plain = f"-{Route.OURS}-"
    twice = [room for p in probes for room, ids in p.job_ids.items() if len(ids) > 1]
    return sum(1 for r in twice if plain not in r), sum(1 for r in twice if plain in r)


Burst = tuple[float, float, float]
"""(wall-clock start, rooms/s created, jobs/s offered)."""


async def bursts(paths: Paths) -> dict[Route, list[Burst]]:
    """Each route's burst once, then the two compared for the target (the hold path and
    the room configuration) ``RATE_ROUNDS - 1`` more times, alternating: one burst of
    each varied 0.68-0.94x on the same code, so one pair decides nothing."""
    rounds: dict[Route, list[Burst]] = {}
    for route in Route:
        rounds[route] = [await burst(paths, route, f"burst-{route}", BURST_ROOMS)]
    for i in range(1, RATE_ROUNDS):
        for route in (Route.ROOM_CONFIG, Route.OURS_HOLD):
            rounds[route].append(await burst(paths, route, f"burst{i}-{route}", BURST_ROOMS))
    for route, results in rounds.items():
        rates = ", ".join(f"{offered:.1f}" for _, _, offered in results)
        print(f"  bursts of {BURST_ROOMS}, {route}: {rates} jobs/s", flush=True)
    return rounds


def median_burst(results: list[Burst]) -> Burst:
    """The burst with the median jobs/s (the lower middle one of an even count)."""
    ordered = sorted(results, key=lambda result: result[2])
    return ordered[(len(ordered) - 1) // 2]


async def dispatch_rate(nats: NatsAccess, agent_id: str, since: float, until: float) -> float:
    """Dispatches created per second from ``since`` to ``until`` (wall clock), from the
    events."""
    times = [t for t in await _dispatched_at(nats, agent_id) if since <= t < until]
    return len(times) / (max(times) - since) if times else 0.0


async def _dispatched_at(nats: NatsAccess, agent_id: str) -> list[float]:
    nc, js = await connect(nats, name="bench-dispatched", ensure=False)
    try:
        subject = subjects.job_dispatched(agent_id)
        info = await js.stream_info(VOICE_JOBS, subjects_filter=subject)
        total = (info.state.subjects or {}).get(subject, 0)
        sub = await js.subscribe(subject, ordered_consumer=True)
        out = [
            codec.decode_job_event((await sub.next_msg(timeout=10)).data).at.timestamp()
            for _ in range(total)
        ]
        await sub.unsubscribe()
        return out
    finally:
        await nc.drain()


async def dispatcher_view(nats: NatsAccess, agent_id: str) -> list[float]:
    """ms from JobRequested.at (webhook verified) to JobDispatched.at (dispatch created)."""
    nc, js = await connect(nats, name="bench-events", ensure=False)
    requested: dict[str, float] = {}
    out: list[float] = []
    try:
        subject = subjects.jobs_for_agent(agent_id)
        info = await js.stream_info(VOICE_JOBS, subjects_filter=subject)
        total = sum((info.state.subjects or {}).values())
        sub = await js.subscribe(subject, ordered_consumer=True)
        for _ in range(total):
            event = codec.decode_job_event((await sub.next_msg(timeout=10)).data)
            if isinstance(event, JobRequested):
                requested[event.job_id] = event.at.timestamp()
            elif isinstance(event, JobDispatched) and event.job_id in requested:
                out.append((event.at.timestamp() - requested[event.job_id]) * 1000)
        await sub.unsubscribe()
    finally:
        await nc.drain()
    return out


def signed_webhooks(stack: Stack, n: int, agent_id: str) -> list[tuple[bytes, str]]:
    """``n`` distinct room_started webhooks, signed as LiveKit signs them (before timing)."""
    out = []
    meta = json.dumps({"agent_id": agent_id})
    for _ in range(n):
        sid = f"RM_{uuid.uuid4().hex[:12]}"
        event = {
            "event": "room_started",
            "id": f"EV_{uuid.uuid4().hex[:12]}",
            "createdAt": str(int(time.time())),
            "room": {"sid": sid, "name": f"ingest-{sid}", "metadata": meta},
        }
        body = json.dumps(event).encode()
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        token = api.AccessToken(stack.livekit.api_key, stack.livekit.api_secret).with_sha256(digest)
        out.append((body, token.to_jwt()))
    return out


async def ingest(url: str, webhooks: list[tuple[bytes, str]]) -> tuple[float, Counter[str]]:
    """Post every webhook (``INGEST_CONCURRENCY`` at a time); rate of accepted, answers."""
    answers: Counter[str] = Counter()
    pending = iter(webhooks)
    connector = aiohttp.TCPConnector(limit=INGEST_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for body, token in pending:
                async with session.post(
                    url,
                    data=body,
                    headers={"Authorization": token, "Content-Type": "application/webhook+json"},
                ) as resp:
                    status = resp.headers.get(OUTCOME_HEADER) if resp.status == 204 else None
                    answers[status or f"http_{resp.status}"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(INGEST_CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return answers["accepted"] / elapsed, answers


async def stored_jobs(nats: NatsAccess, agent_id: str) -> int:
    nc, js = await connect(nats, name="bench-count", ensure=False)
    try:
        subject = subjects.job_requested(agent_id)
        info = await js.stream_info(VOICE_JOBS, subjects_filter=subject)
        return (info.state.subjects or {}).get(subject, 0)
    finally:
        await nc.drain()


async def create_agent(stack: Stack, agent_id: str) -> None:
    body = msgspec.structs.replace(demo_agent(), id=agent_id, name="bench agent")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{stack.config_sync_url}/api/v1/agents",
            data=msgspec.json.encode(body),
            headers={
                "Authorization": f"Bearer {stack.admin_token}",
                "Content-Type": "application/json",
            },
        ) as resp,
    ):
        if resp.status != 201:
            raise RuntimeError(f"config_sync refused the bench agent: {resp.status}")


async def run(workdir: Path) -> list[Measure]:
    stack = Stack(workdir, worker=False)
    with stack.group as group:
        group.start(stack.nats.process(), timeout=20)
        group.start(stack.livekit.process(), timeout=30)
        group.start(stack.config_sync_process(), timeout=60)
        main = group.start(dispatcher_process(stack, "dispatcher", stack.ports.dispatcher))
        agent_id = f"bench-{uuid.uuid4().hex[:6]}"
        await create_agent(stack, agent_id)
        lk = api.LiveKitAPI(stack.livekit.http_url, stack.livekit.api_key, stack.livekit.api_secret)
        nc, js = await connect(stack.nats.access(Role.OPERATOR), name="bench-probe", ensure=False)
        try:
            async with probes(stack, nc, js) as (ours, base):
                livekit = (stack.livekit.http_url, stack.livekit.api_key, stack.livekit.api_secret)
                paths = Paths(lk, ours, base, agent_id, livekit)
                await latencies(paths, "warm", WARMUP_ROOMS)
                lat = await latencies(paths, "lat", LATENCY_ROOMS)
                inside_ms = await dispatcher_view(stack.nats.access(Role.OPERATOR), agent_id)
                rounds = await bursts(paths)
                rates = {route: median_burst(results) for route, results in rounds.items()}
                second_jobs = rooms_with_a_second_job(ours, base)
                created_rate = await dispatch_rate(
                    stack.nats.access(Role.OPERATOR),
                    agent_id,
                    rounds[Route.OURS][0][0],
                    rounds[Route.OURS_HOLD][0][0],
                )
        finally:
            await lk.aclose()
            await nc.drain()

        # Ingestion, first into the all-in-one dispatcher (its consumer settles the same
        # jobs meanwhile), then into an ingest-only node with the all-in-one one stopped.
        all_agent = f"ingest-all-{uuid.uuid4().hex[:6]}"
        webhooks = await asyncio.to_thread(signed_webhooks, stack, INGEST_WEBHOOKS, all_agent)
        all_rate, all_answers = await ingest(f"{stack.dispatcher_url}/webhook/livekit", webhooks)
        all_lost = all_answers["accepted"] - await stored_jobs(
            stack.nats.access(Role.OPERATOR), all_agent
        )
        main.stop()
        port = free_port()
        group.start(dispatcher_process(stack, "dispatcher-ingest", port, DISPATCHER_ROLE="ingest"))
        only_agent = f"ingest-only-{uuid.uuid4().hex[:6]}"
        webhooks = await asyncio.to_thread(signed_webhooks, stack, INGEST_WEBHOOKS, only_agent)
        only_rate, only_answers = await ingest(f"http://127.0.0.1:{port}/webhook/livekit", webhooks)
        only_lost = only_answers["accepted"] - await stored_jobs(
            stack.nats.access(Role.OPERATOR), only_agent
        )
    return _measures(
        lat,
        inside_ms,
        rates=rates,
        created_rate=created_rate,
        second_jobs=second_jobs,
        all_in_one=(all_rate, all_answers, all_lost),
        ingest_only=(only_rate, only_answers, only_lost),
    )


Ingested = tuple[float, Counter[str], int]


def _measures(
    lat: dict[Route, list[float]],
    inside_ms: list[float],
    *,
    rates: dict[Route, tuple[float, float, float]],
    created_rate: float,
    second_jobs: tuple[int, int],
    all_in_one: Ingested,
    ingest_only: Ingested,
) -> list[Measure]:
    def p(route: Route, pct: float) -> float:
        return percentile(lat[route], pct)

    def ingestion(label: str, result: Ingested) -> Measure:
        rate, answers, lost = result
        refused = sum(v for k, v in answers.items() if k != "accepted")
        return Measure(
            f"webhooks/s verified+stored, {label} ({refused + lost} lost or refused)",
            rate,
            "1/s",
            target=f">= {INGEST_TARGET_PER_S:g}/s, none lost",
            met=rate >= INGEST_TARGET_PER_S and refused == 0 and lost == 0,
        )

    added_p99 = p(Route.OURS, 99) - p(Route.ROOM_CONFIG, 99)
    hold_rate, room_config_rate = rates[Route.OURS_HOLD][2], rates[Route.ROOM_CONFIG][2]
    return [
        Measure(
            "room created -> job offered, p50", p(Route.OURS, 50), "ms", p(Route.ROOM_CONFIG, 50)
        ),
        Measure(
            "room created -> job offered, p99", p(Route.OURS, 99), "ms", p(Route.ROOM_CONFIG, 99)
        ),
        Measure("  added by our path, p50", p(Route.OURS, 50) - p(Route.ROOM_CONFIG, 50), "ms"),
        Measure(
            "  added by our path, p99",
            added_p99,
            "ms",
            target=f"<= {ADDED_P99_TARGET_MS:g} ms",
            met=added_p99 <= ADDED_P99_TARGET_MS,
        ),
        Measure("  ours, room created with the hold agent, p50", p(Route.OURS_HOLD, 50), "ms"),
        Measure("  ours, room created with the hold agent, p99", p(Route.OURS_HOLD, 99), "ms"),
        Measure("  LiveKit explicit dispatch by the caller, p50", p(Route.EXPLICIT, 50), "ms"),
        Measure("  LiveKit explicit dispatch by the caller, p99", p(Route.EXPLICIT, 99), "ms"),
        Measure("webhook verified -> dispatch created, p50", percentile(inside_ms, 50), "ms"),
        Measure("webhook verified -> dispatch created, p99", percentile(inside_ms, 99), "ms"),
        Measure(
            f"jobs offered/s, burst of {BURST_ROOMS} rooms (median)",
            rates[Route.OURS][2],
            "1/s",
            rates[Route.ROOM_CONFIG][2],
        ),
        Measure(
            "  ours, rooms created with the hold agent (rooms.call_room)",
            hold_rate,
            "1/s",
            room_config_rate,
            target=f">= {HOLD_RATE_TARGET:g} x the room configuration's",
            met=hold_rate >= HOLD_RATE_TARGET * room_config_rate,
        ),
        Measure("  LiveKit explicit dispatch by the caller", rates[Route.EXPLICIT][2], "1/s"),
        Measure("  dispatches created/s by the dispatcher", created_rate, "1/s"),
        Measure(
            "  rooms created/s (the load)", rates[Route.OURS][1], "1/s", rates[Route.ROOM_CONFIG][1]
        ),
        Measure(
            "rooms offered a second job, rooms naming an agent (every path)",
            second_jobs[0],
            "",
            target="0",
            met=second_jobs[0] == 0,
        ),
        Measure(
            "  plain rooms (webhook path, queued in LiveKit past the re-offer)",
            second_jobs[1],
            "",
            target="0",
            met=second_jobs[1] == 0,
        ),
        ingestion("all-in-one", all_in_one),
        ingestion("ingest-only node", ingest_only),
    ]
