"""config_sync as a real process: HTTP API, ``voice.config.get``, change events, restarts.

The service runs as ``python -m core_voice_config_sync`` against the session NATS server,
once per database backend (a SQLite file, a PostgreSQL database on the session server);
tests isolate themselves with unique agent ids. This module also holds the harness the
other config_sync test modules use (`start_config_sync`, `auth`, ...).
"""

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.micro.service import ServiceVerb, control_subject

from core_voice_cli.binaries import find_binary
from core_voice_cli.servers import NatsServer
from core_voice_config_sync.bus_endpoints import SERVICE_NAME
from core_voice_contracts import codec, subjects
from core_voice_contracts.admin_api import AgentView
from core_voice_contracts.events import (
    ChangeKind,
    ConfigChanged,
    ConfigFound,
    ConfigGetError,
    ConfigGetRequest,
    ConfigNotFound,
)
from core_voice_contracts.permissions import Role
from core_voice_contracts.runtime_config import RuntimeConfig
from tests.harness.config_sync import (
    ADMIN_TOKEN,
    RUNTIME_TOKEN,
    ConfigSync,
    fresh_database,
    start_config_sync,
)
from tests.harness.config_sync_api import API, auth, create_agent, error_of, new_agent_id

pytestmark = pytest.mark.integration


@pytest.fixture
async def anonymous(service: ConfigSync) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.base_url) as client:
        yield client


async def config_get(nc: Client, data: bytes) -> object:
    reply = await nc.request(subjects.CONFIG_GET, data, timeout=5)
    return codec.decode_config_reply(reply.data)


# --- HTTP API -----------------------------------------------------------------------


async def test_edits_make_versions_and_change_events(
    admin: httpx.AsyncClient, bus: tuple[Client, JetStreamContext]
) -> None:
    _, js = bus
    agent_id = new_agent_id()
    events: asyncio.Queue[ConfigChanged] = asyncio.Queue()

    async def on_event(msg: Msg) -> None:
        await events.put(codec.decode_config_event(msg.data))

    sub = await js.subscribe(subjects.config_changed(agent_id), cb=on_event, ordered_consumer=True)
    try:
        created = await create_agent(admin, agent_id, instructions="Be brief.")
        assert (created.version, created.tenant_id, created.status) == (1, "default", "active")

        fetched = await admin.get(f"{API}/{agent_id}")
        assert fetched.status_code == 200
        assert msgspec.json.decode(fetched.content, type=AgentView) == created

        versions = [created.version]
        for patch in ({"instructions": "Be very brief."}, {"greeting": "Hi there."}):
            response = await admin.patch(f"{API}/{agent_id}", json=patch)
            assert response.status_code == 200, response.text
            versions.append(msgspec.json.decode(response.content, type=AgentView).version)
        assert versions == [1, 2, 3]

        runtime = await admin.get(f"{API}/{agent_id}/runtime-config")
        assert runtime.status_code == 200
        assert runtime.headers["cache-control"] == "no-store"
        config = codec.decode_runtime_config(runtime.content)
        assert (config.version, config.instructions, config.greeting) == (
            3,
            "Be very brief.",
            "Hi there.",
        )

        received = [await asyncio.wait_for(events.get(), 5) for _ in range(3)]
        assert [(e.agent_id, e.version, e.kind) for e in received] == [
            (agent_id, 1, ChangeKind.CREATED),
            (agent_id, 2, ChangeKind.UPDATED),
            (agent_id, 3, ChangeKind.UPDATED),
        ]
        assert {e.tenant_id for e in received} == {"default"}

        # Re-applying the same values is a no-op: no new version, no event.
        same = await admin.patch(f"{API}/{agent_id}", json={"greeting": "Hi there."})
        assert msgspec.json.decode(same.content, type=AgentView).version == 3
        await asyncio.sleep(0.3)
        assert events.empty()
    finally:
        await sub.unsubscribe()


async def test_edit_to_event_latency_is_milliseconds(
    admin: httpx.AsyncClient, bus: tuple[Client, JetStreamContext]
) -> None:
    nc, _ = bus
    agent_id = new_agent_id()
    arrivals: asyncio.Queue[tuple[float, int]] = asyncio.Queue()

    async def on_event(msg: Msg) -> None:
        await arrivals.put((time.perf_counter(), codec.decode_config_event(msg.data).version))

    sub = await nc.subscribe(subjects.config_changed(agent_id), cb=on_event)
    try:
        await create_agent(admin, agent_id)
        assert (await asyncio.wait_for(arrivals.get(), 5))[1] == 1
        latencies = []
        for i in range(10):
            started = time.perf_counter()
            response = await admin.patch(f"{API}/{agent_id}", json={"instructions": f"edit {i}"})
            assert response.status_code == 200
            arrived, version = await asyncio.wait_for(arrivals.get(), 5)
            assert version == i + 2
            latencies.append(arrived - started)
        latencies.sort()
        # Includes the HTTP round trip; a relay that only swept (1 s) would fail this.
        assert latencies[len(latencies) // 2] < 0.25, latencies
    finally:
        await sub.unsubscribe()


async def test_concurrent_edits_each_get_their_own_version(admin: httpx.AsyncClient) -> None:
    agent_id = new_agent_id()
    await create_agent(admin, agent_id)
    responses = await asyncio.gather(
        *(admin.patch(f"{API}/{agent_id}", json={"instructions": f"edit {i}"}) for i in range(8))
    )
    assert [r.status_code for r in responses] == [200] * 8
    versions = sorted(msgspec.json.decode(r.content, type=AgentView).version for r in responses)
    assert versions == list(range(2, 10))


async def test_tokens_and_scopes(
    service: ConfigSync, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    agent_id = new_agent_id()
    await create_agent(admin, agent_id)
    agent_url = f"{API}/{agent_id}"

    for headers in ({}, auth("wrong"), {"Authorization": f"Basic {ADMIN_TOKEN}"}):
        response = await anonymous.get(agent_url, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        body = error_of(response)
        assert body.error == "unauthorized"
        assert "wrong" not in response.text
        missing = await anonymous.get(f"{agent_url}/runtime-config", headers=headers)
        assert missing.status_code == 401

    runtime = auth(RUNTIME_TOKEN)
    read = await anonymous.get(f"{agent_url}/runtime-config", headers=runtime)
    assert read.status_code == 200
    assert codec.decode_runtime_config(read.content).agent_id == agent_id

    for response in (
        await anonymous.post(API, json={"name": "x"}, headers=runtime),
        await anonymous.patch(agent_url, json={"name": "x"}, headers=runtime),
        await anonymous.get(agent_url, headers=runtime),
    ):
        assert response.status_code == 403
        assert error_of(response).error == "forbidden"


async def test_bad_input_is_refused_with_4xx(
    service: ConfigSync, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    agent_id = new_agent_id()
    await create_agent(admin, agent_id)

    unknown = new_agent_id()
    for response in (
        await admin.get(f"{API}/{unknown}"),
        await admin.patch(f"{API}/{unknown}", json={"name": "x"}),
        await admin.get(f"{API}/{unknown}/runtime-config"),
        await admin.get(f"{API}/not%20an%20id"),
    ):
        assert response.status_code == 404
        assert error_of(response).error == "agent_not_found"

    duplicate = await admin.post(API, json={"id": agent_id, "name": "again"})
    assert (duplicate.status_code, error_of(duplicate).error) == (409, "agent_exists")

    json_headers = {"Content-Type": "application/json"}
    malformed = await admin.patch(f"{API}/{agent_id}", content=b"{nope", headers=json_headers)
    assert (malformed.status_code, error_of(malformed).error) == (400, "malformed_json")

    unknown_field = await admin.patch(f"{API}/{agent_id}", json={"instructionz": "x"})
    assert unknown_field.status_code == 422
    assert error_of(unknown_field).error == "validation_error"
    assert "instructionz" in error_of(unknown_field).detail

    nested = await admin.patch(
        f"{API}/{agent_id}", json={"llm": {"provider": "scripted", "modle": "x"}}
    )
    assert nested.status_code == 422 and "modle" in error_of(nested).detail

    catalogue = await admin.patch(
        f"{API}/{agent_id}",
        json={"llm": {"provider": "openai", "model": "gpt-9"}, "tts": {"provider": "nope"}},
    )
    assert (catalogue.status_code, error_of(catalogue).error) == (422, "invalid_config")
    for field in ("llm.model", "tts.provider", "keys.openai"):
        assert field in error_of(catalogue).detail, field

    wrong_type = await admin.post(API, json={"name": "x", "llm": {"provider": 7}})
    assert wrong_type.status_code == 422
    assert "llm.provider" in error_of(wrong_type).detail

    bad_id = await admin.post(API, json={"name": "x", "id": "no spaces"})
    assert (bad_id.status_code, "id" in error_of(bad_id).detail) == (422, True)

    bad_options = await admin.patch(
        f"{API}/{agent_id}", json={"llm": {"provider": "scripted", "options": {"rulez": []}}}
    )
    assert bad_options.status_code == 422
    assert error_of(bad_options).error == "invalid_config"
    assert "llm.options.rulez" in error_of(bad_options).detail

    empty = await admin.patch(f"{API}/{agent_id}", json={})
    assert (empty.status_code, error_of(empty).error) == (422, "empty_patch")

    no_body = await admin.post(API, content=b"", headers=json_headers)
    assert no_body.status_code in (400, 422)

    huge = await admin.post(API, json={"name": "big", "instructions": "x" * 70_000})
    assert (huge.status_code, error_of(huge).error) == (413, "body_too_large")

    unchanged = await admin.get(f"{API}/{agent_id}")
    assert msgspec.json.decode(unchanged.content, type=AgentView).version == 1

    health = await anonymous.get("/healthz")
    assert health.status_code == 200
    assert service.process.running()


async def test_openapi_schema_is_served(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {
        f"{API}",
        f"{API}/{{agent_id}}",
        f"{API}/{{agent_id}}/runtime-config",
        f"{API}/{{agent_id}}/versions",
        f"{API}/{{agent_id}}/rollback",
        "/api/v1/campaigns/{campaign_id}/agents/{agent_id}",
        "/api/v1/trunks/{trunk_id}",
        "/api/v1/trunks/{trunk_id}/numbers/{number}",
        "/api/v1/tenants/{tenant_id}/legacy-agents",
        "/api/v1/tokens",
        "/api/v1/providers",
    } <= set(paths)


async def test_versions_are_listed_paginated_and_rolled_back(admin: httpx.AsyncClient) -> None:
    agent_id = new_agent_id()
    await create_agent(admin, agent_id, instructions="v1")
    for n in range(2, 6):
        edited = await admin.patch(f"{API}/{agent_id}", json={"instructions": f"v{n}"})
        assert edited.json()["version"] == n

    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await admin.get(f"{API}/{agent_id}/versions", params=params)).json()
        seen += [v["version"] for v in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1]
    one = (await admin.get(f"{API}/{agent_id}/versions/2")).json()
    assert (one["version"], one["instructions"], one["author"]) == (2, "v2", "admin")
    assert (await admin.get(f"{API}/{agent_id}/versions/99")).status_code == 404
    bad_cursor = await admin.get(f"{API}/{agent_id}/versions", params={"cursor": "abc"})
    assert bad_cursor.status_code == 400

    rolled = await admin.post(f"{API}/{agent_id}/rollback", json={"version": 2})
    assert rolled.status_code == 200, rolled.text
    assert (rolled.json()["version"], rolled.json()["instructions"]) == (6, "v2")
    newest = (await admin.get(f"{API}/{agent_id}/versions", params={"limit": 1})).json()
    assert newest["items"][0]["note"] == "rollback to 2"
    same = await admin.post(f"{API}/{agent_id}/rollback", json={"version": 2})
    assert same.json()["version"] == 6  # already equal: no new version
    assert (await admin.post(f"{API}/{agent_id}/rollback", json={"version": 42})).status_code == 404


# --- voice.config.get -----------------------------------------------------------------


async def test_config_get_over_nats(
    service: ConfigSync,
    admin: httpx.AsyncClient,
    bus: tuple[Client, JetStreamContext],
    nats_server: NatsServer,
    worker_bus: Client,
) -> None:
    nc, _ = bus
    agent_id = new_agent_id()
    await create_agent(admin, agent_id, instructions="first")
    await admin.patch(f"{API}/{agent_id}", json={"instructions": "second"})

    found = await config_get(worker_bus, codec.encode(ConfigGetRequest(agent_id=agent_id)))
    assert isinstance(found, ConfigFound)
    assert isinstance(found.config, RuntimeConfig)
    assert (found.config.version, found.config.instructions) == (2, "second")

    missing = await config_get(worker_bus, codec.encode(ConfigGetRequest(agent_id=new_agent_id())))
    assert isinstance(missing, ConfigNotFound)

    too_new = await config_get(
        worker_bus, codec.encode(ConfigGetRequest(agent_id=agent_id, min_version=9))
    )
    assert too_new == ConfigGetError(error="version_unavailable", retryable=True)

    for garbage in (b"\x00\xffgarbage", b"{}", b'{"type":"config.get.v1","agent_id":5}'):
        assert await config_get(worker_bus, garbage) == ConfigGetError(
            error="bad_request", retryable=False
        )

    info = await nc.request(
        control_subject(ServiceVerb.INFO, name=SERVICE_NAME, id=None), b"", timeout=5
    )
    endpoints = msgspec.json.decode(info.data)["endpoints"]
    assert [e["subject"] for e in endpoints] == [subjects.CONFIG_GET, subjects.ROUTING_RESOLVE]

    # What an operator sees with the stock NATS CLI.
    cli = await asyncio.create_subprocess_exec(
        str(find_binary("nats")), "micro", "ls", "--json",
        stdout=asyncio.subprocess.PIPE, env={**os.environ, **nats_server.env(Role.OPERATOR)},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 0
    assert SERVICE_NAME in {entry["name"] for entry in json.loads(out)}

    health = await admin.get("/healthz")
    assert health.status_code == 200
    assert service.process.running()


async def test_a_second_replica_serves_the_first_ones_edits_at_once(
    service: ConfigSync, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Replica B caches v1; replica A commits v2; A's event evicts B's entry."""
    replica = start_config_sync(
        nats=service.nats,
        database_url=service.env["CONFIG_SYNC_DATABASE_URL"],
        log_dir=tmp_path,
        name="config-sync-b",
        encryption_keys=service.env["CONFIG_SYNC_ENCRYPTION_KEYS"],
    )
    agent_id = new_agent_id()
    try:
        async with httpx.AsyncClient(base_url=replica.base_url, headers=auth(RUNTIME_TOKEN)) as b:
            await create_agent(admin, agent_id, instructions="v1")
            url = f"{API}/{agent_id}/runtime-config"
            assert codec.decode_runtime_config((await b.get(url)).content).version == 1
            await admin.patch(f"{API}/{agent_id}", json={"instructions": "v2"})
            deadline = time.monotonic() + 5
            while (config := codec.decode_runtime_config((await b.get(url)).content)).version < 2:
                assert time.monotonic() < deadline, "replica B kept serving v1"
                await asyncio.sleep(0.01)
            assert config.instructions == "v2"
    finally:
        assert replica.process.stop() == 0, replica.process.log_tail()


# --- durability -----------------------------------------------------------------------


async def test_restart_keeps_agents_and_versions(
    nats_server: NatsServer, database_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    postgres = (
        None if database_url.startswith("sqlite") else request.getfixturevalue("postgres_server")
    )
    url = fresh_database(database_url, postgres, tmp_path)
    agent_id = new_agent_id()
    first = start_config_sync(
        nats=nats_server.access(Role.CONFIG_SYNC), database_url=url, log_dir=tmp_path
    )
    try:
        async with httpx.AsyncClient(base_url=first.base_url, headers=auth(ADMIN_TOKEN)) as c:
            await create_agent(c, agent_id)
            assert (await c.patch(f"{API}/{agent_id}", json={"name": "Renamed"})).status_code == 200
    finally:
        assert first.process.stop() == 0, first.process.log_tail()

    second = start_config_sync(
        nats=nats_server.access(Role.CONFIG_SYNC),
        database_url=url,
        log_dir=tmp_path,
        name="config-sync-2",
    )
    try:
        async with httpx.AsyncClient(base_url=second.base_url, headers=auth(ADMIN_TOKEN)) as c:
            response = await c.get(f"{API}/{agent_id}")
            assert response.status_code == 200
            view = msgspec.json.decode(response.content, type=AgentView)
            assert (view.version, view.name) == (2, "Renamed")
            again = await c.patch(f"{API}/{agent_id}", json={"instructions": "after restart"})
            assert msgspec.json.decode(again.content, type=AgentView).version == 3
    finally:
        assert second.process.stop() == 0, second.process.log_tail()
