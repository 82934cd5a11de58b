"""Tenants, scoped tokens and provider keys, against a real config_sync per backend.

A token sees only its tenant (another tenant's agent is a 404). Provider keys are
write-only, delivered only to runtime callers, sealed at rest, and a recognisable key
seeded through the API appears nowhere the service emits: logs, bus traffic, API
responses, error messages, the database files. Rotating the master key re-encrypts
while the service keeps serving.
"""

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from core_voice_cli.servers import NatsServer, PostgresServer
from core_voice_contracts import codec
from core_voice_contracts.admin_api import AgentPage, AgentView, TokenCreated, TokenPage
from core_voice_contracts.bus import connect
from core_voice_contracts.events import ConfigFound
from core_voice_contracts.permissions import Role
from core_voice_contracts.rpc import get_runtime_config
from tests.harness.config_sync import (
    ADMIN_TOKEN,
    RUNTIME_TOKEN,
    ConfigSync,
    fresh_database,
    keyring,
    start_config_sync,
)
from tests.harness.config_sync_api import (
    API,
    assign_trunk,
    auth,
    create_agent,
    error_of,
    new_agent_id,
    new_number,
    numbers,
)

pytestmark = pytest.mark.integration

CANARY = "sk-canary-CORE-VOICE-do-not-leak-7a1f"
OPENAI_LLM = {"provider": "openai", "model": "gpt-4o-mini"}


def client_for(service: ConfigSync, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=service.base_url, headers=auth(token))


async def test_a_token_sees_only_its_tenant(service: ConfigSync, admin: httpx.AsyncClient) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    acme_admin = service.command("tenant", "create", tenant, "--name", "ACME")["token"]
    acme_runtime = service.command(
        "token", "create", "--scope", "runtime", "--name", "acme workers", "--tenant", tenant
    )["token"]
    theirs, ours = new_agent_id(), new_agent_id()
    await create_agent(admin, ours)
    async with client_for(service, acme_admin) as acme:
        created = await create_agent(acme, theirs, llm=OPENAI_LLM, keys={"openai": CANARY})
        assert created.tenant_id == tenant
        listed = msgspec.json.decode((await acme.get(API)).content, type=AgentPage)
        assert [a.id for a in listed.items] == [theirs]
        for response in (
            await acme.get(f"{API}/{ours}"),
            await acme.patch(f"{API}/{ours}", json={"name": "mine now"}),
            await acme.delete(f"{API}/{ours}"),
            await acme.get(f"{API}/{ours}/versions"),
            await acme.get(f"{API}/{ours}/versions/1"),
            await acme.post(f"{API}/{ours}/rollback", json={"version": 1}),
            await acme.get(f"{API}/{ours}/runtime-config"),
        ):
            assert response.status_code == 404, response.text
            assert error_of(response).error == "agent_not_found"
        campaign = await acme.post("/api/v1/campaigns", json={"name": "theirs"})
        campaign_id = campaign.json()["id"]
        number, trunk = new_number(), await assign_trunk(admin, tenant)
        assert (await acme.put(f"{numbers(trunk)}/{number}", json={"agent_id": theirs})).is_success

    for response in (
        await admin.get(f"{API}/{theirs}"),
        await admin.get(f"{API}/{theirs}/runtime-config"),
        await admin.get(f"/api/v1/campaigns/{campaign_id}"),
        await admin.put(f"/api/v1/campaigns/{campaign_id}/agents/{ours}", json={}),
        await admin.get(f"{numbers(trunk)}/{number}"),
        # Their trunk is not ours to map numbers on (it used to be: first claim won).
        await admin.put(f"{numbers(trunk)}/{number}", json={"agent_id": ours}),
    ):
        assert response.status_code == 404, response.text
    cross = await admin.put(
        f"{numbers(await assign_trunk(admin))}/{new_number()}", json={"agent_id": theirs}
    )
    assert cross.status_code == 422

    async with client_for(service, acme_runtime) as runtime:
        mine = await runtime.get(f"{API}/{theirs}/runtime-config")
        assert codec.decode_runtime_config(mine.content).keys.get("openai") == CANARY
        assert (await runtime.get(f"{API}/{ours}/runtime-config")).status_code == 404
        assert (await runtime.patch(f"{API}/{theirs}", json={"name": "x"})).status_code == 403
    async with client_for(service, RUNTIME_TOKEN) as platform:  # the shared worker pool
        assert (await platform.get(f"{API}/{theirs}/runtime-config")).status_code == 200
        assert (await platform.get(f"{API}/{ours}/runtime-config")).status_code == 200


async def test_tokens_are_scoped_listed_without_values_and_revocable(
    service: ConfigSync, admin: httpx.AsyncClient
) -> None:
    agent_id = new_agent_id()
    await create_agent(admin, agent_id, llm=OPENAI_LLM, keys={"openai": CANARY})
    made = await admin.post("/api/v1/tokens", json={"name": "dashboard", "scope": "read"})
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    created = msgspec.json.decode(made.content, type=TokenCreated)
    assert created.token.startswith("cvt_") and created.info.last4 == created.token[-4:]
    assert created.token not in repr(created)

    async with client_for(service, created.token) as reader:
        assert (await reader.get(f"{API}/{agent_id}")).status_code == 200
        assert (await reader.patch(f"{API}/{agent_id}", json={"name": "x"})).status_code == 403
        assert (
            await reader.post("/api/v1/tokens", json={"name": "x", "scope": "admin"})
        ).status_code == 403
        preview = await reader.get(f"{API}/{agent_id}/runtime-config")
        assert (
            preview.status_code == 200
            and codec.decode_runtime_config(preview.content).keys.values == {}
        )

        listed = msgspec.json.decode((await admin.get("/api/v1/tokens")).content, type=TokenPage)
        assert created.info.id in [t.id for t in listed.items]
        assert created.token not in (await admin.get("/api/v1/tokens")).text

        assert (await admin.delete(f"/api/v1/tokens/{created.info.id}")).status_code == 204
        assert (await reader.get(f"{API}/{agent_id}")).status_code == 401
        assert (await admin.delete(f"/api/v1/tokens/{created.info.id}")).status_code == 404

    bad_scope = await admin.post("/api/v1/tokens", json={"name": "x", "scope": "root"})
    assert bad_scope.status_code == 422


async def test_provider_keys_are_write_only_and_never_leak(
    *,
    service: ConfigSync,
    admin: httpx.AsyncClient,
    nats_server: NatsServer,
    database_url: str,
    request: pytest.FixtureRequest,
    worker_bus: Client,
) -> None:
    """Seed a recognisable key, exercise everything, then look for it everywhere."""
    nc, _ = await connect(nats_server.access(Role.OPERATOR), name="leak-scan", ensure=False)
    seen_on_bus: list[bytes] = []

    async def capture(msg: Msg) -> None:
        seen_on_bus.append(msg.subject.encode() + b" " + msg.data + repr(msg.headers).encode())

    everything = await nc.subscribe(">", cb=capture)
    responses: list[httpx.Response] = []
    agent_id = new_agent_id()
    try:
        body: dict[str, Any] = {
            "id": agent_id,
            "name": "Keyed",
            "llm": OPENAI_LLM,
            "keys": {"openai": CANARY},
        }
        responses.append(await admin.post(API, json=body))
        assert responses[-1].status_code == 201
        view = msgspec.json.decode(responses[-1].content, type=AgentView)
        assert [(k.provider, k.last4) for k in view.keys] == [("openai", CANARY[-4:])]
        for call in (
            admin.get(f"{API}/{agent_id}"),
            admin.get(API),
            admin.get(f"{API}/{agent_id}/versions"),
            admin.get(f"{API}/{agent_id}/runtime-config"),  # admin: a preview without keys
            admin.patch(f"{API}/{agent_id}", json={"instructions": "v2"}),
            admin.patch(f"{API}/{agent_id}", json={"keys": {"openai": CANARY + "-rotated"}}),
            admin.post(f"{API}/{agent_id}/rollback", json={"version": 1}),
            admin.post(f"{API}/{agent_id}/rollback", json={"version": 1, "restore_keys": True}),
            # Bad input carrying the key: refused, and the error must not echo it.
            admin.patch(f"{API}/{agent_id}", json={"keys": {"openai": CANARY}, "bogus": 1}),
            admin.patch(f"{API}/{agent_id}", json={"keys": {"openai": CANARY + " spaced"}}),
            admin.patch(f"{API}/{agent_id}", json={"keys": {"openai": [CANARY]}}),
            admin.patch(f"{API}/{agent_id}", json={"keys": {"nosuchprovider": CANARY}}),
            admin.post(API, json={**body, "id": agent_id}),
            admin.post(
                API,
                json={"name": "x", "llm": {"provider": "openai", "options": {"api_key": CANARY}}},
            ),
            admin.patch(
                f"{API}/{agent_id}", content=b'{"keys": {"openai": "' + CANARY.encode() + b'"'
            ),
        ):
            responses.append(await call)
        statuses = [r.status_code for r in responses]
        assert statuses[:9] == [201, 200, 200, 200, 200, 200, 200, 200, 200], statuses
        assert all(400 <= s < 500 for s in statuses[9:]), statuses
        await asyncio.sleep(0.5)  # let the relay publish every change
    finally:
        await everything.unsubscribe()

    def leaks(text: str | bytes) -> bool:
        data = text.encode() if isinstance(text, str) else text
        return CANARY.encode() in data

    assert not [r.request.url for r in responses if leaks(r.content) or leaks(str(r.headers))]
    assert seen_on_bus and not [m[:120] for m in seen_on_bus if leaks(m)]
    assert not leaks(service.process.log_path.read_bytes()), "the key is in the service log"
    assert not leaks((await admin.get("/schema/openapi.json")).content)

    # At rest: only sealed. Read the database the way an attacker with a copy would.
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite+aiosqlite:///"))
        for file in path.parent.glob(path.name + "*"):
            assert not leaks(file.read_bytes()), file
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        database = database_url.rsplit("/", 1)[1]
        for table in ("agent_configs", "agents", "outbox", "api_tokens", "campaign_agents"):
            dump = postgres.psql(f"COPY {table} TO STDOUT", database=database)
            assert not leaks(dump), table

    # Delivered to runtime callers, and to them only.
    found = await get_runtime_config(worker_bus, agent_id)
    assert isinstance(found, ConfigFound) and found.config.keys.get("openai") == CANARY
    assert CANARY not in repr(found) and CANARY not in str(found.config)
    async with client_for(service, RUNTIME_TOKEN) as runtime:
        delivered = await runtime.get(f"{API}/{agent_id}/runtime-config")
        assert codec.decode_runtime_config(delivered.content).keys.get("openai") == CANARY
    await nc.drain()

    deleted = await admin.patch(
        f"{API}/{agent_id}", json={"keys": {"openai": None}, "llm": {"provider": "scripted"}}
    )
    assert deleted.status_code == 200 and deleted.json()["keys"] == []


async def test_master_key_rotation_re_encrypts_without_downtime(
    nats_server: NatsServer,
    database_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    bus: tuple[Client, JetStreamContext],
) -> None:
    postgres = (
        None if database_url.startswith("sqlite") else request.getfixturevalue("postgres_server")
    )
    url = fresh_database(database_url, postgres, tmp_path)
    k1, k2 = keyring("k1"), keyring("k2")
    old = start_config_sync(
        nats=nats_server.access(Role.CONFIG_SYNC),
        database_url=url,
        log_dir=tmp_path,
        name="old",
        encryption_keys=k1,
    )
    agent_id = new_agent_id()
    replicas = [old]
    try:
        async with client_for(old, ADMIN_TOKEN) as c:
            await create_agent(c, agent_id, llm=OPENAI_LLM, keys={"openai": CANARY})
        # Step 1: a replica that seals with k2 and still opens k1 joins; the old one leaves.
        both = start_config_sync(
            nats=nats_server.access(Role.CONFIG_SYNC),
            database_url=url,
            log_dir=tmp_path,
            name="both",
            encryption_keys=f"{k2},{k1}",
        )
        replicas.append(both)
        assert old.process.stop() == 0
        # Step 2: re-encrypt while it serves.
        report = both.command("keys", "reencrypt")
        assert report["resealed"] >= 1 and report["versions_by_key_id"] == {
            "k2": report["resealed"]
        }
        async with client_for(both, RUNTIME_TOKEN) as rt:
            served = await rt.get(f"{API}/{agent_id}/runtime-config")
            assert codec.decode_runtime_config(served.content).keys.get("openai") == CANARY
        # Step 3: k1 is retired; a replica with k2 alone opens everything.
        new = start_config_sync(
            nats=nats_server.access(Role.CONFIG_SYNC),
            database_url=url,
            log_dir=tmp_path,
            name="new",
            encryption_keys=k2,
        )
        replicas.append(new)
        async with client_for(new, RUNTIME_TOKEN) as rt:
            served = await rt.get(f"{API}/{agent_id}/runtime-config")
            assert served.status_code == 200, served.text
            assert codec.decode_runtime_config(served.content).keys.get("openai") == CANARY
    finally:
        for replica in replicas:
            replica.process.stop()
