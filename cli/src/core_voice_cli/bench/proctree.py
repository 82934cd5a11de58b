"""Process trees as the density and memory benchmarks count them: a root process and every
process it spawned (a worker pool, its forkserver and its job processes).

CPU is read per process, keyed by (pid, start time), so a job process that starts or ends
inside a window is counted for the part of it that falls inside (up to one sampling
interval before it ends is lost). Memory is psutil's ``memory_full_info`` summed over the
tree, and, where the kernel shows physical frame numbers (root), the tree's resident pages
counted once each (`resident_frames`): what the tree holds in RAM however its processes
share pages (a job process forked from the forkserver shares most of its pages with it,
and psutil's RSS counts those in both).
"""

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import psutil

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024
_PRESENT = np.uint64(1 << 63)
_PFN_MASK = np.uint64((1 << 55) - 1)

Key = tuple[int, float]
"""A process: pid and start time (a pid may be reused)."""
Probe = Callable[[], Awaitable[float]]


def descendants(roots: Iterable[int]) -> list[psutil.Process]:
    """``roots`` and everything below them that is alive now (one pass over /proc)."""
    children: dict[int, list[psutil.Process]] = {}
    by_pid: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["ppid"]):
        by_pid[proc.pid] = proc
        children.setdefault(proc.info["ppid"], []).append(proc)
    out: list[psutil.Process] = []
    stack = [by_pid[pid] for pid in roots if pid in by_pid]
    seen: set[int] = set()
    while stack:
        proc = stack.pop()
        if proc.pid in seen:
            continue
        seen.add(proc.pid)
        out.append(proc)
        stack.extend(children.get(proc.pid, []))
    return out


def _cpu_of(procs: Iterable[psutil.Process]) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
            out[(proc.pid, proc.create_time())] = times.user + times.system
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return out


def machine_busy_s() -> float:
    """CPU-seconds all CPUs have spent busy since boot (guest time is inside ``user``)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)


@dataclass(frozen=True)
class CpuSample:
    at: float
    """time.time() of the sample."""
    groups: dict[str, dict[Key, float]]
    """Group name -> each process's CPU-seconds so far."""
    machine_busy: float
    extra: dict[str, float] = field(default_factory=dict)
    """Numbers read with the sample (e.g. the worker's active calls)."""


def take_sample(roots: Mapping[str, Sequence[int]], extra: dict[str, float]) -> CpuSample:
    groups: dict[str, dict[Key, float]] = {}
    for name, pids in roots.items():
        procs = descendants(pids) if name != "harness" else [psutil.Process(p) for p in pids]
        groups[name] = _cpu_of(procs)
    return CpuSample(time.time(), groups, machine_busy_s(), extra)


def cpu_between(samples: Sequence[CpuSample], group: str) -> float:
    """CPU-seconds ``group`` used from the first to the last of ``samples``."""
    if len(samples) < 2:
        return 0.0
    first = samples[0].groups.get(group, {})
    last: dict[Key, float] = {}
    for sample in samples:
        last.update(sample.groups.get(group, {}))
    return sum(value - first.get(key, 0.0) for key, value in last.items())


class CpuSampler:
    """Samples the CPU of named process groups every ``interval`` seconds, in a task.

    ``roots`` may change while it runs (callers come and go); ``probe`` adds numbers read
    at each sample (the worker's active calls), so they line up with the CPU readings.
    The group ``harness`` is this process alone, not its children.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.roots: dict[str, list[int]] = {"harness": [os.getpid()]}
        self.samples: list[CpuSample] = []
        self.probes: dict[str, Probe] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cpu-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            extra: dict[str, float] = {}
            for name, probe in self.probes.items():
                try:
                    extra[name] = await probe()
                except Exception:  # a probe that fails leaves a gap, not a dead sampler
                    extra[name] = float("nan")
            roots = {name: list(pids) for name, pids in self.roots.items()}
            self.samples.append(await asyncio.to_thread(take_sample, roots, extra))
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def between(self, start: float, end: float) -> list[CpuSample]:
        """The samples taken from wall-clock ``start`` to ``end``."""
        return [s for s in self.samples if start <= s.at <= end]


@dataclass(frozen=True)
class TreeMemory:
    """Bytes, summed over the tree's processes (RSS and PSS as the kernel reports them)."""

    processes: int
    rss: int
    uss: int
    pss: int
    resident_once: int | None = None
    """The tree's resident pages, each physical page counted once (None without root)."""

    def mb(self, attr: str) -> float:
        value = getattr(self, attr)
        return float("nan") if value is None else float(value) / MB


def tree_memory(root: int, *, frames: bool = True) -> TreeMemory:
    procs = descendants([root])
    rss = uss = pss = 0
    counted = 0
    pids = []
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        uss += info.uss
        pss += info.pss
        counted += 1
        pids.append(proc.pid)
    once = None
    if frames:
        found = resident_frames(pids)
        once = None if found is None else int(found.size) * PAGE_SIZE
    return TreeMemory(counted, rss, uss, pss, once)


def _frames_of(pid: int) -> np.ndarray | None:
    """Physical frame numbers of ``pid``'s resident pages; None if the kernel hides them."""
    ranges = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            span, _, rest = line.partition(" ")
            if rest.rstrip().endswith("[vsyscall]"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            ranges.append((start, end))
    found = []
    hidden = True
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for start, end in ranges:
            pagemap.seek(start // PAGE_SIZE * 8)
            entries = np.frombuffer(pagemap.read((end - start) // PAGE_SIZE * 8), dtype=np.uint64)
            present = entries[(entries & _PRESENT) != 0] & _PFN_MASK
            if present.size:
                if present.any():
                    hidden = False
                found.append(present)
    if not found:
        return np.empty(0, dtype=np.uint64)
    return None if hidden else np.unique(np.concatenate(found))


def resident_frames(pids: Iterable[int]) -> np.ndarray | None:
    """The distinct physical frames resident in any of ``pids`` (None without root)."""
    parts = []
    for pid in pids:
        try:
            frames = _frames_of(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        except PermissionError:
            return None
        if frames is None:
            return None
        parts.append(frames)
    if not parts:
        return np.empty(0, dtype=np.uint64)
    return np.unique(np.concatenate(parts))


def tree_frames(root: int) -> np.ndarray | None:
    return resident_frames(p.pid for p in descendants([root]))


async def wait_idle(
    roots: Sequence[int],
    *,
    below_cores: float,
    over_s: float = 3.0,
    timeout: float = 600.0,
) -> float:
    """Wait until each tree of ``roots`` uses under ``below_cores`` of a core over ``over_s``.

    Returns the seconds waited; raises TimeoutError after ``timeout``. Used after start-up:
    a worker's forkserver imports every provider plugin, which takes seconds of CPU.
    """
    began = time.monotonic()
    deadline = began + timeout
    while True:
        before = [await asyncio.to_thread(tree_cpu, root) for root in roots]
        await asyncio.sleep(over_s)
        after = [await asyncio.to_thread(tree_cpu, root) for root in roots]
        busiest = max(cpu_delta(b, a) / over_s for b, a in zip(before, after, strict=True))
        if busiest < below_cores:
            return time.monotonic() - began
        if time.monotonic() > deadline:
            raise TimeoutError(f"process trees still busy ({busiest:.2f} cores) after {timeout}s")


def tree_cpu(root: int) -> dict[Key, float]:
    """Each process's CPU-seconds so far, for the tree of ``root``."""
    return _cpu_of(descendants([root]))


def cpu_delta(before: Mapping[Key, float], after: Mapping[Key, float]) -> float:
    """CPU-seconds used between two `tree_cpu` readings (processes started since count whole)."""
    return sum(value - before.get(key, 0.0) for key, value in after.items())
