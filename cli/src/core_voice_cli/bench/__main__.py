"""``python -m core_voice_cli.bench [NAME...]``: run benchmarks, print results and baselines.

Exits 1 when a measure misses its target, 2 for an unknown benchmark name.
"""

import argparse
import asyncio
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from core_voice_cli.bench import BENCHMARKS, Measure, load


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"


def print_table(name: str, measures: list[Measure]) -> None:
    header = ("measure", "value", "unit", "baseline", "target", "")
    rows = [header]
    for m in measures:
        verdict = "" if m.met is None else ("met" if m.met else "MISSED")
        rows.append((m.name, _fmt(m.value), m.unit, _fmt(m.baseline), m.target, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print(f"\n## {name}\n")
    for i, row in enumerate(rows):
        cells = [
            cell.rjust(width) if col in (1, 3) else cell.ljust(width)
            for col, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * width for width in widths))


async def main(names: list[str], keep: bool) -> int:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(BENCHMARKS)}")
        return 2
    print(
        f"# Core Voice benchmarks: {platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    missed = 0
    for name in names or list(BENCHMARKS):
        workdir = Path(tempfile.mkdtemp(prefix=f"corevoice-bench-{name}-"))
        started = time.monotonic()
        try:
            measures = await load(name)(workdir)
        finally:
            if not keep:
                shutil.rmtree(workdir, ignore_errors=True)
        print_table(name, measures)
        where = f"; logs in {workdir}" if keep else ""
        print(f"\n({time.monotonic() - started:.0f} s{where})")
        missed += sum(1 for m in measures if m.met is False)
    return 1 if missed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m core_voice_cli.bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and server logs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(main(args.names, args.keep)))
