"""The dashboards in deploy/grafana are the generator's output, and query only catalogue metrics.

The proof that every panel returns data from a real Prometheus is tests/e2e/test_prometheus.py;
these are the cheap checks that run on every change.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core_voice_cli.dashboards import DASHBOARDS, output_dir, render_all
from core_voice_cli.dashboards.__main__ import main
from core_voice_cli.dashboards.catalogue import (
    AGENT_LABELLED,
    SERIES_NAMES,
    TENANT_LABELLED,
    base_name,
    metric_names,
)

pytestmark = pytest.mark.unit

RENDERED = render_all()


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def _dashboards() -> list[tuple[str, dict[str, Any]]]:
    return [(name, json.loads(text)) for name, text in RENDERED.items()]


def test_checked_in_files_are_the_generator_output() -> None:
    for name, text in RENDERED.items():
        path = output_dir() / name
        assert path.is_file(), f"{path} missing: run `uv run python -m core_voice_cli.dashboards`"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is not current: run `uv run python -m core_voice_cli.dashboards`"
        )
    assert {p.name for p in output_dir().glob("*.json")} == set(RENDERED)


def test_output_is_deterministic() -> None:
    assert render_all() == RENDERED


def test_check_flag_fails_on_a_stale_file(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    stale = tmp_path / "fleet.json"
    stale.write_text(stale.read_text().replace("Active calls", "Active cals"))
    assert main(["--out", str(tmp_path), "--check"]) == 1
    stale.unlink()
    assert main(["--out", str(tmp_path), "--check"]) == 1


def test_uids_and_panel_ids_are_unique() -> None:
    uids = [d["uid"] for _, d in _dashboards()]
    assert len(set(uids)) == len(uids) == len(DASHBOARDS)
    for name, dashboard in _dashboards():
        ids = [panel["id"] for panel in _panels(dashboard)]
        assert len(set(ids)) == len(ids), name
        assert all(isinstance(i, int) and i > 0 for i in ids), name


@pytest.mark.parametrize(("name", "dashboard"), _dashboards(), ids=list(RENDERED))
def test_templated_by_datasource_tenant_and_agent(name: str, dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for label in ("tenant", "agent"):
        variable = variables[label]
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == "${datasource}"
        query = variable["query"]["query"]
        match = re.fullmatch(rf"label_values\((corevoice_\w+)(\{{.*\}})?, {label}\)", query)
        assert match, query
        assert match.group(1) in SERIES_NAMES
        assert variable["includeAll"] and variable["multi"]
        assert variable["allValue"] == ".*"
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel.get("description"), f"{panel['title']}: say what the panel answers"


@pytest.mark.parametrize(("name", "dashboard"), _dashboards(), ids=list(RENDERED))
def test_queries_use_catalogue_metrics_and_the_variables(
    name: str, dashboard: dict[str, Any]
) -> None:
    for title, expr in _targets(dashboard):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        assert names <= SERIES_NAMES, f"{title}: not in the catalogue: {names - SERIES_NAMES}"
        for window in re.findall(r"\[([^\]]*)\]", expr):
            assert window in ("$__rate_interval", "$__range"), f"{title}: window [{window}]"
        for series in names:
            metric = base_name(series)
            selectors = re.findall(rf"\b{series}(\{{[^}}]*\}})?", expr)
            for selector in selectors:
                if metric in TENANT_LABELLED:
                    assert 'tenant=~"$tenant"' in selector, f"{title}: {series} not by tenant"
                if metric in AGENT_LABELLED:
                    assert 'agent=~"$agent"' in selector, f"{title}: {series} not by agent"


def test_metric_names_scanner() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, stage) (rate(corevoice_turn_latency_seconds_bucket"
        '{tenant=~"$tenant", stage="e2e"}[$__rate_interval]))) or on() vector(0) > 1e-3'
        " and absent(corevoice_workers offset 5m)"
    )
    assert metric_names(expr) == {"corevoice_turn_latency_seconds_bucket", "corevoice_workers"}
    assert base_name("corevoice_turn_latency_seconds_bucket") == "corevoice_turn_latency_seconds"
    assert base_name("corevoice_calls_started_total") == "corevoice_calls_started_total"
