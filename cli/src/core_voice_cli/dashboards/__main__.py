"""Write the dashboards into deploy/grafana, or with ``--check`` fail if any file is not current.

uv run python -m core_voice_cli.dashboards            # regenerate
uv run python -m core_voice_cli.dashboards --check    # CI: exit 1 if out of date
"""

import argparse
import sys
from pathlib import Path

from core_voice_cli.dashboards import output_dir, render_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core_voice_cli.dashboards")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if a checked-in file differs from the generator",
    )
    parser.add_argument("--out", type=Path, help="output directory (default deploy/grafana)")
    args = parser.parse_args(argv)
    out: Path = args.out or output_dir()
    rendered = render_all()
    if args.check:
        stale = [
            name
            for name, text in rendered.items()
            if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"{out / name} is not current", file=sys.stderr)
        if stale:
            print("regenerate: uv run python -m core_voice_cli.dashboards", file=sys.stderr)
            return 1
        print(f"{len(rendered)} dashboards current in {out}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
