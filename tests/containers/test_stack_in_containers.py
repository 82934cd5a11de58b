"""The whole stack from the service images: a call answered, an edit heard, a clean stop.

scripts/images.sh builds the images (seconds when podman's layer cache is warm); podman's
Docker-compatible API serves `testcontainers`. Seven containers: nats (the contracts' users
and permissions), postgres, livekit-server (a production-style key, not --dev), config_sync
(after its `migrate` one-shot, as the chart's hook Job runs it), dispatcher, telemetry and
one voice worker. The services run as the chart runs them: uid 10001, read-only root, /tmp
the only writable path, no capabilities. They share the host's network namespace and bind
127.0.0.1 on free ports (config_sync refuses plaintext NATS to another host, and the caller
here reaches LiveKit's media port directly). The caller is the operators' synthetic call.
"""

import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import HttpWaitStrategy, LogMessageWaitStrategy

from core_voice_cli.binaries import repo_root
from core_voice_cli.demo import demo_agent
from core_voice_cli.procs import free_port
from core_voice_cli.stack import Stack, config_sync_env
from core_voice_contracts.permissions import Role
from core_voice_worker.speech import normalize
from tests.harness.stack import (
    ANSWER,
    ASK,
    GREETING_V1,
    GREETING_V2,
    api_client,
    call_from_a_child_process,
)

pytestmark = pytest.mark.containers

TAG = "dev"
CACHE = Path(os.environ.get("CORE_VOICE_CACHE", Path.home() / ".cache" / "core-voice"))
GRACE_S = {"voice-worker": 30, "dispatcher": 20, "postgres": 20}
"""Seconds a container gets between SIGTERM (its STOPSIGNAL) and SIGKILL; 10 otherwise."""
PGDATA = "/tmp/pgdata"  # noqa: S108 - inside the container, in its /tmp tmpfs
NATS_STORE = "/tmp/jetstream"  # noqa: S108 - the same (the image's /data is for a volume)


def image(name: str) -> str:
    return f"localhost/core-voice/{name}:{TAG}"


class HostNetContainer(DockerContainer):
    """A container in the host's network namespace: its ports are the host's, on 127.0.0.1,
    so testcontainers' wait strategies look there."""

    def __init__(self, name: str, *, hardened: bool = True) -> None:
        super().__init__(image(name))
        self.service = name
        self.with_name(f"cv-{name}-{uuid.uuid4().hex[:6]}")
        self.with_kwargs(
            network_mode="host",
            # The chart's securityContext: read-only root, no capabilities, no setuid.
            read_only=hardened,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
        )
        self.with_tmpfs("/tmp")  # noqa: S108 - the container's own /tmp: a tmpfs

    def with_tmpfs(self, path: str) -> "HostNetContainer":
        """An empty writable directory (the chart's emptyDir): mode 1777, since the API's
        tmpfs default is root's 0755 and the services run as 10001."""
        self.tmpfs[path] = "rw,nosuid,nodev,mode=1777,size=512m"
        return self

    def get_container_host_ip(self) -> str:
        return "127.0.0.1"

    def get_exposed_port(self, port: int) -> int:
        return port

    def stop_gracefully(self) -> tuple[int, float]:
        """SIGTERM (the image's stop signal), then its exit code and how long it took."""
        wrapped = self.get_wrapped_container()
        began = time.monotonic()
        wrapped.stop(timeout=GRACE_S.get(self.service, 10))
        took = time.monotonic() - began
        wrapped.reload()
        return int(wrapped.attrs["State"]["ExitCode"]), took

    def logs(self) -> str:
        out, err = self.get_logs()
        return (out + err).decode(errors="replace")


@dataclass
class Podman:
    socket: Path
    log: Path


def _wait_for_socket(path: Path, service: "subprocess.Popen[bytes]", timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert service.poll() is None, "podman system service exited"
        assert time.monotonic() < deadline, f"no podman API socket at {path}"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """The images built, and podman's Docker-compatible API serving testcontainers."""
    root = repo_root()
    began = time.monotonic()
    built = subprocess.run(
        [str(root / "scripts" / "images.sh")],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert built.returncode == 0, f"scripts/images.sh failed\n{built.stdout}\n{built.stderr}"
    print(f"images: {time.monotonic() - began:.1f}s\n{built.stderr}")
    base = tmp_path_factory.mktemp("podman")
    sock, log = base / "podman.sock", base / "podman-service.log"
    conf = CACHE / "images" / "containers.conf"
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    podman_bin = shutil.which("podman")
    assert podman_bin, "podman missing after scripts/images.sh"
    with log.open("wb") as sink:
        service = subprocess.Popen(
            [podman_bin, "system", "service", "--time=0", f"unix://{sock}"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_for_socket(sock, service, timeout=30)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DOCKER_HOST", f"unix://{sock}")
            patch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
            patch.setenv("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
            # Read at import; set here too, whatever imported testcontainers first.
            patch.setattr(testcontainers_config, "_ryuk_disabled", True)
            yield Podman(sock, log)
    finally:
        service.terminate()
        try:
            service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


def _nats_config(stack: Stack, path: Path) -> None:
    """The users and permissions NatsServer renders for the local stack (bcrypt hashes, no
    passwords), readable by the container's uid."""
    path.write_text(json.dumps(stack.nats.config(), indent=2))
    path.chmod(0o644)


def _started(container: HostNetContainer, started: list[HostNetContainer]) -> HostNetContainer:
    started.append(container)
    container.start()
    return container


@pytest.mark.timeout(1800)  # a cold machine builds every image first (minutes)
async def test_stack_in_containers_answers_a_call_hears_an_edit_and_stops_cleanly(
    podman: Podman, tmp_path: Path
) -> None:
    stack = Stack(tmp_path / "stack")
    # Not livekit-server --dev: a real key pair, a secret the logs must never show.
    stack.livekit.api_key = "corevoice"
    stack.livekit.api_secret = secrets.token_urlsafe(32)
    pg_port, pg_password = free_port(), secrets.token_urlsafe(18)
    encryption_keys = f"local:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    nats_conf = tmp_path / "nats-server.json"
    _nats_config(stack, nats_conf)
    ports = stack.ports
    livekit_env = {
        "LIVEKIT_URL": stack.livekit.url,
        "LIVEKIT_API_KEY": stack.livekit.api_key,
        "LIVEKIT_API_SECRET": stack.livekit.api_secret,
        "WORKER_AGENT_NAME": "core-voice",
    }
    database_url = f"postgresql+asyncpg://postgres:{pg_password}@127.0.0.1:{pg_port}/corevoice"
    config_sync = {
        **stack.nats.env(Role.CONFIG_SYNC),
        **config_sync_env(
            port=ports.config_sync,
            database_url=database_url,
            admin_token=stack.admin_token,
            runtime_token=stack.runtime_token,
            encryption_keys=encryption_keys,
        ),
    }
    secret_values = {
        "admin token": stack.admin_token,
        "runtime token": stack.runtime_token,
        "livekit secret": stack.livekit.api_secret,
        "postgres password": pg_password,
        "encryption key": encryption_keys.removeprefix("local:"),
        **{f"nats password of {user}": pw for user, pw in stack.nats.passwords.items()},
    }

    nats_args = [
        "-c", "/etc/nats/nats-server.json",
        "-js", "-sd", NATS_STORE, "-n", "core-voice",
        "-a", "127.0.0.1", "-p", str(ports.nats), "-m", str(ports.nats_monitor),
    ]  # fmt: skip
    started: list[HostNetContainer] = []
    try:
        nats = (
            HostNetContainer("nats", hardened=True)
            .with_volume_mapping(nats_conf, "/etc/nats/nats-server.json", "ro")
            .with_command(nats_args)
            .waiting_for(
                HttpWaitStrategy(
                    ports.nats_monitor, "/healthz?js-enabled-only=true"
                ).with_startup_timeout(30)
            )
        )
        postgres = (
            HostNetContainer("postgres")
            .with_envs(PGDATA=PGDATA, POSTGRES_PASSWORD=pg_password, POSTGRES_DB="corevoice")
            .with_command(["-c", "listen_addresses=127.0.0.1", "-c", f"port={pg_port}", "-F"])
            .waiting_for(
                LogMessageWaitStrategy(
                    "database system is ready to accept connections"
                ).with_startup_timeout(60)
            )
        )
        livekit = (
            HostNetContainer("livekit-server")
            .with_envs(
                LIVEKIT_CONFIG=stack.livekit.config_yaml(),
                LIVEKIT_KEYS=f"{stack.livekit.api_key}: {stack.livekit.api_secret}",
            )
            .waiting_for(HttpWaitStrategy(ports.livekit, "/").with_startup_timeout(30))
        )
        for server in (nats, postgres, livekit):
            _started(server, started)

        # The schema first, as the chart's pre-install hook Job does.
        migrate = _started(
            HostNetContainer("config-sync")
            .with_envs(**config_sync)
            .with_command(["python", "-m", "core_voice_config_sync", "migrate"]),
            started,
        )
        assert migrate.wait() == 0, migrate.logs()

        def service(name: str, port: int, path: str, **env: str) -> HostNetContainer:
            return _started(
                HostNetContainer(name)
                .with_envs(**env)
                .waiting_for(HttpWaitStrategy(port, path).with_startup_timeout(90)),
                started,
            )

        services = [
            service("config-sync", ports.config_sync, "/healthz", **config_sync),
            service(
                "dispatcher",
                ports.dispatcher,
                "/healthz",
                **stack.nats.env(Role.DISPATCHER),
                **livekit_env,
                DISPATCHER_HTTP_PORT=str(ports.dispatcher),
            ),
            service(
                "telemetry",
                ports.telemetry,
                "/healthz",
                **stack.nats.env(Role.TELEMETRY),
                TELEMETRY_HTTP_PORT=str(ports.telemetry),
            ),
            service(
                "voice-worker",
                ports.worker_health,
                "/readyz",
                **stack.nats.env(Role.WORKER),
                **livekit_env,
                WORKER_HEALTH_PORT=str(ports.worker_health),
                WORKER_DRAIN_TIMEOUT_S="20",
                # Job processes forked from livekit-agents' forkserver, whose socket and
                # files live in /tmp: the part of a read-only root most likely to break.
                WORKER_EXECUTOR="process",
            ),
        ]
        worker = services[-1]
        assert worker.exec(["id", "-u"]).output.decode().strip() == "10001"
        assert worker.exec(["touch", "/opt/venv/written"]).exit_code != 0, "root is writable"

        agent_id = f"ctr-{uuid.uuid4().hex[:8]}"
        agent = msgspec.structs.replace(demo_agent(), id=agent_id, greeting=GREETING_V1)
        async with api_client(stack) as client:
            created = await client.post("/api/v1/agents", content=msgspec.json.encode(agent))
            assert created.status_code == 201, created.text

        first = await call_from_a_child_process(stack, agent_id, f"ctr-1-{agent_id}")
        print(f"call 1: greeting {first.greeting_latency_s!r}s, replies {first.replies}")
        assert first.ok, first.error
        assert first.greeting_text == normalize(GREETING_V1)
        assert [(r.said, r.heard) for r in first.replies] == [(ASK, normalize(ANSWER))]

        async with api_client(stack) as client:
            edited = await client.patch(
                f"/api/v1/agents/{agent_id}", content=json.dumps({"greeting": GREETING_V2})
            )
            assert edited.status_code == 200, edited.text

        second = await call_from_a_child_process(stack, agent_id, f"ctr-2-{agent_id}")
        print(f"call 2: greeting {second.greeting_latency_s!r}s, replies {second.replies}")
        assert second.ok, second.error
        assert second.greeting_text == normalize(GREETING_V2)

        # A clean stop: each container, newest first, ends on SIGTERM (postgres: SIGINT, its
        # STOPSIGNAL) with status 0 inside its grace period.
        stopped: dict[str, tuple[int, float]] = {}
        for container in [*reversed(services), livekit, postgres, nats]:
            stopped[container.service] = container.stop_gracefully()
        print(f"stops (exit code, seconds): {stopped}")
        assert {name: code for name, (code, _) in stopped.items()} == dict.fromkeys(stopped, 0)
        for name, (_, took) in stopped.items():
            assert took < GRACE_S.get(name, 10), f"{name} needed a SIGKILL ({took:.1f}s)"

        logs = {c.service + ("-migrate" if c is migrate else ""): c.logs() for c in started}
        leaks = [
            f"{what} in the logs of {name}"
            for name, text in logs.items()
            for what, value in secret_values.items()
            if value in text
        ]
        assert not leaks, leaks
        violations = [line for line in logs["nats"].splitlines() if "Violation" in line]
        assert not violations, violations[:20]
    finally:
        for container in reversed(started):
            with contextlib.suppress(Exception):
                container.stop()
