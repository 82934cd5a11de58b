"""deploy/prometheus: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), the example config passes `promtool check config`, and every rule
uses catalogue metrics and has the labels and annotations an on-call needs.

promtool comes with the Debian package ``prometheus`` (scripts/bootstrap.sh installs it).
"""

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from core_voice_cli.binaries import BinaryNotFoundError, find_binary, repo_root
from core_voice_cli.dashboards.catalogue import SERIES_NAMES, metric_names

pytestmark = pytest.mark.unit

DEPLOY = repo_root() / "deploy" / "prometheus"
RUNBOOKS = repo_root() / "docs" / "dashboards.md"
EXPECTED_ALERTS = {
    "CoreVoiceHighCallFailureRate",
    "CoreVoiceSlowDispatch",
    "CoreVoiceWorkersSaturated",
    "CoreVoiceConfigPropagationSlow",
    "CoreVoiceConfigPropagationIncomplete",
    "CoreVoiceDispatcherConsumerLag",
    "CoreVoiceTelemetryConsumerLag",
    "CoreVoiceTelemetryFeedDown",
    "CoreVoiceNoWorkers",
    "CoreVoiceStaleConfigHeld",
    "CoreVoiceStaleConfigCalls",
}


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return find_binary("promtool")
    except BinaryNotFoundError as exc:
        pytest.fail(f"{exc} (promtool is in the Debian package prometheus)")


def _promtool(promtool: Path, *args: str) -> str:
    done = subprocess.run(
        [str(promtool), *args], check=False, cwd=DEPLOY, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    assert [g["name"] for g in data["groups"]] == ["corevoice"]
    rules: list[dict[str, Any]] = data["groups"][0]["rules"]
    return rules


def test_promtool_check_rules(promtool: Path) -> None:
    output = _promtool(promtool, "check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in output, output


def test_promtool_test_rules(promtool: Path) -> None:
    assert "SUCCESS" in _promtool(promtool, "test", "rules", "alerts_test.yml")


def test_example_config_is_valid(promtool: Path) -> None:
    _promtool(promtool, "check", "config", "prometheus.yml")


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for group in tests:
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fired == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS


def test_rules_have_severity_for_annotations_and_a_runbook() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} == EXPECTED_ALERTS
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        anchor = annotations["runbook_url"]
        assert anchor == f"docs/dashboards.md#{name.lower()}", name
        assert name.lower() in headings, f"no runbook section '### {name}' in {RUNBOOKS}"


def test_rules_use_catalogue_metrics() -> None:
    for rule in _rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= SERIES_NAMES, f"{rule['alert']}: {names - SERIES_NAMES}"
