"""A local Prometheus scraping the stack: `corevoice up --with-prometheus` and the dashboards'
proof (tests/e2e/test_prometheus.py).

The binary is the Debian package's (``make bootstrap`` installs it); its own packaged
service, where one runs, is never used: this one listens on loopback with its data in the
stack's data dir, and scrapes fast (2 s) so a short session shows data.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from core_voice_cli.binaries import BinaryNotFoundError, find_binary, repo_root
from core_voice_cli.procs import ManagedProcess, free_port, http_ready

__all__ = ["PrometheusNotFoundError", "PrometheusServer", "alert_rules", "prometheus_binary"]


class PrometheusNotFoundError(BinaryNotFoundError):
    """No prometheus binary; the message says how to get one."""


def prometheus_binary() -> Path:
    try:
        return find_binary("prometheus")
    except BinaryNotFoundError as exc:
        raise PrometheusNotFoundError(
            "prometheus: not found. It comes from the Debian package `prometheus`: "
            "run `make bootstrap` (scripts/bootstrap.sh installs it), or "
            "`apt-get install prometheus`."
        ) from exc


def alert_rules() -> Path | None:
    """deploy/prometheus/alerts.yml when running from a checkout, else None."""
    try:
        path = repo_root() / "deploy" / "prometheus" / "alerts.yml"
    except FileNotFoundError:
        return None
    return path if path.is_file() else None


@dataclass
class PrometheusServer:
    """Prometheus on 127.0.0.1 scraping ``targets`` (job name -> ``host:port`` list)."""

    data_dir: Path
    log_dir: Path
    targets: dict[str, list[str]]
    port: int = field(default_factory=free_port)
    scrape_interval: str = "2s"
    rules: Path | None = field(default_factory=alert_rules)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, object]:
        config: dict[str, object] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
                for job, addresses in sorted(self.targets.items())
            ],
        }
        if self.rules is not None:
            config["rule_files"] = [str(self.rules)]
        return config

    def process(self) -> ManagedProcess:
        binary = prometheus_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.data_dir / "prometheus.yml"
        # JSON is YAML: no YAML library needed for a config nobody edits.
        config_file.write_text(json.dumps(self.config(), indent=2) + "\n")
        argv = [
            str(binary),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.data_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=2d",
        ]
        return ManagedProcess(
            "prometheus", argv, log_dir=self.log_dir, ready=http_ready(f"{self.url}/-/ready")
        )
