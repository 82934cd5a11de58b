"""Fixtures shared by several integration modules (each module gets its own instance).

A module that needs a different setup defines a fixture of the same name, which wins.
"""

import contextlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from livekit import api

from core_voice_cli.servers import NatsServer
from core_voice_contracts.bus import NatsAccess
from core_voice_contracts.permissions import Role
from tests.integration.test_config_sync import (
    ADMIN_TOKEN,
    RUNTIME_TOKEN,
    ConfigSync,
    auth,
    keyring,
    start_config_sync,
)
from tests.integration.test_dispatcher_pipeline import Rig


@contextlib.contextmanager
def config_sync_service(
    nats: NatsAccess, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConfigSync]:
    """config_sync as its own process; it must stop cleanly and never log its tokens."""
    running = start_config_sync(
        nats=nats,
        database_url=database_url,
        log_dir=tmp_path_factory.mktemp("config_sync"),
        encryption_keys=keyring("k1"),
    )
    try:
        yield running
    finally:
        assert running.process.stop() == 0, running.process.log_tail()
        log = running.process.log_path.read_text(errors="replace")
        assert ADMIN_TOKEN not in log
        assert RUNTIME_TOKEN not in log


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
