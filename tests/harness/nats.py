"""nats-server for tests: one started on free ports with throwaway directories, and the
check that no service used a right it was not granted."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

from core_voice_cli.servers import NatsServer


@contextlib.contextmanager
def running_nats(base: Path) -> Iterator[NatsServer]:
    """A nats-server with its data and log under ``base``, stopped when the block ends."""
    server = NatsServer(data_dir=base / "data", log_dir=base)
    process = server.process().start().wait_ready(20)
    try:
        yield server
    finally:
        process.stop()


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
