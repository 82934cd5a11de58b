"""Checked-in files made by a generator (dashboards, the chart's copies): written, or
checked current, the same way, so CI can fail on a file someone forgot to regenerate."""

import sys
from collections.abc import Mapping
from pathlib import Path


def write_or_check(rendered: Mapping[str, str], out: Path, *, check: bool, module: str) -> int:
    """Write ``rendered`` (name -> text) under ``out``, or with ``check`` compare them
    and return 1 naming each stale file and the command (``python -m <module>``)."""
    if check:
        stale = [
            name
            for name, text in rendered.items()
            if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"{out / name} is not current", file=sys.stderr)
        if stale:
            print(f"regenerate: uv run python -m {module}", file=sys.stderr)
            return 1
        print(f"{len(rendered)} files current in {out}")
        return 0
    for name, text in rendered.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")
    return 0
