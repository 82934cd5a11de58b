"""The whole Core Voice stack as local processes: what `corevoice up` and the e2e tests run.

Start order follows dependencies (bus, media server, config owner, then its clients);
stop order is the reverse, and every process is stopped by pid whatever happens.
"""

import base64
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core_voice_cli.procs import ManagedProcess, ProcessGroup, free_port, http_ready
from core_voice_cli.prometheus import PrometheusServer
from core_voice_cli.servers import LiveKitServer, NatsServer
from core_voice_contracts.permissions import Role

WORKER_AGENT_NAME = "core-voice"
LOOPBACK_BASE_URLS = "127.0.0.0/8,::1/128,localhost"
"""``CONFIG_SYNC_BASE_URL_ALLOW`` for a stack on one machine whose agents may use
providers on this host (the offline demo, fake providers in tests): plain http to
loopback. Never for a shared deployment: a tenant could reach the host's services."""


def config_sync_env(
    *,
    port: int,
    database_url: str,
    admin_token: str,
    runtime_token: str,
    encryption_keys: str | None = None,
    encryption_keys_file: Path | None = None,
    base_url_allow: str | None = None,
    log_level: str | None = None,
) -> dict[str, str]:
    """config_sync's own variables: what the stack, the bench and the tests start it with.

    The process also needs the NATS variables of its role (``NatsAccess.env()``) and,
    usually, the parent's environment; the callers add those.
    """
    env = {
        "CONFIG_SYNC_HTTP_PORT": str(port),
        "CONFIG_SYNC_DATABASE_URL": database_url,
        "CONFIG_SYNC_ADMIN_TOKEN": admin_token,
        "CONFIG_SYNC_RUNTIME_TOKEN": runtime_token,
    }
    optional = {
        "CONFIG_SYNC_ENCRYPTION_KEYS": encryption_keys,
        "CONFIG_SYNC_ENCRYPTION_KEYS_FILE": None
        if encryption_keys_file is None
        else str(encryption_keys_file),
        "CONFIG_SYNC_BASE_URL_ALLOW": base_url_allow,
        "CONFIG_SYNC_LOG_LEVEL": log_level,
    }
    env.update({name: value for name, value in optional.items() if value is not None})
    return env


@dataclass
class Ports:
    nats: int = field(default_factory=free_port)
    nats_monitor: int = field(default_factory=free_port)
    livekit: int = field(default_factory=free_port)
    livekit_rtc_udp: int = field(default_factory=free_port)
    config_sync: int = field(default_factory=free_port)
    dispatcher: int = field(default_factory=free_port)
    telemetry: int = field(default_factory=free_port)
    worker_health: int = field(default_factory=free_port)
    prometheus: int = field(default_factory=free_port)

    @classmethod
    def defaults(cls) -> "Ports":
        """The well-known ports `corevoice up` uses, so operators can find things.

        Prometheus on 9190, not 9090: the Debian package's own service takes 9090 where
        systemd starts it."""
        return cls(4222, 8222, 7880, 7882, 8081, 8082, 9464, 8083, 9190)


def _token(path: Path, value: str | None = None) -> str:
    """A per-data-dir random token, kept so the stack's URLs/tokens survive restarts."""
    if path.exists():
        return path.read_text().strip()
    value = value or secrets.token_urlsafe(24)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


class Stack:
    def __init__(
        self,
        base_dir: Path,
        ports: Ports | None = None,
        *,
        worker: bool = True,
        prometheus: bool = False,
        dispatcher_env: dict[str, str] | None = None,
        base_url_allow: str = "",
        service_env: dict[str, str] | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.service_env = service_env or {}
        """Variables every service gets (e.g. ``OTEL_*``: tracing is off unless set)."""
        self.base_url_allow = base_url_allow
        self.dispatcher_env = dispatcher_env or {}
        self.log_dir = base_dir / "logs"
        self.ports = ports or Ports()
        self.with_worker = worker
        self.with_prometheus = prometheus
        self.prometheus: PrometheusServer | None = None
        self.worker_health_ports: list[int] = []
        base_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = _token(base_dir / "admin-token")
        self.runtime_token = _token(base_dir / "runtime-token")
        # config_sync's master key for provider keys at rest, kept like the tokens (an
        # operator's key ring; a new one would strand keys sealed under this one).
        self.encryption_keys_file = base_dir / "config-sync-keys"
        _token(
            self.encryption_keys_file, f"local:{base64.b64encode(secrets.token_bytes(32)).decode()}"
        )
        self.nats = NatsServer(
            data_dir=base_dir / "nats",
            log_dir=self.log_dir,
            port=self.ports.nats,
            monitor_port=self.ports.nats_monitor,
            secrets_dir=base_dir / "nats-secrets",
        )
        # The operator's login for the `nats` CLI, as variables it reads (source the file).
        self.operator_env_file = base_dir / "nats-operator.env"
        self.operator_env_file.write_text(
            "".join(f"{k}={v}\n" for k, v in self.nats.env(Role.OPERATOR).items())
        )
        self.operator_env_file.chmod(0o600)
        self.livekit = LiveKitServer(
            config_dir=base_dir / "livekit",
            log_dir=self.log_dir,
            webhook_urls=[f"{self.dispatcher_url}/webhook/livekit"],
            port=self.ports.livekit,
            rtc_udp_port=self.ports.livekit_rtc_udp,
        )
        self.group = ProcessGroup()

    @property
    def config_sync_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.config_sync}"

    @property
    def dispatcher_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.dispatcher}"

    @property
    def telemetry_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.telemetry}"

    def _env(self, role: Role, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.nats.env(role))
        env.update(
            LIVEKIT_URL=self.livekit.url,
            LIVEKIT_API_KEY=self.livekit.api_key,
            LIVEKIT_API_SECRET=self.livekit.api_secret,
            WORKER_AGENT_NAME=WORKER_AGENT_NAME,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.service_env)
        env.update(extra)
        return env

    def _service(
        self, name: str, role: Role, module: str, ready_url: str, *args: str, **env: str
    ) -> ManagedProcess:
        return ManagedProcess(
            name,
            [sys.executable, "-m", module, *args],
            log_dir=self.log_dir,
            env=self._env(role, **env),
            ready=http_ready(ready_url),
        )

    def config_sync_process(self) -> ManagedProcess:
        return self._service(
            "config-sync",
            Role.CONFIG_SYNC,
            "core_voice_config_sync",
            f"{self.config_sync_url}/healthz",
            **config_sync_env(
                port=self.ports.config_sync,
                database_url=f"sqlite+aiosqlite:///{self.base_dir / 'config_sync.db'}",
                admin_token=self.admin_token,
                runtime_token=self.runtime_token,
                encryption_keys_file=self.encryption_keys_file,
                base_url_allow=self.base_url_allow,
            ),
        )

    def dispatcher_process(self, **env: str) -> ManagedProcess:
        return self._service(
            "dispatcher",
            Role.DISPATCHER,
            "core_voice_dispatcher",
            f"{self.dispatcher_url}/healthz",
            DISPATCHER_HTTP_PORT=str(self.ports.dispatcher),
            **{**self.dispatcher_env, **env},
        )

    def telemetry_process(self) -> ManagedProcess:
        return self._service(
            "telemetry",
            Role.TELEMETRY,
            "core_voice_telemetry",
            f"{self.telemetry_url}/healthz",
            TELEMETRY_HTTP_PORT=str(self.ports.telemetry),
        )

    def worker_process(
        self, name: str = "voice-worker", health_port: int | None = None, **env: str
    ) -> ManagedProcess:
        """A worker pool process; tests start several, each with its own name and port."""
        port = health_port or self.ports.worker_health
        if port not in self.worker_health_ports:
            self.worker_health_ports.append(port)  # Prometheus scrapes every pool
        return self._service(
            name,
            Role.WORKER,
            "core_voice_worker",
            f"http://127.0.0.1:{port}/readyz",
            "start",
            WORKER_HEALTH_PORT=str(port),
            **env,
        )

    def prometheus_process(self) -> ManagedProcess:
        """Prometheus scraping every service's /metrics (the pools started so far)."""
        self.prometheus = PrometheusServer(
            data_dir=self.base_dir / "prometheus",
            log_dir=self.log_dir,
            port=self.ports.prometheus,
            targets={
                "corevoice-config-sync": [f"127.0.0.1:{self.ports.config_sync}"],
                "corevoice-dispatcher": [f"127.0.0.1:{self.ports.dispatcher}"],
                "corevoice-telemetry": [f"127.0.0.1:{self.ports.telemetry}"],
                "corevoice-voice-worker": [f"127.0.0.1:{p}" for p in self.worker_health_ports],
            },
        )
        return self.prometheus.process()

    def start(self) -> "Stack":
        try:
            self.group.start(self.nats.process(), timeout=20)
            self.group.start(self.livekit.process(), timeout=30)
            self.group.start(self.config_sync_process(), timeout=60)
            self.group.start(self.dispatcher_process(), timeout=60)
            self.group.start(self.telemetry_process(), timeout=60)
            if self.with_worker:
                self.group.start(self.worker_process(), timeout=120)
            if self.with_prometheus:
                self.group.start(self.prometheus_process(), timeout=30)
        except BaseException:
            self.group.stop()
            raise
        return self

    def stop(self) -> None:
        self.group.stop()

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
