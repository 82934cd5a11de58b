"""The pool-default-key rule against a real config_sync process: what
``CONFIG_SYNC_PLATFORM_KEY_PROVIDERS`` lets through, the 422 that says how to allow the
rest, and a value naming no keyed provider stopping startup without echoing it.

SQLite only: the rule lives in the validator, above the database.
"""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from core_voice_cli.servers import NatsServer
from core_voice_contracts.permissions import Role
from tests.harness.config_sync import (
    ADMIN_TOKEN,
    ConfigSync,
    refused_start,
    sqlite_env,
    start_config_sync,
)
from tests.harness.config_sync_api import API, auth, error_of, new_agent_id

pytestmark = pytest.mark.integration

GROQ = {"llm": {"provider": "groq", "model": "llama-3.1-8b-instant"}}
ELEVENLABS = {"tts": {"provider": "elevenlabs"}}


@pytest.fixture(scope="module")
def services(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ConfigSync]]:
    """One config_sync per setting, each on its own SQLite file."""
    running: dict[str, ConfigSync] = {}
    try:
        for name, value in (("star", "*"), ("openai", "openai")):
            directory = tmp_path_factory.mktemp(f"platform_keys_{name}")
            running[name] = start_config_sync(
                nats=nats_server.access(Role.CONFIG_SYNC),
                database_url=f"sqlite+aiosqlite:///{directory / 'config_sync.db'}",
                log_dir=directory,
                name=f"config-sync-{name}",
                extra_env={"CONFIG_SYNC_PLATFORM_KEY_PROVIDERS": value},
            )
        yield running
    finally:
        for service in running.values():
            assert service.process.stop() == 0, service.process.log_tail()


@pytest.fixture
async def star(services: dict[str, ConfigSync]) -> AsyncIterator[httpx.AsyncClient]:
    base_url = services["star"].base_url
    async with httpx.AsyncClient(base_url=base_url, headers=auth(ADMIN_TOKEN)) as client:
        yield client


@pytest.fixture
async def only_openai(services: dict[str, ConfigSync]) -> AsyncIterator[httpx.AsyncClient]:
    base_url = services["openai"].base_url
    async with httpx.AsyncClient(base_url=base_url, headers=auth(ADMIN_TOKEN)) as client:
        yield client


async def test_a_star_lets_every_provider_use_the_pools_key(star: httpx.AsyncClient) -> None:
    agent_id = new_agent_id()
    created = await star.post(API, json={"id": agent_id, "name": "Groq", **GROQ})
    assert created.status_code == 201, created.text

    edited = await star.patch(f"{API}/{agent_id}", json=ELEVENLABS)
    assert edited.status_code == 200, edited.text


async def test_a_listed_provider_passes_and_the_422_says_how_to_allow_another(
    only_openai: httpx.AsyncClient,
) -> None:
    listed = await only_openai.post(
        API, json={"id": new_agent_id(), "name": "OpenAI", "llm": {"provider": "openai"}}
    )
    assert listed.status_code == 201, listed.text

    refused = await only_openai.post(API, json={"id": new_agent_id(), "name": "Groq", **GROQ})
    assert (refused.status_code, error_of(refused).error) == (422, "invalid_config")
    assert error_of(refused).detail == (
        "keys.groq: required by llm.provider 'groq': give the agent its own key, or let the "
        "worker pool's default key serve it (CONFIG_SYNC_PLATFORM_KEY_PROVIDERS=groq, or * "
        "for every provider)"
    )


def test_a_value_naming_no_keyed_provider_stops_startup(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    access = nats_server.access(Role.CONFIG_SYNC)
    done = refused_start(
        sqlite_env(access, tmp_path, CONFIG_SYNC_PLATFORM_KEY_PROVIDERS="openai,dg-canary-0042"),
        tmp_path,
    )
    assert "CONFIG_SYNC_PLATFORM_KEY_PROVIDERS" in done.stderr
    assert "dg-canary-0042" not in done.stdout + done.stderr
