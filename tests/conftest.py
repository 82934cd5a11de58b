"""Shared fixtures: real servers as local processes on free loopback ports; and the rules
every test keeps.

Servers are session-scoped (one nats-server, one livekit-server per test run); tests
isolate themselves with unique agent ids / room names rather than fresh servers.

The rules, enforced here (as livekit/agents' tests/conftest.py does):

- Every test is exactly one of ``unit``, ``integration``, ``e2e``, ``containers``,
  ``kube``, ``cluster``: its module's ``pytestmark`` names the category of the directory
  it lives in.
- A unit test starts no server: it may not use the server fixtures, and a socket it
  opens may connect or bind to loopback only.
- A test leaves no asyncio task running. Tasks that were already running when it started
  (those of session- and module-scoped fixtures, the event loop's own) are not its own.
"""

import asyncio
import ipaddress
import shutil
import socket
import tempfile
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from core_voice_cli.servers import LiveKitServer, NatsServer, PostgresServer
from core_voice_contracts.bus import connect
from core_voice_contracts.permissions import Role
from tests.harness.nats import assert_no_permission_violations, running_nats

CATEGORIES = ("unit", "integration", "e2e", "containers", "kube", "cluster")
SERVER_FIXTURES = frozenset(
    {"nats_server", "livekit_server", "postgres_server", "database_url", "bus", "worker_bus"}
)
"""Fixtures that start or need a real server: integration and e2e tests only."""
LEAK_GRACE_S = 1.0
"""How long a test's tasks get to finish after it (a task cancelled in its last line has
not run its cancellation yet)."""


def _category_of(path: Path) -> str | None:
    tests = Path(__file__).resolve().parent
    parts = path.resolve().relative_to(tests).parts
    return parts[0] if len(parts) > 1 and parts[0] in CATEGORIES else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a run whose tests break the category rules, naming each one and why."""
    wrong: list[str] = []
    for item in items:
        category = _category_of(item.path)
        marked = sorted({mark.name for mark in item.iter_markers() if mark.name in CATEGORIES})
        if category is None:
            wrong.append(f"{item.nodeid}: tests live in tests/{{{','.join(CATEGORIES)}}}/")
        elif marked != [category]:
            wrong.append(
                f"{item.nodeid}: in tests/{category}/ but marked {marked or 'with no category'}"
                f" (pytestmark = pytest.mark.{category})"
            )
        elif category == "unit" and (
            servers := SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        ):
            wrong.append(f"{item.nodeid}: a unit test uses server fixtures {sorted(servers)}")
    if wrong:
        raise pytest.UsageError("tests break the category rules:\n  " + "\n  ".join(wrong))


def _loopback(address: Any) -> bool:
    """Whether a socket address is this machine: loopback IPs, localhost, Unix sockets."""
    if not isinstance(address, tuple):
        return True  # AF_UNIX path (str or bytes)
    host = str(address[0])
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.split("%", maxsplit=1)[0]).is_loopback
    except ValueError:
        return False  # a name other than localhost: the network


@pytest.fixture(autouse=True)
def _unit_sockets_stay_on_loopback(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a unit test, connecting or binding a socket beyond loopback fails at once."""
    if _category_of(request.node.path) != "unit":
        return

    def guard(name: str) -> Any:
        original = getattr(socket.socket, name)

        def checked(sock: socket.socket, address: Any, *args: Any) -> Any:
            if not _loopback(address):
                raise AssertionError(f"a unit test may not {name} beyond loopback: {address!r}")
            return original(sock, address, *args)

        return checked

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, guard(name))


def _where(task: "asyncio.Future[Any]") -> str:
    if not isinstance(task, asyncio.Task):
        return repr(task)
    coro = task.get_coro()
    frame = getattr(coro, "cr_frame", None)
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "not started"
    return f"{task.get_name()}: {getattr(coro, '__qualname__', type(coro).__name__)} at {where}"


def _describe(task: "asyncio.Task[Any]") -> str:
    """Where the task waits, and the tasks it was started from."""
    lines = [_where(task)]
    parent = _parents.get(task)
    while parent is not None:
        lines.append(f"  started from {_where(parent)}")
        parent = _parents.get(parent)
    return "\n  ".join(lines)


def _the_loops_own(task: "asyncio.Task[Any]") -> bool:
    """Tasks the loop or pytest-asyncio make: async generators being closed by the GC,
    the runner of the test or fixture itself."""
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", "") or type(coro).__name__
    module = getattr(coro, "__module__", "") or ""
    return "async_generator_athrow" in name or module.startswith(("pytest", "_pytest"))


def _ends_by_itself(task: "asyncio.Task[Any]") -> bool:
    """nats.py's heartbeat check of a JetStream subscription whose connection is closed:
    nats.py cancels it on ``unsubscribe`` but not on ``drain``, and it sees the closed
    connection only after its sleep of two heartbeats. Left open, it is a leak."""
    coro = task.get_coro()
    if getattr(coro, "__qualname__", "") != "JetStreamContext._JSI.activity_check":
        return False
    frame = getattr(coro, "cr_frame", None)
    jsi = frame.f_locals.get("self") if frame is not None else None
    return bool(getattr(getattr(jsi, "_conn", None), "is_closed", False))


_parents: "weakref.WeakKeyDictionary[asyncio.Future[Any], asyncio.Task[Any]]" = (
    weakref.WeakKeyDictionary()
)
"""The task each task was created in, where there was one."""
_from_callbacks: "weakref.WeakSet[asyncio.Future[Any]]" = weakref.WeakSet()
"""Tasks a callback created while the loop ran (a server's connection handler)."""


def _track_parents(loop: asyncio.AbstractEventLoop) -> None:
    """Record, for every task the loop creates from now on, where it came from."""
    if getattr(loop, "_core_voice_parents", False):
        return
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        parent = asyncio.current_task(loop)
        if parent is not None:
            _parents[task] = parent
        elif loop.is_running():  # not pytest-asyncio's runner of a test or fixture
            _from_callbacks.add(task)
        return task

    loop.set_task_factory(factory)
    setattr(loop, "_core_voice_parents", True)  # noqa: B010 - a mark on a foreign object


def _not_the_tests(task: "asyncio.Future[Any]", before: "set[asyncio.Task[Any]]") -> bool:
    """Whether ``task`` descends from a task that was running before the test (a
    fixture's) or from one a callback made (a server's, a connection's: their owners are
    fixtures, the test only talks to them)."""
    node: asyncio.Future[Any] | None = task
    while node is not None:
        if node in before or node in _from_callbacks:
            return True
        node = _parents.get(node)
    return False


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running, naming each one and where it waits.

    Autouse and function-scoped, so it is set up after the session and module fixtures the
    test uses and torn down after its function fixtures. The tasks running before the test
    belong to those fixtures or to the loop, and so do the tasks they start during it (a
    module's pool subscribing to a new agent's subject, in a connection's handler): those
    are not the test's.
    """
    _track_parents(asyncio.get_running_loop())
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    new = [
        task
        for task in asyncio.all_tasks() - before
        if task is not current
        and not task.done()
        and not _the_loops_own(task)
        and not _ends_by_itself(task)
        and not _not_the_tests(task, before)
    ]
    if new:
        _, pending = await asyncio.wait(new, timeout=LEAK_GRACE_S)
        if pending:
            leaked = "\n  ".join(sorted(_describe(task) for task in pending))
            for task in pending:
                task.cancel()  # so that the next test starts without them
            pytest.fail(f"the test left {len(pending)} asyncio task(s) running:\n  {leaked}")


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    base = tmp_path_factory.mktemp("nats")
    with running_nats(base) as server:
        yield server
    assert_no_permission_violations(base)


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


@pytest.fixture
async def worker_bus(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A connection as the worker pool's user: the only one ``voice.config.get`` answers."""
    nc, _ = await connect(nats_server.access(Role.WORKER), name="pytest-worker", ensure=False)
    try:
        yield nc
    finally:
        await nc.drain()
