"""worker: how fast an edit is live in every pool, and a call's config at job start.

Everything is real and local: nats-server, livekit-server, config_sync (SQLite), the
dispatcher, and ``WORKER_POOLS`` worker pool processes (``python -m core_voice_worker
start``, each registered with LiveKit).

- **Edit to live**: ``PATCH`` an agent, then ask every pool's ``/mirror/wait`` when its
  mirror held the new version (the wall-clock time it arrived, stamped by the pool).
  Lag = that time - the moment just before the ``PATCH`` was sent (so it includes the
  HTTP round trip and the commit). Reported: the first pool, and every pool (the max).
  Baselines in the same run: a TTL cache polled every 5 s and every 300 s (the seed's
  ``CONFIG_CACHE_TTL``). Each pool's poll phase is independent and uniform over the TTL,
  and each poll costs a ``voice.config.get`` measured in this run; the all-pools lag of
  an edit is the max over the pools. The 5 s model is checked against real pollers
  (``TTL_CHECK_EDITS`` edits, ``WORKER_POOLS`` pollers, each with a random phase).
- **Config at job start**: rooms naming the agent are dispatched to the pools; each call
  reports ``config_load_s`` (job entry -> runtime config in hand) in its `CallStarted`.
  Baseline: what a job did before the pool held configs, a new NATS connection and a
  ``voice.config.get`` from a fresh process (one connection per call, as measured here
  in-process).

Targets: edit -> every pool p99 <= 25 ms; config at job start p99 <= 5 ms.
"""

import asyncio
import contextlib
import json
import random
import time
import uuid
from pathlib import Path

import httpx
import msgspec
from livekit import api
from nats.aio.client import Client
from nats.aio.msg import Msg

from core_voice_cli.bench import Measure, percentile
from core_voice_cli.bench.agents import admin, create_agents
from core_voice_cli.bench.idle import wait_idle
from core_voice_cli.demo import demo_agent
from core_voice_cli.procs import ManagedProcess, free_port
from core_voice_cli.rooms import call_room
from core_voice_cli.stack import WORKER_AGENT_NAME, Stack
from core_voice_cli.synthetic_call import CallOptions, run_call
from core_voice_contracts import codec, subjects
from core_voice_contracts.admin_api import AgentCreate
from core_voice_contracts.bus import connect, publish
from core_voice_contracts.events import CallStarted, JobDispatched
from core_voice_contracts.permissions import Role
from core_voice_contracts.rpc import get_runtime_config

WORKER_POOLS = 10
EDITS = 200
TTL_CHECK_EDITS = 12
TTL_S = (5.0, 300.0)
TTL_CHECK_S = 5.0
CALLS = 200
CALL_POOLS = 2
CALL_BURST = 10
GREETING_CALLS = 100
GREETING_CONCURRENT = 4
FETCH_SAMPLES = 500
EDIT_P99_TARGET_MS = 25.0
START_P99_TARGET_MS = 5.0


def _ms(values: list[float], pct: float) -> float:
    return percentile(values, pct) * 1000


def demo_body(agent_id: str) -> AgentCreate:
    return msgspec.structs.replace(demo_agent(), id=agent_id, name=agent_id)


def start_pools(stack: Stack, n: int) -> list[tuple[ManagedProcess, int]]:
    pools = []
    for i in range(n):
        port = free_port()
        process = stack.worker_process(
            f"pool-{i}",
            port,
            WORKER_WORKER_ID=f"pool-{i}",
            WORKER_NUM_IDLE_PROCESSES="1",
            LOG_LEVEL="WARNING",
        )
        stack.group.processes.append(process)
        process.start()
        pools.append((process, port))
    for process, _ in pools:
        process.wait_ready(180)
    return pools


async def held_at(client: httpx.AsyncClient, port: int, agent_id: str, version: int) -> float:
    resp = await client.get(
        f"http://127.0.0.1:{port}/mirror/wait",
        params={"agent_id": agent_id, "version": str(version), "timeout": "20"},
        timeout=30,
    )
    resp.raise_for_status()
    return float(resp.json()["held_at"])


async def prefetch_everywhere(stack: Stack, agent_id: str, ports: list[int]) -> None:
    """A dispatched job naming the agent makes every pool fetch its config."""
    nc, js = await connect(stack.nats.access(Role.OPERATOR), name="bench-worker", ensure=False)
    try:
        await publish(
            js,
            subjects.job_dispatched(agent_id),
            JobDispatched(
                job_id="bench-prefetch",
                room_name="bench",
                agent_id=agent_id,
                dispatch_id="AD_bench",
                worker_agent_name=WORKER_AGENT_NAME,
            ),
        )
    finally:
        await nc.drain()
    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(held_at(client, port, agent_id, 1) for port in ports))


async def _bus(stack: Stack, role: Role) -> Client:
    """A plain connection as ``role`` (``WORKER`` asks ``voice.config.get`` as pools do)."""
    nc, _ = await connect(stack.nats.access(role), name=f"bench-{role.value}", ensure=False)
    return nc


async def edit_to_live(
    stack: Stack, agent_id: str, ports: list[int]
) -> tuple[list[list[float]], list[list[float]]]:
    """Per edit, every pool's lag in seconds: from just before the ``PATCH`` was sent, and
    from the commit (the ``at`` config_sync stamps on the `ConfigChanged` it writes in the
    edit's transaction)."""
    committed: dict[int, float] = {}
    nc = await _bus(stack, Role.OPERATOR)

    async def on_change(msg: Msg) -> None:
        event = codec.decode_config_event(msg.data)
        committed[event.version] = event.at.timestamp()

    await nc.subscribe(subjects.config_changed(agent_id), cb=on_change)
    from_send: list[list[float]] = []
    from_commit: list[list[float]] = []
    try:
        async with admin(stack) as api_client, httpx.AsyncClient() as probe:
            for i in range(EDITS):
                version = i + 2
                waits = [
                    asyncio.create_task(held_at(probe, port, agent_id, version)) for port in ports
                ]
                await asyncio.sleep(0.005)  # the waits are parked in the pools
                sent = time.time()
                resp = await api_client.patch(
                    f"/api/v1/agents/{agent_id}", json={"instructions": f"edit {i}"}
                )
                resp.raise_for_status()
                assert resp.json()["version"] == version
                held = await asyncio.gather(*waits)
                from_send.append([at - sent for at in held])
                from_commit.append([at - committed[version] for at in held])
                await asyncio.sleep(0.02)
    finally:
        await nc.drain()
    return from_send, from_commit


async def fetch_latencies(stack: Stack, agent_id: str) -> list[float]:
    """What one ``voice.config.get`` costs (a TTL cache's refresh), seconds."""
    nc = await _bus(stack, Role.WORKER)
    out = []
    try:
        for _ in range(FETCH_SAMPLES):
            started = time.perf_counter()
            await get_runtime_config(nc, agent_id)
            out.append(time.perf_counter() - started)
    finally:
        await nc.drain()
    return out


def ttl_model(ttl: float, fetch: list[float], pools: int, edits: int, seed: int) -> list[float]:
    """All-pools lag of ``edits`` edits under a TTL cache (uniform poll phase per pool)."""
    rng = random.Random(seed)
    return [
        max(rng.uniform(0, ttl) + rng.choice(fetch) for _ in range(pools)) for _ in range(edits)
    ]


async def ttl_check(stack: Stack, agent_id: str, pools: int) -> list[float]:
    """Real TTL pollers: ``pools`` loops, each re-reading the config every TTL_CHECK_S."""
    nc = await _bus(stack, Role.WORKER)
    held: list[tuple[int, float]] = [(0, 0.0)] * pools
    stop = asyncio.Event()
    progress = asyncio.Event()

    async def poller(i: int) -> None:
        await asyncio.sleep(random.uniform(0, TTL_CHECK_S))
        while not stop.is_set():
            reply = await get_runtime_config(nc, agent_id)
            version = getattr(getattr(reply, "config", None), "version", 0)
            if version > held[i][0]:
                held[i] = (version, time.time())
                progress.set()
            await asyncio.sleep(TTL_CHECK_S)

    tasks = [asyncio.create_task(poller(i)) for i in range(pools)]
    lags = []
    try:
        await asyncio.sleep(TTL_CHECK_S + 0.5)
        async with admin(stack) as client:
            for i in range(TTL_CHECK_EDITS):
                sent = time.time()
                resp = await client.patch(
                    f"/api/v1/agents/{agent_id}", json={"instructions": f"ttl {i}"}
                )
                version = resp.json()["version"]
                while any(v < version for v, _ in held):
                    progress.clear()
                    await progress.wait()
                lags.append(max(at for _, at in held) - sent)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.drain()
    return lags


async def config_at_job_start(stack: Stack, agent_id: str, n: int, batch: int) -> list[float]:
    """``config_load_s`` of ``n`` real calls: rooms naming the agent, ``batch`` at a time,
    each deleted once its call has started."""
    nc, _ = await connect(stack.nats.access(Role.OPERATOR), name="bench-calls", ensure=False)
    started: dict[str, float] = {}
    progress = asyncio.Event()

    async def on_call(msg: Msg) -> None:
        event = codec.decode_call_event(msg.data)
        if isinstance(event, CallStarted):
            started[event.room_name] = event.config_load_s
            progress.set()

    sub = await nc.subscribe(subjects.call_started(agent_id), cb=on_call)
    lk = api.LiveKitAPI(stack.livekit.http_url, stack.livekit.api_key, stack.livekit.api_secret)
    tag = uuid.uuid4().hex[:4]
    try:
        names = [f"start-{tag}-{i}" for i in range(n)]
        for at in range(0, n, batch):
            rooms = names[at : at + batch]
            await asyncio.gather(
                *(
                    lk.room.create_room(call_room(name, json.dumps({"agent_id": agent_id})))
                    for name in rooms
                )
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    while not all(name in started for name in rooms):
                        progress.clear()
                        await progress.wait()
            await asyncio.gather(
                *(lk.room.delete_room(api.DeleteRoomRequest(room=name)) for name in rooms)
            )
    finally:
        await sub.unsubscribe()
        await lk.aclose()
        await nc.drain()
    return [started[name] for name in names if name in started]


async def dispatch_to_greeting(
    stack: Stack, agent_id: str, n: int, concurrent: int
) -> tuple[list[float], list[float]]:
    """Real calls (the synthetic caller creates the room, the dispatcher dispatches it):
    the dispatch's time (`JobDispatched.at`) -> the agent joined, and -> its first audio,
    both as the caller saw them. Seconds."""
    nc = await _bus(stack, Role.OPERATOR)
    dispatched: dict[str, float] = {}

    async def on_job(msg: Msg) -> None:
        event = codec.decode_job_event(msg.data)
        if isinstance(event, JobDispatched):
            dispatched[event.room_name] = event.at.timestamp()

    await nc.subscribe(subjects.job_dispatched(agent_id), cb=on_job)
    demo = demo_agent()
    joined: list[float] = []
    greeted: list[float] = []
    gate = asyncio.Semaphore(concurrent)

    async def one(i: int) -> None:
        async with gate:
            result = await run_call(
                CallOptions(
                    url=stack.livekit.url,
                    api_key=stack.livekit.api_key,
                    api_secret=stack.livekit.api_secret,
                    room=f"greet-{agent_id}-{i}",
                    phrases=[demo.greeting],
                    greeting_timeout=10,
                    create_room_metadata=json.dumps({"agent_id": agent_id}),
                )
            )
            at = dispatched.get(result.room)
            if result.ok and at is not None and result.agent_joined_at and result.greeting_at:
                joined.append(result.agent_joined_at - at)
                greeted.append(result.greeting_at - at)

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await nc.drain()
    return joined, greeted


async def fresh_connection_fetches(stack: Stack, agent_id: str, n: int) -> list[float]:
    """The old per-call path: connect to NATS, ask ``voice.config.get``, disconnect."""
    out = []
    for _ in range(n):
        began = time.perf_counter()
        nc = await _bus(stack, Role.WORKER)
        await get_runtime_config(nc, agent_id)
        out.append(time.perf_counter() - began)
        await nc.close()
    return out


async def run(workdir: Path) -> list[Measure]:
    stack = Stack(workdir, worker=False)
    with stack.group as group:
        group.start(stack.nats.process(), timeout=20)
        group.start(stack.livekit.process(), timeout=30)
        group.start(stack.config_sync_process(), timeout=60)
        group.start(stack.dispatcher_process(), timeout=60)
        pools = await asyncio.to_thread(start_pools, stack, WORKER_POOLS)
        ports = [port for _, port in pools]
        settled = await asyncio.to_thread(wait_idle, [p.pid for p, _ in pools])
        print(f"{WORKER_POOLS} pools started and idle after {settled:.0f} s more")
        agent_id = f"bench-{uuid.uuid4().hex[:6]}"
        await create_agents(stack, [demo_body(agent_id)])
        await prefetch_everywhere(stack, agent_id, ports)
        from_send, from_commit = await edit_to_live(stack, agent_id, ports)
        fetch = await fetch_latencies(stack, agent_id)
        checked = await ttl_check(stack, agent_id, WORKER_POOLS)

        # Calls: a pool per core, as deployed (the rest stopped, so nothing idle competes).
        for process, _ in pools[CALL_POOLS:]:
            process.stop()
        calls_agent = f"bench-calls-{uuid.uuid4().hex[:6]}"
        await create_agents(stack, [demo_body(calls_agent)])
        loads = await config_at_job_start(stack, calls_agent, CALLS, batch=1)
        burst = await config_at_job_start(stack, calls_agent, CALLS // 2, batch=CALL_BURST)
        fresh = await fresh_connection_fetches(stack, calls_agent, CALLS)
        joined, greeted = await dispatch_to_greeting(
            stack, calls_agent, GREETING_CALLS, GREETING_CONCURRENT
        )

    every = [max(lags) for lags in from_commit]
    first = [min(lags) for lags in from_commit]
    every_sent = [max(lags) for lags in from_send]
    model = {ttl: ttl_model(ttl, fetch, WORKER_POOLS, EDITS, seed=int(ttl)) for ttl in TTL_S}
    check_model = ttl_model(TTL_CHECK_S, fetch, WORKER_POOLS, 1000, seed=7)
    edit_p99 = _ms(every, 99)
    start_p99 = _ms(loads, 99)
    pools_n = WORKER_POOLS
    return [
        Measure(f"commit -> first of {pools_n} pools p50", _ms(first, 50), "ms"),
        Measure(
            f"commit -> every one of {pools_n} pools p50",
            _ms(every, 50),
            "ms",
            baseline=percentile(model[5.0], 50) * 1000,
        ),
        Measure(
            f"commit -> every one of {pools_n} pools p99 ({len(every)} edits)",
            edit_p99,
            "ms",
            baseline=percentile(model[5.0], 99) * 1000,
            target=f"<= {EDIT_P99_TARGET_MS:g} ms (baseline: 5 s TTL)",
            met=edit_p99 <= EDIT_P99_TARGET_MS,
        ),
        Measure(
            f"PATCH sent -> every one of {pools_n} pools p50 / p99",
            _ms(every_sent, 50),
            "ms",
            baseline=_ms(every_sent, 99),
            target="(baseline column: p99; includes HTTP and the commit)",
        ),
        Measure(
            "TTL 300 s (seed) -> every pool p50",
            percentile(model[300.0], 50) * 1000,
            "ms",
            baseline=percentile(model[300.0], 99) * 1000,
            target="model (baseline column: p99)",
        ),
        Measure(
            f"TTL 5 s, real pollers -> every pool, mean of {len(checked)} edits",
            sum(checked) / len(checked) * 1000,
            "ms",
            baseline=sum(check_model) / len(check_model) * 1000,
            target="checks the model (baseline: its mean)",
        ),
        Measure("voice.config.get (one TTL refresh) p50", _ms(fetch, 50), "ms"),
        Measure("config at job start p50", _ms(loads, 50), "ms", baseline=_ms(fresh, 50)),
        Measure(
            f"config at job start p99 ({len(loads)} calls, one at a time)",
            start_p99,
            "ms",
            baseline=_ms(fresh, 99),
            target=f"<= {START_P99_TARGET_MS:g} ms (baseline: NATS connect + get per call)",
            met=start_p99 <= START_P99_TARGET_MS,
        ),
        Measure(
            f"dispatch -> agent joined p50 / p99 ({len(joined)} calls)",
            _ms(joined, 50),
            "ms",
            baseline=_ms(joined, 99),
            target="(baseline column: p99)",
        ),
        Measure(
            "dispatch -> first greeting audio p50 / p99",
            _ms(greeted, 50),
            "ms",
            baseline=_ms(greeted, 99),
            target="(baseline column: p99)",
        ),
        Measure(
            f"config at job start p50 / p99, rooms {CALL_BURST} at a time ({len(burst)} calls)",
            _ms(burst, 50),
            "ms",
            baseline=_ms(burst, 99),
            target="(baseline column: p99)",
        ),
    ]
