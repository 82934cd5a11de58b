"""The real servers Core Voice runs on, started as local processes on loopback.

Used by `corevoice up` and by the test suite alike, so tests run exactly what operators
run. Ports are free loopback ports unless given; data lives in throwaway dirs.
"""

from dataclasses import dataclass, field
from pathlib import Path

from core_voice_cli.binaries import find_binary
from core_voice_cli.procs import ManagedProcess, free_port, http_ready, tcp_ready

DEV_API_KEY = "devkey"
DEV_API_SECRET = "secret"  # noqa: S105 - livekit-server --dev's fixed, public dev secret


@dataclass
class NatsServer:
    """nats-server with JetStream in ``data_dir``."""

    data_dir: Path
    log_dir: Path
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def process(self) -> ManagedProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(find_binary("nats-server")),
            "-js",
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-sd", str(self.data_dir),
            "-n", "core-voice",
        ]  # fmt: skip
        return ManagedProcess(
            "nats-server",
            argv,
            log_dir=self.log_dir,
            ready=http_ready(f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"),
        )


@dataclass
class LiveKitServer:
    """livekit-server --dev on loopback, posting webhooks to ``webhook_urls``."""

    config_dir: Path
    log_dir: Path
    webhook_urls: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    rtc_udp_port: int = field(default_factory=free_port)
    api_key: str = DEV_API_KEY
    api_secret: str = field(default=DEV_API_SECRET, repr=False)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config_yaml(self) -> str:
        lines = [
            f"port: {self.port}",
            "bind_addresses: [127.0.0.1]",
            # Loopback only: a single UDP mux port on lo, no TCP fallback listener (it would
            # bind every interface), and no STUN look-up of an external address.
            "rtc:",
            f"  udp_port: {self.rtc_udp_port}",
            "  tcp_port: 0",
            "  use_external_ip: false",
            "  node_ip: 127.0.0.1",
            "  enable_loopback_candidate: true",
            "  interfaces:",
            "    includes: [lo]",
            "logging:",
            "  level: info",
        ]
        if self.webhook_urls:
            lines += ["webhook:", f"  api_key: {self.api_key}", "  urls:"]
            lines += [f"    - {url}" for url in self.webhook_urls]
        return "\n".join(lines) + "\n"

    def process(self) -> ManagedProcess:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        config = self.config_dir / "livekit.yaml"
        config.write_text(self.config_yaml())
        argv = [str(find_binary("livekit-server")), "--dev", "--config", str(config)]
        return ManagedProcess(
            "livekit-server", argv, log_dir=self.log_dir, ready=http_ready(self.http_url)
        )


__all__ = ["DEV_API_KEY", "DEV_API_SECRET", "LiveKitServer", "NatsServer", "tcp_ready"]
