"""Write the Helm chart's copies of the project's single sources, or with ``--check`` fail
if any is not current.

A chart reads no file outside its directory, so deploy/helm/core-voice/files/ holds:

- ``nats-permissions.json``: every NATS user's ``permissions`` block, from
  `core_voice_contracts.permissions.grants` (the chart renders the server's users from it);
- ``dashboards/*.json``: the Grafana dashboards, from `core_voice_cli.dashboards`;
- ``alerts.yml``: the Prometheus alert rules, from deploy/prometheus/alerts.yml.

uv run python -m core_voice_cli.chart_files            # regenerate
uv run python -m core_voice_cli.chart_files --check    # CI: exit 1 if out of date
"""

import argparse
import json
import sys
from pathlib import Path

from core_voice_cli.binaries import repo_root
from core_voice_cli.dashboards import render_all
from core_voice_cli.generated_files import write_or_check
from core_voice_contracts.permissions import grants


def chart_dir() -> Path:
    return repo_root() / "deploy" / "helm" / "core-voice"


def nats_permissions() -> str:
    """Role name -> nats-server ``permissions`` block, as stable JSON."""
    blocks = {role.value: grant.server_config() for role, grant in grants().items()}
    return json.dumps(blocks, indent=2, sort_keys=True) + "\n"


def render_files() -> dict[str, str]:
    """Path under the chart's files/ -> its text."""
    files = {"nats-permissions.json": nats_permissions()}
    files.update({f"dashboards/{name}": text for name, text in render_all().items()})
    alerts = repo_root() / "deploy" / "prometheus" / "alerts.yml"
    files["alerts.yml"] = alerts.read_text(encoding="utf-8")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core_voice_cli.chart_files")
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is not current")
    args = parser.parse_args(argv)
    return write_or_check(
        render_files(), chart_dir() / "files", check=args.check, module="core_voice_cli.chart_files"
    )


if __name__ == "__main__":
    sys.exit(main())
