"""The real servers Core Voice runs on, started as local processes on loopback.

Used by `corevoice up` and by the test suite alike, so tests run exactly what operators
run. Ports are free loopback ports unless given; data lives in throwaway dirs.
"""

import contextlib
import functools
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from core_voice_cli.binaries import find_binary
from core_voice_cli.procs import (
    ManagedProcess,
    ProcessFailedError,
    free_port,
    http_ready,
    tcp_ready,
)
from core_voice_contracts.bus import NatsAccess
from core_voice_contracts.permissions import Grant, Role, grants


@functools.cache
def _bcrypt(password: str) -> str:
    """What the server's config holds: a hash (cost 6: the password itself is random)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6)).decode()


DEV_API_KEY = "devkey"
DEV_API_SECRET = "secret"  # noqa: S105 - livekit-server --dev's fixed, public dev secret


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate, its key and the CA that signed it (PEM files)."""

    cert: Path
    key: Path
    ca: Path


@dataclass
class NatsServer:
    """nats-server with JetStream in ``data_dir``, every client authenticated.

    One user per `Role`, with the permissions of `core_voice_contracts.permissions`;
    anonymous connections are refused. Passwords are random per server, or kept in
    ``secrets_dir`` (0600 files) so a restarted stack keeps them. With ``tls`` every
    client must use TLS.
    """

    data_dir: Path
    log_dir: Path
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    secrets_dir: Path | None = None
    tls: TlsFiles | None = None
    telemetry_prefix: str = "telemetry"
    extra_users: dict[str, Grant] = field(default_factory=dict)
    """More users beside the roles' (tests: a service with fewer rights than its role)."""
    passwords: dict[str, str] = field(default_factory=dict, repr=False)
    server_name: str = "core-voice"
    """Unique per node of a cluster (JetStream's raft groups are keyed by it)."""
    cluster_port: int | None = None
    """Listen for cluster routes here; None: a single server."""
    routes: list[int] = field(default_factory=list)
    """The cluster ports of the other nodes (loopback)."""
    cluster_advertise: int | None = None
    """The port other nodes are told to reach this one's routes at (a proxy in front of
    ``cluster_port``); None: ``cluster_port``."""
    stream_replicas: int = 1
    """What the services are told (``NATS_STREAM_REPLICAS``): 3 on a 3-node cluster."""

    def __post_init__(self) -> None:
        for user in self.users():
            if user not in self.passwords:
                self.passwords[user] = self._password(user)

    def users(self) -> dict[str, Grant]:
        roles = {role.value: grant for role, grant in grants(self.telemetry_prefix).items()}
        return {**roles, **self.extra_users}

    def _password(self, user: str) -> str:
        if self.secrets_dir is None:
            return secrets.token_urlsafe(24)
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        path = self.secrets_dir / f"nats-{user}-password"
        if path.exists():
            return path.read_text().strip()
        value = secrets.token_urlsafe(24)
        path.write_text(value + "\n")
        path.chmod(0o600)
        return value

    @property
    def url(self) -> str:
        """The address alone; connecting needs a role's `access`."""
        return f"{'tls' if self.tls else 'nats'}://127.0.0.1:{self.port}"

    def access(self, role: Role, *, user: str | None = None, url: str | None = None) -> NatsAccess:
        """How ``role`` connects: as its own user, or as ``user`` (one of `extra_users`);
        ``url`` for a proxy in front of this server."""
        name = user or role.value
        return NatsAccess(
            url or self.url,
            role=role,
            user=name,
            password=self.passwords[name],
            ca_file=str(self.tls.ca) if self.tls else None,
            stream_replicas=self.stream_replicas,
        )

    def env(self, role: Role, *, user: str | None = None) -> dict[str, str]:
        """NATS_URL, NATS_USER, NATS_PASSWORD (and NATS_CA): for a service or `nats`."""
        return self.access(role, user=user).env()

    def config(self) -> dict[str, object]:
        """The server's configuration (nats-server reads JSON as its config format)."""
        config: dict[str, object] = {
            "authorization": {
                "users": [
                    {
                        "user": user,
                        "password": _bcrypt(self.passwords[user]),
                        "permissions": grant.server_config(),
                    }
                    for user, grant in self.users().items()
                ]
            },
        }
        if self.tls is not None:
            config["tls"] = {
                "cert_file": str(self.tls.cert),
                "key_file": str(self.tls.key),
                "ca_file": str(self.tls.ca),
                "timeout": 5,
            }
        if self.cluster_port is not None:
            cluster: dict[str, object] = {
                "name": "core-voice",
                "listen": f"127.0.0.1:{self.cluster_port}",
                "routes": [f"nats-route://127.0.0.1:{port}" for port in self.routes],
            }
            if self.cluster_advertise is not None:
                cluster["advertise"] = f"127.0.0.1:{self.cluster_advertise}"
            config["cluster"] = cluster
        return config

    def process(self) -> ManagedProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats-server.json"
        conf.write_text(json.dumps(self.config(), indent=2))
        conf.chmod(0o600)
        argv = [
            str(find_binary("nats-server")),
            "-c", str(conf),
            "-js",
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-sd", str(self.data_dir),
            "-n", self.server_name,
        ]  # fmt: skip
        return ManagedProcess(
            "nats-server" if self.cluster_port is None else f"nats-server-{self.server_name}",
            argv,
            log_dir=self.log_dir,
            ready=http_ready(f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"),
        )


def nats_cluster(base_dir: Path, log_dir: Path, size: int = 3) -> list[NatsServer]:
    """``size`` nats-servers routed into one cluster on loopback, sharing one set of
    users and passwords, streams at R``size`` (capped at 3). Start every node before
    waiting for any: a node's JetStream is not ready until it has its peers."""
    cluster_ports = [free_port() for _ in range(size)]
    first = NatsServer(data_dir=base_dir / "n1", log_dir=log_dir)
    nodes = []
    for index, port in enumerate(cluster_ports, start=1):
        nodes.append(
            NatsServer(
                data_dir=base_dir / f"n{index}",
                log_dir=log_dir,
                passwords=dict(first.passwords),
                server_name=f"core-voice-{index}",
                cluster_port=port,
                routes=[p for p in cluster_ports if p != port],
                stream_replicas=min(size, 3),
            )
        )
    return nodes


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
    redis_address: str | None = None
    """``host:port`` of the Redis that joins several nodes into one LiveKit (multi-node:
    rooms placed on any node, API calls and agent jobs routed between them); None: a
    single node."""
    name: str = "livekit-server"
    """The process (and log file) name: distinct per node."""

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
        if self.redis_address is not None:
            lines += ["redis:", f"  address: {self.redis_address}"]
        return "\n".join(lines) + "\n"

    def process(self) -> ManagedProcess:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        config = self.config_dir / "livekit.yaml"
        config.write_text(self.config_yaml())
        argv = [str(find_binary("livekit-server")), "--dev", "--config", str(config)]
        return ManagedProcess(
            self.name, argv, log_dir=self.log_dir, ready=http_ready(self.http_url)
        )


class RedisNotFoundError(ProcessFailedError):
    """redis-server is not installed (multi-node LiveKit needs it)."""


@dataclass
class RedisServer:
    """redis-server on loopback with a throwaway dir and no persistence: what several
    LiveKit nodes share (room placement, routing, agent jobs). Debian's ``redis-server``
    package; its own service is not used."""

    data_dir: Path
    log_dir: Path
    port: int = field(default_factory=free_port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        found = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
        )
        if found is None:
            raise RedisNotFoundError(
                "redis-server not found: multi-node LiveKit needs it "
                "(apt-get install -y --no-install-recommends redis-server)"
            )
        return found

    def process(self) -> ManagedProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        return ManagedProcess(
            "redis-server", argv, log_dir=self.log_dir, ready=tcp_ready("127.0.0.1", self.port)
        )


class PostgresProcess(ManagedProcess):
    """postgres stops on SIGINT ("fast": running sessions are ended) rather than SIGTERM
    ("smart": it would wait for every client to disconnect, e.g. a leaked test pool)."""

    def stop(self, grace: float = 10.0) -> int | None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self.signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        return super().stop(grace)


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster in ``data_dir``, listening on loopback only.

    initdb and postgres refuse to run as root. As root (CI containers) both run as
    ``run_as`` via ``runuser``: the ``postgres`` user the Debian package creates, else
    ``nobody``. That user must be able to reach ``data_dir``, so as root pass a directory
    under a world-traversable parent (``tempfile.mkdtemp()``, not pytest's 0700 tmp).
    Authentication is ``trust`` on loopback: it is a test and dev database.
    """

    data_dir: Path
    log_dir: Path
    port: int = field(default_factory=free_port)
    superuser: str = "postgres"
    run_as: str | None = None
    fsync: bool = False
    """Off by default: throwaway data, and tests run several times faster without it."""

    def __post_init__(self) -> None:
        if self.run_as is None and os.geteuid() == 0:
            self.run_as = _unprivileged_user()

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / "cluster"

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def _as_user(self, argv: list[str]) -> list[str]:
        if self.run_as is None:
            return argv
        runuser = shutil.which("runuser")
        if runuser is None:
            raise ProcessFailedError("running as root needs `runuser` to start PostgreSQL")
        return [runuser, "-u", self.run_as, "--", *argv]

    def init(self) -> None:
        """initdb once (a no-op when the cluster exists, so a restart keeps the data)."""
        if (self.cluster_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            user = pwd.getpwnam(self.run_as)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        argv = [
            str(find_binary("initdb")),
            "-D", str(self.cluster_dir),
            "-U", self.superuser,
            "-A", "trust",
            "-E", "UTF8",
            "--locale", "C",
            "--no-sync",
        ]  # fmt: skip
        done = subprocess.run(
            self._as_user(argv), capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise ProcessFailedError(f"initdb failed\n{done.stdout}\n{done.stderr}")

    def process(self) -> ManagedProcess:
        """The server, on loopback only."""
        self.init()
        argv = [
            str(find_binary("postgres")),
            "-D", str(self.cluster_dir),
            "-k", str(self.cluster_dir),
            "-h", "127.0.0.1",
            "-p", str(self.port),
            *([] if self.fsync else ["-F"]),
            "-c", "max_connections=200",
            "-c", "log_min_messages=warning",
        ]  # fmt: skip
        process = PostgresProcess(
            "postgres", self._as_user(argv), log_dir=self.log_dir, cwd=self.data_dir
        )
        accepting = tcp_ready("127.0.0.1", self.port)
        process.ready = lambda: accepting() and self._answers()
        return process

    def _answers(self) -> bool:
        try:
            self.psql("SELECT 1", database="postgres")
        except ProcessFailedError:
            return False
        return True

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run one statement with the stock client; return its unaligned output."""
        psql = shutil.which("psql")
        if psql is None:
            raise ProcessFailedError("psql not found (Debian package postgresql-client)")
        argv = [
            psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser,
            "-d", database, "-c", sql,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise ProcessFailedError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str) -> str:
        """Create database ``name`` (letters, digits, _) and return its asyncpg URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a plain database name: {name!r}")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise ProcessFailedError("running as root, but no `postgres` or `nobody` user to run as")


__all__ = [
    "DEV_API_KEY",
    "DEV_API_SECRET",
    "LiveKitServer",
    "NatsServer",
    "PostgresServer",
    "RedisNotFoundError",
    "RedisServer",
    "tcp_ready",
]
