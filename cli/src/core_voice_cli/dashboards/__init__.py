"""Grafana dashboards as code (grafana-foundation-sdk), rendered into ``deploy/grafana``.

One module per dashboard, each with ``UID`` and ``build()``. The JSON is deterministic
(fixed uids, panel ids in order, sorted keys) so CI can check the checked-in files are
current: ``uv run python -m core_voice_cli.dashboards --check``.
"""

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from core_voice_cli.binaries import repo_root
from core_voice_cli.dashboards import agents, config_propagation, dispatcher, fleet

__all__ = ["DASHBOARDS", "output_dir", "render", "render_all"]

DASHBOARDS: Final[Mapping[str, Callable[[], Dashboard]]] = MappingProxyType(
    {
        "fleet": fleet.build,
        "agents": agents.build,
        "dispatcher": dispatcher.build,
        "config-propagation": config_propagation.build,
    }
)
"""File name (without ``.json``) -> the dashboard's builder."""


def output_dir() -> Path:
    return repo_root() / "deploy" / "grafana"


def render(build: Callable[[], Dashboard]) -> str:
    """The dashboard as Grafana JSON, byte-for-byte the same on every run."""
    model = build().build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    data: Any = json.loads(JSONEncoder().encode(model))
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    """File name -> JSON text for every dashboard."""
    return {f"{name}.json": render(build) for name, build in DASHBOARDS.items()}
