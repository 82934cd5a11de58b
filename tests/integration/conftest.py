"""Fixtures shared by several integration modules (each module gets its own instance).

A module that needs a different setup defines a fixture of the same name, which wins.
"""

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from livekit import api
from nats.js import JetStreamContext

from core_voice_cli.servers import NatsServer, PostgresServer
from core_voice_contracts.bus import connect
from core_voice_contracts.permissions import Role
from tests.harness.config_sync import ADMIN_TOKEN, ConfigSync, config_sync_service
from tests.harness.config_sync_api import auth
from tests.harness.dispatcher import Rig
from tests.harness.postgres import RestartablePostgres


@pytest.fixture(scope="module")
def service(
    nats_server: NatsServer, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConfigSync]:
    """config_sync on the module's backend and the session's NATS."""
    with config_sync_service(
        nats_server.access(Role.CONFIG_SYNC), database_url, tmp_path_factory
    ) as running:
        yield running


@pytest.fixture
async def admin(service: ConfigSync) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.base_url, headers=auth(ADMIN_TOKEN)) as client:
        yield client


@pytest.fixture
async def lk(rig: Rig) -> AsyncIterator[api.LiveKitAPI]:
    """A LiveKit API client for the module's dispatcher rig."""
    client = api.LiveKitAPI(
        rig.livekit_url, rig.stack.livekit.api_key, rig.stack.livekit.api_secret
    )
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[RestartablePostgres]:
    """A PostgreSQL server of this test's own, which it may stop and start."""
    base = Path(tempfile.mkdtemp(prefix="corevoice-pg-outage-"))
    base.chmod(0o755)
    server = PostgresServer(data_dir=base / "data", log_dir=tmp_path)
    holder = RestartablePostgres(server, server.process().start().wait_ready(60))
    try:
        yield holder
    finally:
        holder.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def js(rig: Rig) -> AsyncIterator[JetStreamContext]:
    """JetStream as the operator, on the module's dispatcher rig."""
    nc, js = await connect(rig.nats.access(Role.OPERATOR), name="test-rig")
    try:
        yield js
    finally:
        await nc.drain()
