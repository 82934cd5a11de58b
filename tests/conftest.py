"""Shared fixtures: real servers as local processes on free loopback ports.

Servers are session-scoped (one nats-server, one livekit-server per test run); tests
isolate themselves with unique agent ids / room names rather than fresh servers.
"""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from core_voice_cli.servers import LiveKitServer, NatsServer
from core_voice_contracts.bus import connect


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    base = tmp_path_factory.mktemp("nats")
    server = NatsServer(data_dir=base / "data", log_dir=base)
    process = server.process().start().wait_ready(20)
    try:
        yield server
    finally:
        process.stop()


@pytest.fixture(scope="session")
def livekit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKitServer]:
    base = tmp_path_factory.mktemp("livekit")
    server = LiveKitServer(config_dir=base, log_dir=base)
    process = server.process().start().wait_ready(30)
    try:
        yield server
    finally:
        process.stop()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    """A NATS connection (streams ensured) for one test."""
    nc, js = await connect(nats_server.url, name="pytest")
    try:
        yield nc, js
    finally:
        await nc.drain()


def repo_path(*parts: str) -> Path:
    return Path(__file__).resolve().parents[1].joinpath(*parts)
