"""The Prometheus `corevoice up --with-prometheus` and the dashboards' proof start: its
generated config is valid for the real promtool, and a missing binary names the fix."""

import subprocess
from pathlib import Path

import pytest

from core_voice_cli.binaries import find_binary
from core_voice_cli.prometheus import (
    PrometheusNotFoundError,
    PrometheusServer,
    alert_rules,
    prometheus_binary,
)

pytestmark = pytest.mark.unit


def test_generated_config_passes_promtool(tmp_path: Path) -> None:
    server = PrometheusServer(
        data_dir=tmp_path / "prom",
        log_dir=tmp_path,
        targets={"corevoice-voice-worker": ["127.0.0.1:8083", "127.0.0.1:8084"]},
        port=9190,
    )
    process = server.process()  # writes the config, starts nothing
    config = tmp_path / "prom" / "prometheus.yml"
    assert f"--config.file={config}" in process.argv
    assert "--web.listen-address=127.0.0.1:9190" in process.argv
    assert server.config()["rule_files"] == [str(alert_rules())]
    done = subprocess.run(
        [str(find_binary("promtool")), "check", "config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout


def test_missing_binary_names_the_bootstrap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CORE_VOICE_BIN_DIR", str(tmp_path))
    with pytest.raises(PrometheusNotFoundError, match="make bootstrap"):
        prometheus_binary()
