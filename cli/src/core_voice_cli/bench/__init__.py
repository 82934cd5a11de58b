"""Benchmarks: ``python -m core_voice_cli.bench [NAME...]`` (``make bench`` runs them all).

Each benchmark is an async function that starts the real servers it needs in a throwaway
directory, measures, and returns `Measure` rows, each beside the baseline measured in the
same run. Benchmarks report; they never fail a test run. Results and the exact command
are recorded in docs/benchmarks.md.

Adding one: write ``bench/<name>.py`` with ``async def run(workdir: Path) -> list[Measure]``
and add it to `BENCHMARKS`.
"""

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast


@dataclass(frozen=True)
class Measure:
    """One result row; ``baseline`` is the comparable number from the same run, if any."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    target: str = ""
    """The goal in words (``<= 10 ms over baseline``), shown beside the value."""
    met: bool | None = None
    """Whether ``target`` was met; None when there is no target."""


Benchmark = Callable[[Path], Awaitable[list[Measure]]]

BENCHMARKS: dict[str, str] = {
    "config_sync": "core_voice_cli.bench.config_sync",
    "dispatch": "core_voice_cli.bench.dispatch",
    "worker": "core_voice_cli.bench.worker",
    "density": "core_voice_cli.bench.density",
    "memory": "core_voice_cli.bench.memory",
}
"""Name -> the module whose ``run`` it is, in the order ``make bench`` runs them. Modules
load on demand: running one benchmark never imports (or breaks on) another."""


def load(name: str) -> Benchmark:
    return cast(Benchmark, importlib.import_module(BENCHMARKS[name]).run)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported value was observed)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]
