"""An agent's provider ``base_url`` cannot send the workers to cloud metadata or internal
addresses, through any edit path, unless the operator's ``CONFIG_SYNC_BASE_URL_ALLOW``
says so (against a real config_sync; unit cases in tests/unit/test_config_sync_outbound.py).
"""

import ipaddress
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from core_voice_cli.servers import NatsServer
from core_voice_config_sync.outbound import internal_reason
from core_voice_contracts.permissions import Role
from tests.harness.config_sync import (
    ADMIN_TOKEN,
    keyring,
    refused_start,
    sqlite_env,
    start_config_sync,
)
from tests.harness.config_sync_api import (
    API,
    auth,
    create_agent,
    create_campaign,
    error_of,
    link,
    new_agent_id,
)

pytestmark = pytest.mark.integration

SECRET = "path-token-canary-4b1e"
KEY = "sk-outbound-test-key-0001"
FIELD = "llm.options.base_url"


def openai(url: str) -> dict[str, Any]:
    return {"provider": "openai", "model": "gpt-4o-mini", "options": {"base_url": url}}


def refused_urls() -> list[str]:
    """One URL per refused class; the last is this machine's own name, which the system
    resolver turns into an internal address (checked here, it is the premise)."""
    host = socket.gethostname()
    resolved = {str(info[4][0]) for info in socket.getaddrinfo(host, 443)}
    assert all(internal_reason(ipaddress.ip_address(a)) for a in resolved), resolved
    return [
        f"http://api.example.com/v1/{SECRET}",
        f"https://127.0.0.1/v1/{SECRET}",
        f"https://localhost:8443/{SECRET}",
        f"https://169.254.169.254/latest/meta-data/{SECRET}",
        f"https://10.0.0.7/{SECRET}",
        f"https://[fd00::7]/{SECRET}",
        f"https://[fe80::1]/{SECRET}",
        f"https://224.0.0.9/{SECRET}",
        f"https://0.0.0.0/{SECRET}",
        f"https://user:{SECRET}@api.example.com/v1",
        f"https://2130706433/{SECRET}",  # 127.0.0.1, spelled for the resolver
        f"https://{host}/{SECRET}",
    ]


async def test_base_url_must_be_public_https_on_every_edit_path(admin: httpx.AsyncClient) -> None:
    agent_id = new_agent_id()
    good = "https://8.8.8.8/v1"  # public, and an IP literal: no DNS needed offline
    await create_agent(admin, agent_id, llm=openai(good), keys={"openai": KEY})
    campaign_id = await create_campaign(admin)
    for url in refused_urls():
        for path, call, field in (
            (
                "create",
                admin.post(API, json={"name": "x", "llm": openai(url), "keys": {"openai": KEY}}),
                FIELD,
            ),
            ("patch", admin.patch(f"{API}/{agent_id}", json={"llm": openai(url)}), FIELD),
            (
                "link",
                link(
                    admin, campaign_id, agent_id, overrides={"llm": {"options": {"base_url": url}}}
                ),
                f"overrides.{FIELD}",
            ),
        ):
            response = await call
            assert response.status_code == 422, (path, url, response.text)
            assert error_of(response).error == "invalid_config"
            assert error_of(response).detail.startswith(f"{field}: "), (path, url, response.text)
            assert SECRET not in response.text and "example" not in response.text
    view = (await admin.get(f"{API}/{agent_id}")).json()
    assert (view["version"], view["llm"]["options"]["base_url"]) == (1, good)


def test_the_operators_allow_list_admits_exactly_what_it_names(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    service = start_config_sync(
        nats=nats_server.access(Role.CONFIG_SYNC),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'config_sync.db'}",
        log_dir=tmp_path,
        encryption_keys=keyring("k1"),
        extra_env={"CONFIG_SYNC_BASE_URL_ALLOW": "127.0.0.1:8443,10.1.0.0/16,llm.internal"},
    )
    try:
        with httpx.Client(base_url=service.base_url, headers=auth(ADMIN_TOKEN)) as admin:

            def create(url: str) -> httpx.Response:
                body = {"name": "x", "llm": openai(url), "keys": {"openai": KEY}}
                return admin.post(API, json=body)

            for url in (
                "http://127.0.0.1:8443/v1",
                "https://10.1.9.9/v1",
                "http://llm.internal/v1",
            ):
                assert create(url).status_code == 201, url
            for url in ("http://127.0.0.1:9999/v1", "https://10.2.0.1/v1", "https://localhost/v1"):
                response = create(url)
                assert response.status_code == 422, (url, response.text)
                assert error_of(response).detail.startswith(f"{FIELD}: ")
    finally:
        assert service.process.stop() == 0


def test_a_bad_allow_list_stops_startup_without_echoing_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    access = nats_server.access(Role.CONFIG_SYNC)
    done = refused_start(
        sqlite_env(access, tmp_path, CONFIG_SYNC_BASE_URL_ALLOW="127.0.0.1, 10.0.0.0/99-canary"),
        tmp_path,
    )
    assert "CONFIG_SYNC_BASE_URL_ALLOW" in done.stderr and "entry 2" in done.stderr
    assert "canary" not in done.stdout + done.stderr
