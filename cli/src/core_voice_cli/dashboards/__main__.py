"""Write the dashboards into deploy/grafana, or with ``--check`` fail if any file is not current.

uv run python -m core_voice_cli.dashboards            # regenerate
uv run python -m core_voice_cli.dashboards --check    # CI: exit 1 if out of date
"""

import argparse
import sys
from pathlib import Path

from core_voice_cli.dashboards import output_dir, render_all
from core_voice_cli.generated_files import write_or_check


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
    return write_or_check(render_all(), out, check=args.check, module="core_voice_cli.dashboards")


if __name__ == "__main__":
    sys.exit(main())
