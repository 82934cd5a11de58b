"""density: what one call costs the worker itself (CPU, memory, reply latency).

Everything is real and local: nats-server, livekit-server, config_sync (SQLite), the
dispatcher, and one worker pool process (``python -m core_voice_worker start``) at a time.
The providers behave like remote ones: three OpenAI-compatible fakes, each its own
process (``python -m tests.fakes.openai_server``), one per role with a remote service's
pacing (`FAKES`: transcription answered after 300 ms, LLM first token after 250 ms then a
token every 20 ms, speech first bytes after 200 ms). The agents (`AGENTS` of them, calls
spread over them) use ``provider: "openai"`` for STT, LLM and TTS with ``base_url`` on the
fakes and their own key, so the worker runs what it runs in production: the openai
plugin's HTTP clients, mp3 decoding of the speech, silero VAD on every call's audio (the
non-streaming STT needs it; that is the worker's own cost), no pocketsphinx or espeak-ng.

Callers are separate processes (`callers`, `CALLS_PER_CALLER` calls each) placing real
WebRTC calls, saying a phrase every `PERIOD_S` seconds and waiting for the reply. At each
level of concurrency (`LEVELS`) and for each executor (``WORKER_EXECUTOR=process``, one
process per call, and ``thread``, calls in the pool process; a fresh worker each):

- **CPU per call-minute**: CPU time of the worker's process tree (the pool process, its
  forkserver and job processes, read every `SAMPLE_S` per process) over a steady window of
  `WINDOW_S` seconds, starting `SETTLE_S` after every call is running, divided by the
  call-minutes in the window (the worker's own count of running calls, integrated over
  the window). Calls per 2 cores = 120 / CPU-seconds per call-minute (two cores' CPU-seconds
  in a minute over what one call-minute costs). Baseline: the seed's 25 calls per 2-CPU
  worker; target >= 50, judged at the most calls that did not saturate the machine (a
  starved worker uses what it gets, not what it needs: a saturated level's CPU per
  call-minute is a lower bound, and is flagged).
- **USS per call**: (tree USS with K calls - the idle tree's USS) / K, USS being the
  pages no other process shares (median of three readings in the window).
- **Reply latency**: end of the caller's phrase -> first audio of the reply, as the
  caller hears it, for phrases started inside the window.

This machine has two cores, shared by the fakes, the callers (which decode and encode
audio and run pocketsphinx), livekit-server and the worker, and by whatever other work
runs on it. Nothing is pinned or hidden: every level also reports the share of the two
cores the worker tree used, how busy the whole machine was, and the CPU used by processes
outside this benchmark (other developers' tests). Latencies under contention include
waiting for a core. One call costs the worker ~17% of a core and its caller 10-16% here,
so 10 calls and more saturate the machine whatever else runs: those levels show what an
oversubscribed worker does (calls fail and are redialled), not what a call costs. A run
takes ~26 minutes; results and their reading are in docs/benchmarks.md.

The dispatcher runs with its capacity watch off (``DISPATCHER_CAPACITY_WAIT_S=0``): it
re-offers a dispatch when no agent is in the room 2 s after it, and a job process still
starting on a busy machine then gets a second agent into the room.
"""

import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import os
import signal
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core_voice_cli.bench import Measure, percentile
from core_voice_cli.bench.agents import create_agents
from core_voice_cli.bench.callers import REPORT_DECODER, CallRecord
from core_voice_cli.bench.proctree import MB, CpuSample, CpuSampler, cpu_between, tree_memory
from core_voice_cli.bench.proctree import wait_idle as wait_trees_idle
from core_voice_cli.procs import ManagedProcess, free_port, http_ready
from core_voice_cli.stack import LOOPBACK_BASE_URLS, Stack
from core_voice_contracts.admin_api import AgentCreate, ProviderChoice
from core_voice_worker.speech import normalize

LEVELS = (1, 3, 5, 10, 25)
EXECUTORS = ("process", "thread")
WINDOW_S = 60.0
SETTLE_S = 10.0
"""After every call is running: greetings and first phrases are over."""
JOIN_ALLOWANCE_S = 30.0
"""Time given to the last call to be running, after the callers' ramp."""
PERIOD_S = 8.0
"""A phrase every 8 s: ~1.5 s of speech, the reply ~2 s later, ~2 s of reply audio."""
SPACING_S = 1.0
"""Between call starts (25 calls ramp up over 25 s): with the process executor each call
beyond the one prewarmed process waits for a new job process (2-5 s each here, one after
another); the steady state is what is measured, not a burst of arrivals."""
CALLS_PER_CALLER = 5
IDLE_S = 20.0
SAMPLE_S = 1.0
MEMORY_AT = (0.25, 0.5, 0.75)
"""Where in the window the tree's memory is read (the median is reported)."""
AGENTS = 4
MAX_CONCURRENCY = 40
FAKES: dict[str, tuple[float, float]] = {
    "stt": (0.30, 0.0),
    "llm": (0.25, 0.02),
    "tts": (0.20, 0.03),
}
"""Role -> (first_delay, chunk_delay) of its fake: a remote provider's pacing."""
SEED_CALLS_PER_2_CORES = 25.0
TARGET_CALLS_PER_2_CORES = 50.0
IDLE_BELOW_CORES = 0.05
LEFTOVER_WAIT_S = 60.0
SATURATED_PCT = 90.0
"""Machine busy at or above this share of its CPUs: the worker got less than it asked."""

GREETING = "Hello, how can I help?"
CALLER_PHRASES = ("what are your opening hours", "i would like to book an appointment")
RULES: dict[str, Any] = {
    "rules": [
        {"match": "opening hours", "reply": "We are open from nine to five."},
        {"match": "book appointment", "reply": "Which day would you like to come in?"},
    ],
    "fallback": "Sorry, could you say that again?",
}
AGENT_PHRASES = (GREETING, *(r["reply"] for r in RULES["rules"]), RULES["fallback"])
CALLER_GRAMMAR = sorted(
    {
        " ".join(words[:n])
        for words in (normalize(p).split() for p in AGENT_PHRASES)
        for n in range(1, len(words) + 1)
    }
)
"""What the callers recognize: the agent's phrases and every word prefix of them. The
synthetic caller hangs up on a reply it cannot recognize; on a saturated machine the
agent's audio arrives with gaps and a whole-phrase grammar fails on its first part, so
the calls would churn (hang up, redial, start again) instead of holding the load. Only
the reply's onset is measured, not its words."""

GROUPS = ("worker", "callers", "fakes", "servers", "harness")
SERVER_NAMES = ("nats-server", "livekit-server", "config-sync", "dispatcher")


@dataclass(frozen=True)
class Idle:
    uss: float
    rss: float
    processes: int
    cpu_cores: float


@dataclass(frozen=True)
class Level:
    executor: str
    calls: int
    window_s: float
    active_mean: float
    active_min: float
    cpu: dict[str, float]
    """CPU-seconds in the window: each of `GROUPS`, ``machine`` (all CPUs, every process)
    and ``other`` (machine - ours: work outside this benchmark)."""
    uss: float
    processes: int
    latencies: list[float]
    calls_placed: int
    calls_failed: int
    errors: list[str] = field(default_factory=list)
    leftover: int = 0
    """Jobs still running `LEFTOVER_WAIT_S` after every caller hung up."""
    crashed: str = ""
    """The end of the worker's log if it was found dead after the level (then the
    executor's later levels are skipped)."""

    @property
    def call_minutes(self) -> float:
        return self.active_mean * self.window_s / 60

    @property
    def cpu_per_call_minute(self) -> float:
        return self.cpu["worker"] / self.call_minutes if self.call_minutes else math.nan

    @property
    def saturated(self) -> bool:
        return self.share("machine") >= SATURATED_PCT

    def share(self, group: str) -> float:
        """Percent of the machine's CPUs over the window."""
        return 100 * self.cpu[group] / (self.window_s * (os.cpu_count() or 1))


def repo_root() -> Path:
    """The checkout: the OpenAI fake runs from its ``tests/fakes``."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "tests" / "fakes" / "openai_server.py").is_file():
            return parent
    raise RuntimeError("density runs tests/fakes/openai_server.py: run it from a checkout")


def start_fakes(stack: Stack) -> dict[str, tuple[ManagedProcess, str]]:
    """One OpenAI fake per role; returns role -> (process, base_url)."""
    rules = stack.base_dir / "rules.json"
    rules.write_text(json.dumps(RULES))
    fakes = {}
    for role, (first, chunk) in FAKES.items():
        port = free_port()
        process = ManagedProcess(
            f"openai-fake-{role}",
            [
                sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port),
                "--rules-json", str(rules), "--phrases", *CALLER_PHRASES,
                "--first-delay", str(first), "--chunk-delay", str(chunk),
            ],
            log_dir=stack.log_dir,
            cwd=repo_root(),
            ready=http_ready(f"http://127.0.0.1:{port}/healthz"),
        )  # fmt: skip
        stack.group.start(process, timeout=60)
        fakes[role] = (process, f"http://127.0.0.1:{port}/v1")
    return fakes


def agent_body(agent_id: str, urls: dict[str, str]) -> AgentCreate:
    return AgentCreate(
        id=agent_id,
        name=agent_id,
        instructions="You are the receptionist of a small clinic. Answer briefly.",
        greeting=GREETING,
        stt=ProviderChoice(
            provider="openai", model="gpt-4o-mini-transcribe", options={"base_url": urls["stt"]}
        ),
        llm=ProviderChoice(
            provider="openai", model="gpt-4.1-mini", options={"base_url": urls["llm"]}
        ),
        tts=ProviderChoice(
            provider="openai",
            model="gpt-4o-mini-tts",
            voice="ash",
            options={"base_url": urls["tts"]},
        ),
        keys={"openai": f"sk-bench-{uuid.uuid4().hex}"},
    )


class Worker:
    """One worker pool process under test, and its /status."""

    def __init__(self, stack: Stack, executor: str) -> None:
        self.port = free_port()
        self.executor = executor
        self.process = stack.worker_process(
            f"worker-{executor}",
            self.port,
            WORKER_EXECUTOR=executor,
            WORKER_WORKER_ID=f"density-{executor}",
            WORKER_MAX_CONCURRENCY=str(MAX_CONCURRENCY),
            LOG_LEVEL="WARNING",
        )
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

    async def status(self) -> dict[str, Any]:
        resp = await self.client.get("/status")
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    async def active_calls(self) -> float:
        return float((await self.status())["active_calls"])

    async def wait_calls(self, at_least: int, at_most: int, deadline: float) -> float:
        """Poll until the active calls are within bounds; return when (time.time())."""
        while time.time() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                active = await self.active_calls()
                if at_least <= active <= at_most:
                    return time.time()
            await asyncio.sleep(0.25)
        return time.time()

    async def aclose(self) -> None:
        await self.client.aclose()
        self.process.stop()


async def start_callers(
    stack: Stack, calls: int, agents: list[str], *, start_at: float, duration: float, tag: str
) -> list[asyncio.subprocess.Process]:
    env = {
        **os.environ,
        "LIVEKIT_URL": stack.livekit.url,
        "LIVEKIT_API_KEY": stack.livekit.api_key,
        "LIVEKIT_API_SECRET": stack.livekit.api_secret,
    }
    procs = []
    for first in range(0, calls, CALLS_PER_CALLER):
        n = min(CALLS_PER_CALLER, calls - first)
        argv = [
            "-m", "core_voice_cli.bench.callers", "--calls", str(n), "--first-index", str(first),
            "--duration", str(duration), "--period", str(PERIOD_S), "--spacing", str(SPACING_S),
            "--start-at", str(start_at), "--prefix", f"density-{tag}",
        ]  # fmt: skip
        for agent in agents:
            argv += ["--agent", agent]
        for phrase in CALLER_PHRASES:
            argv += ["--say", phrase]
        for phrase in CALLER_GRAMMAR:
            argv += ["--expect", phrase]
        log = (stack.log_dir / f"callers-{tag}-{first}.log").open("ab")
        try:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    *argv,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    env=env,
                    start_new_session=True,
                )
            )
        finally:
            log.close()
    return procs


async def collect(
    procs: list[asyncio.subprocess.Process], timeout: float, keep: Path
) -> list[CallRecord]:
    """Every caller process's report (kept in ``keep``, one JSON line per process);
    processes still running after ``timeout`` are killed."""
    records: list[CallRecord] = []
    try:
        async with asyncio.timeout(timeout):
            outputs = await asyncio.gather(*(p.communicate() for p in procs))
    finally:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                await p.wait()
    with keep.open("ab") as kept:
        for stdout, _ in outputs:
            if stdout.strip():
                kept.write(stdout)
                records += REPORT_DECODER.decode(stdout).calls
    return records


def integrate(samples: list[CpuSample], name: str) -> tuple[float, float, float]:
    """Mean and minimum of probe ``name`` over the samples (time-weighted), and its span."""
    pairs = [(s.at, s.extra.get(name, math.nan)) for s in samples]
    pairs = [(at, v) for at, v in pairs if not math.isnan(v)]
    if len(pairs) < 2:
        return math.nan, math.nan, 0.0
    area = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in itertools.pairwise(pairs))
    span = pairs[-1][0] - pairs[0][0]
    return area / span, min(v for _, v in pairs), span


async def run_level(
    stack: Stack,
    worker: Worker,
    sampler: CpuSampler,
    agents: list[str],
    calls: int,
) -> Level:
    tag = f"{worker.executor}-{calls}"
    ramp = calls * SPACING_S
    duration = ramp + JOIN_ALLOWANCE_S + SETTLE_S + WINDOW_S + PERIOD_S + 5
    start_at = time.time() + 3.0  # the callers' imports happen before it
    procs = await start_callers(stack, calls, agents, start_at=start_at, duration=duration, tag=tag)
    sampler.roots["callers"] = [p.pid for p in procs]
    try:
        running = await worker.wait_calls(
            calls, MAX_CONCURRENCY, start_at + ramp + JOIN_ALLOWANCE_S
        )
        start = running + SETTLE_S
        end = min(start + WINDOW_S, start_at + duration - PERIOD_S - 5)
        memory = []
        for at in MEMORY_AT:
            await asyncio.sleep(max(0.0, start + at * (end - start) - time.time()))
            memory.append(await asyncio.to_thread(tree_memory, worker.process.pid, frames=False))
        await asyncio.sleep(max(0.0, end - time.time()) + SAMPLE_S)
        records = await collect(
            procs, timeout=duration + 60, keep=stack.log_dir / f"callers-{tag}.jsonl"
        )
    finally:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
        sampler.roots["callers"] = []
    window = sampler.between(start, end)
    active_mean, active_min, span = integrate(window, "active_calls")
    cpu = {group: cpu_between(window, group) for group in GROUPS}
    cpu["machine"] = window[-1].machine_busy - window[0].machine_busy if window else math.nan
    cpu["other"] = cpu["machine"] - sum(cpu[g] for g in GROUPS)
    latencies = [t.latency_s for r in records for t in r.turns if start <= t.at <= end]
    failed = [r for r in records if not r.ok]
    return Level(
        executor=worker.executor,
        calls=calls,
        window_s=span,
        active_mean=active_mean,
        active_min=active_min,
        cpu=cpu,
        uss=statistics.median(m.uss for m in memory) / MB,
        processes=max(m.processes for m in memory),
        latencies=latencies,
        calls_placed=len(records),
        calls_failed=len(failed),
        errors=sorted({r.error or "" for r in failed}),
    )


async def measure_idle(worker: Worker, sampler: CpuSampler) -> Idle:
    began = time.time()
    await asyncio.sleep(IDLE_S)
    samples = sampler.between(began, time.time())
    memory = await asyncio.to_thread(tree_memory, worker.process.pid, frames=False)
    span = samples[-1].at - samples[0].at if len(samples) > 1 else math.nan
    return Idle(
        uss=memory.uss / MB,
        rss=memory.rss / MB,
        processes=memory.processes,
        cpu_cores=cpu_between(samples, "worker") / span,
    )


async def run_executor(
    stack: Stack, sampler: CpuSampler, agents: list[str], executor: str
) -> tuple[Idle, list[Level]]:
    worker = Worker(stack, executor)
    try:
        await asyncio.to_thread(lambda: worker.process.start().wait_ready(300))
        sampler.roots["worker"] = [worker.process.pid]
        sampler.probes["active_calls"] = worker.active_calls
        await wait_trees_idle([worker.process.pid], below_cores=IDLE_BELOW_CORES, timeout=300)
        idle = await measure_idle(worker, sampler)
        levels = []
        for calls in LEVELS:
            level = await run_level(stack, worker, sampler, agents, calls)
            if not worker.process.running():
                levels.append(dataclasses.replace(level, crashed=worker.process.log_tail(3)))
                break
            await worker.wait_calls(0, 0, time.time() + LEFTOVER_WAIT_S)
            leftover = int(await worker.active_calls())
            with contextlib.suppress(TimeoutError):  # reported as leftover jobs
                await wait_trees_idle(
                    [worker.process.pid], below_cores=IDLE_BELOW_CORES, timeout=60
                )
            levels.append(dataclasses.replace(level, leftover=leftover))
        return idle, levels
    finally:
        sampler.probes.pop("active_calls", None)
        sampler.roots["worker"] = []
        await worker.aclose()


def _ms(values: list[float], pct: float) -> float:
    return percentile(values, pct) * 1000


def headline(levels: list[Level], executor: str) -> Level:
    """The level whose CPU per call-minute is the density estimate: the most calls with the
    machine not saturated (a saturated worker uses what it gets, not what it needs)."""
    own = sorted((lv for lv in levels if lv.executor == executor), key=lambda lv: lv.calls)
    clear = [lv for lv in own if not lv.saturated]
    return clear[-1] if clear else own[0]


def measures(idle: dict[str, Idle], levels: list[Level]) -> list[Measure]:
    out = []
    for executor, i in idle.items():
        out.append(
            Measure(f"{executor}: idle worker tree USS ({i.processes} processes)", i.uss, "MB")
        )
        out.append(Measure(f"{executor}: idle worker tree CPU", 100 * i.cpu_cores, "% of a core"))
    for level in sorted(levels, key=lambda lv: (lv.calls, EXECUTORS.index(lv.executor))):
        head = f"{level.executor}, {level.calls} calls"
        flag = " [machine saturated: a lower bound]" if level.saturated else ""
        out += [
            Measure(
                f"{head}: worker CPU per call-minute ({level.active_mean:.1f} calls running){flag}",
                level.cpu_per_call_minute,
                "CPU-s",
            ),
            Measure(
                f"{head}: calls per 2 cores (120 / CPU-s per call-minute)"
                + (" [saturated: not an estimate]" if level.saturated else ""),
                120 / level.cpu_per_call_minute,
                "calls",
                baseline=SEED_CALLS_PER_2_CORES,
            ),
            Measure(
                f"{head}: USS per call",
                (level.uss - idle[level.executor].uss) / level.calls,
                "MB",
            ),
            Measure(
                f"{head}: reply p50 ({len(level.latencies)} replies)",
                _ms(level.latencies, 50),
                "ms",
            ),
            Measure(f"{head}: reply p95", _ms(level.latencies, 95), "ms"),
            Measure(f"{head}: worker tree share of the machine", level.share("worker"), "%"),
            Measure(
                f"{head}: machine busy (callers {level.share('callers'):.0f}%, fakes "
                f"{level.share('fakes'):.0f}%, servers {level.share('servers'):.0f}%)",
                level.share("machine"),
                "%",
            ),
            Measure(f"{head}: CPU of processes outside the benchmark", level.share("other"), "%"),
            Measure(
                f"{head}: calls failed, of {level.calls_placed}"
                + (f" ({'; '.join(level.errors)[:120]})" if level.errors else "")
                + (
                    f"; {level.leftover} jobs still running {LEFTOVER_WAIT_S:g} s after the "
                    "callers hung up"
                    if level.leftover
                    else ""
                )
                + ("; THE WORKER DIED during this level" if level.crashed else ""),
                level.calls_failed,
                "calls",
            ),
        ]
    for executor in idle:
        best = headline(levels, executor)
        per_2 = 120 / best.cpu_per_call_minute
        out.append(
            Measure(
                f"{executor}: calls per 2 cores, from {best.calls} calls"
                + (" (every level saturated the machine)" if best.saturated else ""),
                per_2,
                "calls",
                baseline=SEED_CALLS_PER_2_CORES,
                target=f">= {TARGET_CALLS_PER_2_CORES:g} (baseline: the seed's 25 per 2-CPU worker)",
                met=per_2 >= TARGET_CALLS_PER_2_CORES,
            )
        )
    return out


async def run(workdir: Path) -> list[Measure]:
    # The dispatcher's capacity watch re-offers a dispatch when no agent is in the room
    # 2 s after it; a job process still starting on a loaded box then gets a second agent
    # into the room. This measures the worker, so the watch is off (DISPATCHER_CAPACITY_WAIT_S=0).
    stack = Stack(
        workdir,
        worker=False,
        dispatcher_env={"DISPATCHER_CAPACITY_WAIT_S": "0"},
        base_url_allow=LOOPBACK_BASE_URLS,  # the agents' providers are fakes on 127.0.0.1
    )
    sampler = CpuSampler(SAMPLE_S)
    with stack.group as group:
        group.start(stack.nats.process(), timeout=20)
        group.start(stack.livekit.process(), timeout=30)
        group.start(stack.config_sync_process(), timeout=60)
        group.start(stack.dispatcher_process(), timeout=60)
        fakes = await asyncio.to_thread(start_fakes, stack)
        urls = {role: url for role, (_, url) in fakes.items()}
        ids = [f"density-{i}-{uuid.uuid4().hex[:6]}" for i in range(AGENTS)]
        agents = await create_agents(stack, [agent_body(agent_id, urls) for agent_id in ids])
        sampler.roots.update(
            servers=[group.get(name).pid for name in SERVER_NAMES],
            fakes=[process.pid for process, _ in fakes.values()],
            worker=[],
            callers=[],
        )
        sampler.start()
        try:
            idle: dict[str, Idle] = {}
            levels: list[Level] = []
            for executor in EXECUTORS:
                idle[executor], done = await run_executor(stack, sampler, agents, executor)
                levels += done
        finally:
            await sampler.stop()
    return measures(idle, levels)
