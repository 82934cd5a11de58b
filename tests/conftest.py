"""Shared fixtures: real servers as local processes on free loopback ports.

Servers are session-scoped (one nats-server, one livekit-server per test run); tests
isolate themselves with unique agent ids / room names rather than fresh servers.
"""

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from core_voice_cli.servers import LiveKitServer, NatsServer, PostgresServer
from core_voice_contracts.bus import connect
from core_voice_contracts.permissions import Role


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    base = tmp_path_factory.mktemp("nats")
    server = NatsServer(data_dir=base / "data", log_dir=base)
    process = server.process().start().wait_ready(20)
    try:
        yield server
    finally:
        process.stop()
    assert_no_permission_violations(base)


def assert_no_permission_violations(log_dir: Path) -> None:
    """Every service ran as its own NATS user: a right missing from
    core_voice_contracts.permissions shows in the server's log even where no test looked."""
    violations = [
        line
        for log in log_dir.glob("nats-server*.log")
        for line in log.read_text(errors="replace").splitlines()
        if "Violation" in line
    ]
    assert not violations, violations[:20]


@pytest.fixture(scope="session")
def livekit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKitServer]:
    base = tmp_path_factory.mktemp("livekit")
    server = LiveKitServer(config_dir=base, log_dir=base)
    process = server.process().start().wait_ready(30)
    try:
        yield server
    finally:
        process.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL cluster per run; tests take a fresh database each (`database_url`).

    The cluster lives under /tmp rather than pytest's tmp dir: as root, PostgreSQL runs as
    an unprivileged user, which cannot enter pytest's 0700 directories.
    """
    base = Path(tempfile.mkdtemp(prefix="corevoice-pg-"))
    base.chmod(0o755)
    server = PostgresServer(data_dir=base / "data", log_dir=tmp_path_factory.mktemp("postgres"))
    process = server.process().start().wait_ready(60)
    try:
        yield server
    finally:
        process.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty config_sync database, once per backend: SQLite file or PostgreSQL database.

    Module-scoped so a module's service process is started once per backend.
    """
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'config_sync.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"cs_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    """A NATS connection (streams ensured) for one test."""
    nc, js = await connect(nats_server.access(Role.OPERATOR), name="pytest")
    try:
        yield nc, js
    finally:
        await nc.drain()


def repo_path(*parts: str) -> Path:
    return Path(__file__).resolve().parents[1].joinpath(*parts)


@pytest.fixture
async def worker_bus(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A connection as the worker pool's user: the only one ``voice.config.get`` answers."""
    nc, _ = await connect(nats_server.access(Role.WORKER), name="pytest-worker", ensure=False)
    try:
        yield nc
    finally:
        await nc.drain()
