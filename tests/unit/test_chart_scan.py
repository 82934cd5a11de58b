"""The rendered chart passes checkov's Kubernetes checks, every exception explained.

Each render combination of test_helm_chart (minimal, production with KEDA, HPA, external
NATS, the NATS subchart) is rendered with digest-pinned images, as production installs
pin them, and scanned in one checkov run with the chart's own configuration
(deploy/helm/checkov.yaml). A failed check fails the test with its id, resource and
name. checkov runs from its own environment (`uvx`): its boto3 pin conflicts with the
workers' AWS plugin, so it cannot be a project dependency.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_helm_chart import CHART, COMBINATIONS, helm, ours, render

pytestmark = pytest.mark.unit

CHECKOV = "checkov==3.3.30"
CONFIG = CHART.parent / "checkov.yaml"
DIGEST = "sha256:" + "0" * 64
PINNED = [
    *(f"--set={svc}.image.digest={DIGEST}" for svc in ("configSync", "dispatcher", "worker")),
    f"--set=telemetry.image.digest={DIGEST}",
    f"--set=nats.container.image.digest={DIGEST}",
    f"--set=nats.reloader.image.digest={DIGEST}",
    f"--set=tests.image=natsio/nats-box@{DIGEST}",
]
"""What a production install sets: every image by digest (CKV_K8S_43, and with it
CKV_K8S_15: an immutable digest makes IfNotPresent as safe as Always)."""


def _uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    assert os.access(found, os.X_OK), "uv not found (make bootstrap installs it)"
    return found


def _checkov(directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            _uv(), "tool", "run", "--python", "3.11", "--from", CHECKOV, "checkov",
            "--config-file", str(CONFIG), "-d", str(directory), "-o", "json",
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert out.stdout.strip(), out.stderr[-2000:]
    report = json.loads(out.stdout)
    return report if isinstance(report, list) else [report]


def test_every_rendering_passes_the_scan(tmp_path: Path) -> None:
    for name, args in COMBINATIONS.items():
        out = helm("template", "cv", str(CHART), "--namespace", "voice", *args, *PINNED)
        assert out.returncode == 0, out.stderr
        (tmp_path / f"{name}.yaml").write_text(out.stdout)
    (report,) = _checkov(tmp_path)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] > 100  # five renderings, ~40 resources each
    assert summary["passed"] > 1000
    # The per-resource exceptions were applied (two checks on the test pod in every
    # rendering, two on the subchart's StatefulSet), not silently ignored.
    assert summary["skipped"] == 2 * len(COMBINATIONS) + 2


def test_every_exception_says_why() -> None:
    """Each check skipped in checkov.yaml has a comment above it; each per-resource
    annotation carries its reason after the check id."""
    lines = CONFIG.read_text().splitlines()
    config = yaml.safe_load(CONFIG.read_text())
    for check in config["skip-check"]:
        (at,) = [i for i, line in enumerate(lines) if line.strip() == f"- {check}"]
        assert lines[at - 1].strip().startswith("#"), f"{check} is skipped without a reason"
    annotated = 0
    for doc in render("nats-subchart"):
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                assert re.fullmatch(r"CKV2?_K8S_\d+=\S.{20,}", value), (key, value)
                annotated += 1
    assert annotated >= 2


def test_every_resource_is_in_the_release_namespace() -> None:
    """Why CKV_K8S_21 may be skipped: this chart's resources name the release namespace."""
    for combination in COMBINATIONS:
        for doc in ours(render(combination)):
            assert doc["metadata"].get("namespace") == "voice", doc["metadata"]["name"]
