"""memory: one shared pool holding 100 agents against one worker deployment per agent.

Everything is real and local: nats-server, livekit-server, config_sync (SQLite) with
`AGENTS` agents, then worker processes (``python -m core_voice_worker start``, default
settings: process executor, one prewarmed job process), all idle, no calls:

- **the shared pool**: one worker whose mirror holds every agent's config (a
  `JobDispatched` naming each agent makes it fetch it; checked with ``/status``);
- **per-agent deployments** (the seed's way): `PER_AGENT_WORKERS` workers, each with its
  own ``WORKER_AGENT_NAME`` and holding its one agent's config, as each agent's own
  deployment would run. The total for `AGENTS` agents is **extrapolated** from them
  (mean per worker x `AGENTS`); running 100 here would need ~100 x 350 MB.

Each is a process tree: the worker process, its forkserver (which imports every provider
plugin at start-up), the prewarmed job process forked from it, and multiprocessing's
resource tracker. Measured only once every tree is idle (start-up on two cores takes
minutes for ten workers: each forkserver imports every provider plugin). Per tree:

- **RSS** summed over the tree's processes (psutil): pages a job process shares with the
  forkserver it was forked from are counted in both, so this overstates a tree;
- **USS**: pages no other process on the machine maps (a lower bound: nothing shared is
  counted, so a tree's USS shrinks when another tree maps the same library pages);
- **PSS**: each page divided by the number of processes mapping it, across the whole
  machine, so libraries mapped by all eleven trees are split eleven ways;
- **resident once**: the tree's resident pages, each physical page counted once
  (``/proc/PID/pagemap``, needs root): what the tree holds in RAM, the closest to what a
  container of its own is charged for its mapped pages.

Also each settled tree's CPU over `IDLE_CPU_S` (what idle deployments burn doing nothing).

Ratios (per-agent total / shared pool) are given for these views. **Own containers**
(``resident once``) is the one to quote for per-agent pods, which share no anonymous memory;
**same host** counts pages shared between per-agent trees once (the shared part once,
then each tree's exclusive pages times `AGENTS`), the best case for per-agent deployments.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import numpy as np

from core_voice_cli.bench import Measure
from core_voice_cli.bench.agents import create_agents
from core_voice_cli.bench.proctree import (
    MB,
    PAGE_SIZE,
    TreeMemory,
    cpu_delta,
    tree_cpu,
    tree_frames,
    tree_memory,
    wait_idle,
)
from core_voice_cli.demo import demo_agent
from core_voice_cli.procs import ManagedProcess, free_port
from core_voice_cli.stack import WORKER_AGENT_NAME, Stack
from core_voice_contracts import subjects
from core_voice_contracts.bus import connect, publish
from core_voice_contracts.events import JobDispatched
from core_voice_contracts.permissions import Role

AGENTS = 100
PER_AGENT_WORKERS = 10
IDLE_BELOW_CORES = 0.05
"""A tree is settled when it uses under 5% of a core over `IDLE_OVER_S` (an idle worker
tree uses ~3%: pings between the pool, its idle job process, LiveKit and NATS)."""
IDLE_OVER_S = 5.0
IDLE_CPU_S = 30.0
"""How long each settled tree's CPU is read."""
START_TIMEOUT_S = 900.0
HOLD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Tree:
    name: str
    memory: TreeMemory
    frames: np.ndarray | None


async def dispatch_named(stack: Stack, pairs: list[tuple[str, str]]) -> None:
    """Publish a `JobDispatched` per (agent, worker agent name): that worker prefetches it."""
    nc, js = await connect(stack.nats.access(Role.OPERATOR), name="bench-memory", ensure=False)
    try:
        for agent_id, worker_name in pairs:
            await publish(
                js,
                subjects.job_dispatched(agent_id),
                JobDispatched(
                    job_id=f"bench-memory-{uuid.uuid4().hex}",
                    room_name=f"bench-memory-{agent_id}",
                    agent_id=agent_id,
                    dispatch_id="AD_bench_memory",
                    worker_agent_name=worker_name,
                ),
            )
    finally:
        await nc.drain()


async def configs_held(port: int, at_least: int) -> int:
    """Wait until the worker's mirror holds ``at_least`` configs; return how many it holds."""
    deadline = time.monotonic() + HOLD_TIMEOUT_S
    held = 0
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            resp = await client.get(f"http://127.0.0.1:{port}/status")
            held = int(resp.json()["mirror"]["configs"])
            if held >= at_least:
                return held
            await asyncio.sleep(0.2)
    raise TimeoutError(f"worker on port {port} holds {held} configs, expected {at_least}")


def worker(stack: Stack, name: str, agent_name: str) -> tuple[ManagedProcess, int]:
    port = free_port()
    process = stack.worker_process(
        name, port, WORKER_AGENT_NAME=agent_name, WORKER_WORKER_ID=name, LOG_LEVEL="WARNING"
    )
    stack.group.processes.append(process)
    return process, port


def measure(name: str, process: ManagedProcess) -> Tree:
    return Tree(name, tree_memory(process.pid, frames=False), tree_frames(process.pid))


def once_mb(tree: Tree) -> float:
    return float("nan") if tree.frames is None else tree.frames.size * PAGE_SIZE / MB


def same_host_mb(trees: list[Tree], n: int) -> float:
    """Resident pages of ``n`` such trees on one host: pages shared between the measured
    trees counted once, plus each tree's exclusive pages (their mean) ``n`` times."""
    frames = [t.frames for t in trees]
    if any(f is None for f in frames) or not frames:
        return float("nan")
    arrays = [f for f in frames if f is not None]
    values, counts = np.unique(np.concatenate(arrays), return_counts=True)
    shared = int((counts > 1).sum())
    exclusive = values[counts == 1]
    per_tree = [int(np.isin(f, exclusive, assume_unique=True).sum()) for f in arrays]
    return (shared + n * sum(per_tree) / len(per_tree)) * PAGE_SIZE / MB


async def idle_cores(roots: list[int]) -> list[float]:
    """Each tree's CPU over `IDLE_CPU_S`, in cores (all read over the same interval)."""
    before = [await asyncio.to_thread(tree_cpu, root) for root in roots]
    began = time.monotonic()
    await asyncio.sleep(IDLE_CPU_S)
    after = [await asyncio.to_thread(tree_cpu, root) for root in roots]
    span = time.monotonic() - began
    return [cpu_delta(b, a) / span for b, a in zip(before, after, strict=True)]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


async def run(workdir: Path) -> list[Measure]:
    stack = Stack(workdir, worker=False)
    with stack.group as group:
        group.start(stack.nats.process(), timeout=20)
        group.start(stack.livekit.process(), timeout=30)
        group.start(stack.config_sync_process(), timeout=60)
        agents = await create_agents(
            stack,
            [
                msgspec.structs.replace(demo_agent(), id=agent_id, name=agent_id)
                for agent_id in (f"mem-{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(AGENTS))
            ],
        )

        pool, pool_port = worker(stack, "pool", WORKER_AGENT_NAME)
        await asyncio.to_thread(lambda: pool.start().wait_ready(START_TIMEOUT_S))
        await wait_idle([pool.pid], below_cores=IDLE_BELOW_CORES, over_s=IDLE_OVER_S)
        empty = await asyncio.to_thread(measure, "pool, empty mirror", pool)
        await dispatch_named(stack, [(a, WORKER_AGENT_NAME) for a in agents])
        held = await configs_held(pool_port, AGENTS)
        await wait_idle([pool.pid], below_cores=IDLE_BELOW_CORES, over_s=IDLE_OVER_S)
        alone = await asyncio.to_thread(measure, "pool alone", pool)

        names = [f"agent-{a}" for a in agents[:PER_AGENT_WORKERS]]
        per_agent = [worker(stack, f"per-agent-{i}", name) for i, name in enumerate(names)]
        started = time.monotonic()
        for process, _ in per_agent:
            process.start()
        for process, _ in per_agent:
            await asyncio.to_thread(process.wait_ready, START_TIMEOUT_S)
        ready_s = time.monotonic() - started
        await dispatch_named(stack, list(zip(agents, names, strict=False)))
        for _, port in per_agent:
            await configs_held(port, 1)
        roots = [pool.pid, *(p.pid for p, _ in per_agent)]
        await wait_idle(roots, below_cores=IDLE_BELOW_CORES, over_s=IDLE_OVER_S, timeout=900)
        settled_s = time.monotonic() - started
        pool_cores, *per_agent_cores = await idle_cores(roots)
        pool_tree = await asyncio.to_thread(measure, "pool", pool)
        trees = [
            await asyncio.to_thread(measure, f"per-agent-{i}", p)
            for i, (p, _) in enumerate(per_agent)
        ]

    n = AGENTS
    k = len(trees)
    ext = f"x{n // k} extrapolated from {k} measured"

    def per(attr: str) -> float:
        return mean([t.memory.mb(attr) for t in trees])

    views = [
        (
            "own containers: resident once per tree",
            mean([once_mb(t) for t in trees]),
            once_mb(pool_tree),
        ),
        ("RSS summed over each tree's processes", per("rss"), pool_tree.memory.mb("rss")),
        ("PSS, all trees on this host", per("pss"), pool_tree.memory.mb("pss")),
        ("USS (nothing shared counted)", per("uss"), pool_tree.memory.mb("uss")),
    ]
    out = [
        Measure(
            f"pool tree, {held} agents held: resident once ({pool_tree.memory.processes} processes)",
            once_mb(pool_tree),
            "MB",
            baseline=once_mb(empty),
            target="baseline: the same pool holding no config",
        ),
        Measure("pool tree: RSS (sum)", pool_tree.memory.mb("rss"), "MB"),
        Measure(
            "pool tree alone: USS",
            alone.memory.mb("uss"),
            "MB",
            baseline=empty.memory.mb("uss"),
            target="baseline: the same pool holding no config",
        ),
        Measure(
            "pool tree: USS (with the per-agent trees running, which map the same libraries)",
            pool_tree.memory.mb("uss"),
            "MB",
        ),
        Measure(
            "pool tree: PSS (with the per-agent trees running)",
            pool_tree.memory.mb("pss"),
            "MB",
            baseline=alone.memory.mb("pss"),
            target="baseline: PSS while the pool ran alone",
        ),
        Measure(
            f"per-agent tree, mean of {k}: resident once ({trees[0].memory.processes} processes)",
            mean([once_mb(t) for t in trees]),
            "MB",
        ),
        Measure(f"per-agent tree, mean of {k}: RSS (sum)", per("rss"), "MB"),
        Measure(f"per-agent tree, mean of {k}: USS", per("uss"), "MB"),
        Measure(f"per-agent tree, mean of {k}: PSS", per("pss"), "MB"),
    ]
    for label, per_tree, pool_mb in views:
        out.append(
            Measure(
                f"{n} per-agent deployments ({ext}), {label}",
                per_tree * n,
                "MB",
                baseline=pool_mb,
                target="baseline: the shared pool",
            )
        )
        out.append(Measure(f"ratio per-agent / pool, {label}", per_tree * n / pool_mb, "x"))
    host = same_host_mb(trees, n)
    out += [
        Measure(
            f"{n} per-agent deployments ({ext}), same host: pages shared between trees once",
            host,
            "MB",
            baseline=once_mb(pool_tree),
            target="baseline: the shared pool (resident once)",
        ),
        Measure(
            "ratio per-agent / pool, same host: pages shared between trees once",
            host / once_mb(pool_tree),
            "x",
        ),
        Measure(
            f"idle CPU, {n} per-agent deployments ({ext})",
            100 * mean(per_agent_cores) * n,
            "% of a core",
            baseline=100 * pool_cores,
            target="baseline: the shared pool",
        ),
        Measure(f"{k} per-agent workers: start -> all ready", ready_s, "s"),
        Measure(f"{k} per-agent workers: start -> all idle", settled_s, "s"),
    ]
    return out
