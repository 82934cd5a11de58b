"""The stack past one machine, on loopback: what `corevoice up --cluster` and the cluster
tests run.

- 3 nats-server nodes routed into one cluster, JetStream streams at R3;
- 2 livekit-server nodes joined by one redis-server (multi-node LiveKit);
- PostgreSQL; 2 config_sync replicas on it; 2 dispatchers; 3 worker pools; telemetry.

Every service authenticates to NATS as its own user and is given every node's URL
(``NATS_URL`` comma-separated), so it reconnects to a surviving node.

Both dispatchers run role ``all`` and both LiveKit nodes post every webhook to both:
LiveKit sends a room's webhooks from the node hosting the room, and each must reach an
ingest that is alive. A webhook arriving twice is stored once (the job's JetStream message
id is the room's), and the durable ``dispatcher`` consumer hands each job to one of the
two, so one room gets one dispatch; with one dispatcher killed the other takes every
webhook alone and, after ``DISPATCHER_ACK_WAIT_S``, the dead one's unacknowledged jobs.
A split into an ``ingest`` and a ``dispatch`` process would leave either role with a
single point of failure at two processes (docs/operations/scaling.md).
"""

import base64
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core_voice_cli.demo import DEMO_AGENT_ID, seed_demo_agent
from core_voice_cli.procs import (
    ManagedProcess,
    ProcessFailedError,
    ProcessGroup,
    free_port,
    http_ready,
    run_until_signal,
)
from core_voice_cli.servers import (
    LiveKitServer,
    NatsServer,
    PostgresServer,
    RedisServer,
    nats_cluster,
)
from core_voice_cli.stack import LOOPBACK_BASE_URLS, WORKER_AGENT_NAME, _token, config_sync_env
from core_voice_contracts.permissions import Role

NATS_NODES = 3
LIVEKIT_NODES = 2
CONFIG_SYNC_REPLICAS = 2
DISPATCHERS = 2
POOLS = 3


@dataclass
class Service:
    """One replica of a service: its process (replaced on restart) and its HTTP port."""

    name: str
    port: int
    make: "ProcessFactory"
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> ManagedProcess:
        self.process = self.make()
        return self.process.start().wait_ready(timeout)

    def running(self) -> bool:
        return self.process is not None and self.process.running()


class ProcessFactory:
    """Builds a fresh `ManagedProcess` for a service (a restart needs a new one)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str], ready: str):
        self.name, self.argv, self.log_dir, self.env, self.ready = name, argv, log_dir, env, ready

    def __call__(self) -> ManagedProcess:
        return ManagedProcess(
            self.name,
            self.argv,
            log_dir=self.log_dir,
            env=self.env,
            ready=http_ready(self.ready),
        )


@dataclass
class ClusterOptions:
    pool_capacity: int = 25
    """``WORKER_MAX_CONCURRENCY`` of each pool."""
    pool_env: dict[str, str] = field(default_factory=dict)
    dispatcher_env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, str] = field(default_factory=dict)
    base_url_allow: str = LOOPBACK_BASE_URLS


class ClusterStack:
    """The cluster topology as real processes on loopback, each stopped by pid."""

    def __init__(self, base_dir: Path, options: ClusterOptions | None = None) -> None:
        self.base_dir = base_dir
        self.options = options or ClusterOptions()
        self.log_dir = base_dir / "logs"
        base_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = _token(base_dir / "admin-token")
        self.runtime_token = _token(base_dir / "runtime-token")
        self.encryption_keys_file = base_dir / "config-sync-keys"
        _token(
            self.encryption_keys_file, f"local:{base64.b64encode(secrets.token_bytes(32)).decode()}"
        )
        self.nats_nodes: list[NatsServer] = nats_cluster(base_dir / "nats", self.log_dir)
        self.nats_processes: list[ManagedProcess | None] = [None] * len(self.nats_nodes)
        self.redis = RedisServer(data_dir=base_dir / "redis", log_dir=self.log_dir)
        # As root PostgreSQL runs as an unprivileged user, who must reach its data dir.
        self._pg_root = Path(tempfile.mkdtemp(prefix="corevoice-cluster-pg-"))
        self._pg_root.chmod(0o755)
        self.postgres = PostgresServer(data_dir=self._pg_root / "data", log_dir=self.log_dir)
        self.postgres_process: ManagedProcess | None = None
        self.dispatcher_ports = [free_port() for _ in range(DISPATCHERS)]
        webhooks = [f"http://127.0.0.1:{port}/webhook/livekit" for port in self.dispatcher_ports]
        self.livekit_nodes = [
            LiveKitServer(
                config_dir=base_dir / f"livekit-{n}",
                log_dir=self.log_dir,
                webhook_urls=webhooks,
                redis_address=self.redis.address,
                name=f"livekit-server-{n}",
            )
            for n in range(1, LIVEKIT_NODES + 1)
        ]
        self.group = ProcessGroup()
        self.config_syncs: list[Service] = []
        self.dispatchers: list[Service] = []
        self.pools: list[Service] = []
        self.telemetry: Service | None = None

    # --- addresses --------------------------------------------------------------------

    @property
    def nats_url(self) -> str:
        """Every node, comma-separated: what each service is given."""
        return ",".join(node.url for node in self.nats_nodes)

    @property
    def config_sync_url(self) -> str:
        return self.config_syncs[0].url

    @property
    def database_url(self) -> str:
        return self.postgres.url("config_sync")

    def operator_env(self) -> dict[str, str]:
        """The operator's login for the `nats` CLI (every node's URL)."""
        return {**self.nats_nodes[0].env(Role.OPERATOR), "NATS_URL": self.nats_url}

    def _env(self, role: Role, livekit: LiveKitServer, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.nats_nodes[0].env(role))
        env.update(
            NATS_URL=self.nats_url,
            LIVEKIT_URL=livekit.url,
            LIVEKIT_API_KEY=livekit.api_key,
            LIVEKIT_API_SECRET=livekit.api_secret,
            WORKER_AGENT_NAME=WORKER_AGENT_NAME,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.options.service_env)
        env.update(extra)
        return env

    def _service(
        self,
        name: str,
        role: Role,
        module: str,
        port: int,
        *,
        livekit: LiveKitServer,
        env: dict[str, str],
        ready_path: str = "/healthz",
        args: tuple[str, ...] = (),
    ) -> Service:
        factory = ProcessFactory(
            name,
            [sys.executable, "-m", module, *args],
            self.log_dir,
            self._env(role, livekit, **env),
            f"http://127.0.0.1:{port}{ready_path}",
        )
        return Service(name, port, factory)

    def _build_services(self) -> None:
        lk = self.livekit_nodes
        for n in range(1, CONFIG_SYNC_REPLICAS + 1):
            port = free_port()
            self.config_syncs.append(
                self._service(
                    f"config-sync-{n}",
                    Role.CONFIG_SYNC,
                    "core_voice_config_sync",
                    port,
                    livekit=lk[0],
                    env=config_sync_env(
                        port=port,
                        database_url=self.database_url,
                        admin_token=self.admin_token,
                        runtime_token=self.runtime_token,
                        encryption_keys_file=self.encryption_keys_file,
                        base_url_allow=self.options.base_url_allow,
                    ),
                )
            )
        for n, port in enumerate(self.dispatcher_ports, start=1):
            self.dispatchers.append(
                self._service(
                    f"dispatcher-{n}",
                    Role.DISPATCHER,
                    "core_voice_dispatcher",
                    port,
                    livekit=lk[(n - 1) % len(lk)],
                    env={"DISPATCHER_HTTP_PORT": str(port), **self.options.dispatcher_env},
                )
            )
        port = free_port()
        self.telemetry = self._service(
            "telemetry",
            Role.TELEMETRY,
            "core_voice_telemetry",
            port,
            livekit=lk[0],
            env={"TELEMETRY_HTTP_PORT": str(port)},
        )
        for n in range(1, POOLS + 1):
            port = free_port()
            self.pools.append(
                self._service(
                    f"pool-{n}",
                    Role.WORKER,
                    "core_voice_worker",
                    port,
                    livekit=lk[(n - 1) % len(lk)],
                    ready_path="/readyz",
                    args=("start",),
                    env={
                        "WORKER_HEALTH_PORT": str(port),
                        "WORKER_WORKER_ID": f"pool-{n}",
                        "WORKER_MAX_CONCURRENCY": str(self.options.pool_capacity),
                        **self.options.pool_env,
                    },
                )
            )

    def route_via(self, proxies: dict[int, int]) -> None:
        """Reach each node's cluster routes through a proxy (real cluster port -> proxy
        port), advertised as such, so every route connection crosses one: what a test
        cuts to partition a node. Call before `start`."""
        for node in self.nats_nodes:
            assert node.cluster_port is not None
            node.routes = [proxies[port] for port in node.routes]
            node.cluster_advertise = proxies[node.cluster_port]

    # --- lifecycle ----------------------------------------------------------------------

    def start_nats_node(self, index: int, timeout: float = 30.0) -> ManagedProcess:
        process = self.nats_nodes[index].process().start()
        self.nats_processes[index] = process
        return process.wait_ready(timeout)

    def wait_for_jetstream_leader(self, timeout: float = 30.0) -> str:
        """Wait until every running node names one JetStream meta leader: nodes report
        healthy before it is elected, and stream set-up (each owner's start) fails meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = set()
            for node, process in zip(self.nats_nodes, self.nats_processes, strict=True):
                if process is None or not process.running():
                    continue
                with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
                    jsz = httpx.get(f"http://127.0.0.1:{node.monitor_port}/jsz", timeout=2).json()
                    leaders.add(jsz["meta_cluster"].get("leader"))
            if len(leaders) == 1 and None not in leaders and "" not in leaders:
                return str(leaders.pop())
            time.sleep(0.2)
        raise ProcessFailedError(f"no JetStream meta leader after {timeout:g} s")

    def start_postgres(self) -> ManagedProcess:
        self.postgres_process = self.postgres.process().start().wait_ready(60)
        return self.postgres_process

    def start(self) -> "ClusterStack":
        try:
            # Every node's process first: a node's JetStream is ready only with its peers.
            for index, node in enumerate(self.nats_nodes):
                self.nats_processes[index] = node.process().start()
            for process in self.nats_processes:
                assert process is not None
                process.wait_ready(30)
            self.wait_for_jetstream_leader()
            self.group.start(self.redis.process(), timeout=15)
            for livekit in self.livekit_nodes:
                self.group.start(livekit.process(), timeout=30)
            self.start_postgres()
            if not self.postgres.psql(
                "SELECT 1 FROM pg_database WHERE datname = 'config_sync'"
            ).strip():
                self.postgres.create_database("config_sync")
            self._build_services()
            # One at a time: each runs the schema migrations at start.
            for service in self.config_syncs:
                service.start(90)
            for service in self.dispatchers:
                service.start(90)
            assert self.telemetry is not None
            self.telemetry.start(90)
            # Pools start together (each imports the agents framework for ~10 s).
            for pool in self.pools:
                pool.process = pool.make().start()
            for pool in self.pools:
                assert pool.process is not None
                pool.process.wait_ready(180)
        except BaseException:
            self.stop()
            raise
        return self

    def services(self) -> list[Service]:
        telemetry = [self.telemetry] if self.telemetry is not None else []
        return [*self.pools, *telemetry, *self.dispatchers, *self.config_syncs]

    def processes(self) -> list[ManagedProcess]:
        """Every process running now, services first (the order to stop them in)."""
        out = [s.process for s in self.services() if s.process is not None]
        out += list(reversed(self.group.processes))
        out += [p for p in (self.postgres_process, *self.nats_processes) if p is not None]
        return out

    def stop(self) -> None:
        for service in self.services():
            if service.process is not None:
                service.process.stop(grace=15)
        self.group.stop()
        if self.postgres_process is not None:
            self.postgres_process.stop()
        for process in self.nats_processes:
            if process is not None:
                process.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self._pg_root, ignore_errors=True)

    def __enter__(self) -> "ClusterStack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- `corevoice up --cluster` ---------------------------------------------------------


def summary(stack: ClusterStack, seeded: str) -> str:
    def urls(services: list[Service], path: str = "") -> str:
        return "  ".join(f"{s.url}{path}" for s in services)

    operator_file = stack.base_dir / "nats-operator.env"
    return f"""
Core Voice is up as a cluster (logs in {stack.log_dir}).

  NATS cluster (R3)    {stack.nats_url}
  LiveKit nodes        {"  ".join(n.url for n in stack.livekit_nodes)}   (Redis {stack.redis.address})
  PostgreSQL           {stack.postgres.url("config_sync", driver="postgresql")}
  config_sync API      {urls(stack.config_syncs, "/api/v1/agents")}
  dispatcher webhooks  {urls(stack.dispatchers, "/webhook/livekit")}
  worker pools         {urls(stack.pools, "/status")}
  telemetry metrics    {urls([stack.telemetry] if stack.telemetry else [], "/metrics")}
  admin token          {stack.base_dir / "admin-token"} (read it from there)
  NATS operator login  {operator_file} (NATS_URL, NATS_USER, NATS_PASSWORD)
  process ids          {stack.base_dir / "pids"}
  demo agent           "{DEMO_AGENT_ID}" ({seeded}), offline providers, no API keys

Ctrl-C stops everything.
"""


def main_up_cluster(base: Path) -> int:
    """Run the cluster until SIGINT/SIGTERM; 1 if a process exits or fails to start."""
    stack = ClusterStack(base)

    def started() -> str:
        operator_file = stack.base_dir / "nats-operator.env"
        operator_file.write_text("".join(f"{k}={v}\n" for k, v in stack.operator_env().items()))
        operator_file.chmod(0o600)
        (stack.base_dir / "pids").write_text(
            "".join(f"{p.name} {p.pid}\n" for p in stack.processes())
        )
        return summary(stack, seed_demo_agent(stack.config_sync_url, stack.admin_token))

    return run_until_signal(
        "the Core Voice cluster",
        start=stack.start,
        stop=stack.stop,
        processes=stack.processes,
        started=started,
        log_dir=stack.log_dir,
    )
