"""nats-server for tests: one started on free ports with throwaway directories, the
check that no service used a right it was not granted, and a connection that keeps the
server's permission violations (`watched`)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import nats
from nats.aio.client import Client

from core_voice_cli.servers import NatsServer
from core_voice_contracts.bus import NatsAccess


@contextlib.contextmanager
def running_nats(base: Path) -> Iterator[NatsServer]:
    """A nats-server with its data and log under ``base``, stopped when the block ends."""
    server = NatsServer(data_dir=base / "data", log_dir=base)
    process = server.process().start().wait_ready(20)
    try:
        yield server
    finally:
        process.stop()


def assert_no_permission_violations(
    log_dir: Path, excused: Callable[[str], bool] = lambda _: False
) -> None:
    """Every service ran as its own NATS user: a right missing from
    core_voice_contracts.permissions shows in the server's log even where no test looked.
    A line ``excused`` says is allowed (the caller says why)."""
    violations = [
        line
        for log in log_dir.glob("nats-server*.log")
        for line in log.read_text(errors="replace").splitlines()
        if "Violation" in line and not excused(line)
    ]
    assert not violations, violations[:20]


class Watched:
    """A connection whose server errors (permission violations) are kept, in order."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    async def refused(self, what: str, within: float = 5.0) -> bool:
        """Whether the server said ``what`` (e.g. 'Publish to "x"') was a violation."""
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            said = [e.lower() for e in self.errors]
            if any("permissions violation" in e and what.lower() in e for e in said):
                return True
            await asyncio.sleep(0.02)
        return False


@contextlib.asynccontextmanager
async def watched(access: NatsAccess) -> AsyncIterator[Watched]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        access.url, error_cb=on_error, allow_reconnect=False, **access.options()
    )
    try:
        yield Watched(nc, errors)
    finally:
        await nc.close()
