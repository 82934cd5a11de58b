"""What only an operator may do, and what one tenant must not learn or take from another,
against a real config_sync per backend (issue 9, tenancy).

- A number routes on its SIP trunk and number together; trunks are assigned by an
  operator, so a tenant cannot take another tenant's number, and the same number on two
  trunks routes to two tenants.
- ``legacy_agent_name`` must be on the tenant's operator-set list.
- Only operators mint runtime (key-reading) and operator tokens.
- A taken agent or campaign id gets the same 409 whichever tenant holds it.

The bootstrap admin token (``ADMIN_TOKEN``) is an operator; tenant ``acme`` is created
with the operator command and gets a plain admin token.
"""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from core_voice_contracts import codec
from core_voice_contracts.events import RejectReason
from core_voice_contracts.routing import RouteRejected, RouteResolved, Target
from tests.harness.config_sync import ConfigSync
from tests.harness.config_sync_api import (
    API,
    CAMPAIGNS,
    TRUNKS,
    assign_trunk,
    auth,
    create_agent,
    error_of,
    new_agent_id,
    new_number,
    numbers,
    route,
)

pytestmark = pytest.mark.integration

CANARY = "sk-canary-operators-only-5e1d"
OPENAI_LLM = {"provider": "openai", "model": "gpt-4o-mini"}


@pytest.fixture(scope="module")
def acme_token(service: ConfigSync) -> tuple[str, str]:
    """A second tenant and its (non-operator) admin token."""
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    return tenant, service.command("tenant", "create", tenant)["token"]


@pytest.fixture
async def acme(
    service: ConfigSync, acme_token: tuple[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.base_url, headers=auth(acme_token[1])) as c:
        yield c


async def test_a_tenant_cannot_take_another_tenants_number(
    admin: httpx.AsyncClient,
    acme: httpx.AsyncClient,
    acme_token: tuple[str, str],
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, _ = bus
    tenant = acme_token[0]
    ours, theirs = new_agent_id(), new_agent_id()
    await create_agent(admin, ours)
    await create_agent(acme, theirs)
    our_trunk, their_trunk = await assign_trunk(admin), await assign_trunk(admin, tenant)
    number = new_number()
    mapped = await admin.put(f"{numbers(our_trunk)}/{number}", json={"agent_id": ours})
    assert mapped.status_code == 200, mapped.text

    # acme can neither map our number on our trunk, nor give itself the trunk.
    grab = await acme.put(f"{numbers(our_trunk)}/{number}", json={"agent_id": theirs})
    assert (grab.status_code, error_of(grab).error) == (404, "trunk_not_found")
    for response in (
        await acme.put(f"{TRUNKS}/{our_trunk}", json={"tenant_id": tenant}),
        await acme.delete(f"{TRUNKS}/{our_trunk}"),
    ):
        assert response.status_code == 403, response.text
    assert (await acme.get(f"{TRUNKS}/{our_trunk}")).status_code == 404
    assert [t["id"] for t in (await acme.get(TRUNKS)).json()["items"]] == [their_trunk]
    assert (await acme.delete(f"{numbers(our_trunk)}/{number}")).status_code == 404

    # The same number on acme's own trunk is acme's: two trunks, two tenants.
    theirs_mapped = await acme.put(f"{numbers(their_trunk)}/{number}", json={"agent_id": theirs})
    assert theirs_mapped.status_code == 200, theirs_mapped.text
    on_ours = await route(nc, room_key="r-1", dialed_number=number, trunk_id=our_trunk)
    on_theirs = await route(nc, room_key="r-1", dialed_number=number, trunk_id=their_trunk)
    assert isinstance(on_ours, RouteResolved) and isinstance(on_theirs, RouteResolved)
    assert (on_ours.agent_id, on_ours.tenant_id) == (ours, "default")
    assert (on_theirs.agent_id, on_theirs.tenant_id) == (theirs, tenant)
    alone = await route(nc, room_key="r-1", dialed_number=number)  # no trunk: no route
    assert alone == RouteRejected(reason=RejectReason.NO_ROUTE, detail="no SIP trunk")

    # A held trunk answers exactly like one that was never assigned (nothing leaks).
    held = await acme.get(f"{numbers(our_trunk)}/{number}")
    moved = await admin.put(f"{TRUNKS}/{our_trunk}", json={"tenant_id": tenant})
    assert (moved.status_code, error_of(moved).error) == (409, "in_use")
    assert (await admin.delete(f"{TRUNKS}/{our_trunk}")).status_code == 204
    gone = await acme.get(f"{numbers(our_trunk)}/{number}")
    assert (held.status_code, held.content) == (gone.status_code, gone.content)
    unrouted = await route(nc, room_key="r-1", dialed_number=number, trunk_id=our_trunk)
    assert isinstance(unrouted, RouteRejected) and unrouted.reason == RejectReason.NO_ROUTE

    # Reassigned (now empty), the trunk is acme's to use.
    assert (await admin.put(f"{TRUNKS}/{our_trunk}", json={"tenant_id": tenant})).is_success
    taken = await acme.put(f"{numbers(our_trunk)}/{number}", json={"agent_id": theirs})
    assert taken.status_code == 200, taken.text
    assert (await admin.get(f"{TRUNKS}/{our_trunk}")).json()["tenant_id"] == tenant  # operator
    bad = await admin.put(f"{TRUNKS}/{our_trunk}", json={"tenant_id": "no-such-tenant"})
    assert bad.status_code == 422 and "tenant_id" in error_of(bad).detail


async def test_legacy_worker_names_come_from_the_operators_list(
    admin: httpx.AsyncClient,
    acme: httpx.AsyncClient,
    acme_token: tuple[str, str],
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, _ = bus
    tenant = acme_token[0]
    lists = f"/api/v1/tenants/{tenant}/legacy-agents"
    own = f"acme-legacy-{uuid.uuid4().hex[:6]}"
    foreign = f"default-legacy-{uuid.uuid4().hex[:6]}"  # another tenant's worker
    agent_id = new_agent_id()
    legacy = {"legacy_agent_name": foreign, "legacy_percent": 100}

    refused = await acme.post(API, json={"id": agent_id, "name": "A", **legacy})
    assert (refused.status_code, error_of(refused).error) == (422, "invalid_config")
    assert error_of(refused).detail.startswith("legacy_agent_name: not a legacy worker")
    for response in (
        await acme.put(lists, json={"names": [foreign]}),
        await acme.get(lists),
    ):
        assert response.status_code == 403, response.text

    assert (await admin.get(lists)).json() == {"tenant_id": tenant, "names": []}
    allowed = await admin.put(lists, json={"names": [own, own]})
    assert allowed.json() == {"tenant_id": tenant, "names": [own]}
    await create_agent(acme, agent_id, legacy_agent_name=own, legacy_percent=100)
    switched = await acme.patch(f"{API}/{agent_id}", json={"legacy_agent_name": foreign})
    assert switched.status_code == 422 and "legacy_agent_name" in error_of(switched).detail
    on_legacy = await route(nc, room_key="r-legacy", agent_id=agent_id)
    assert isinstance(on_legacy, RouteResolved)
    assert (on_legacy.target, on_legacy.legacy_agent_name) == (Target.LEGACY, own)

    # Taken off the list: the agent's rooms go to the pool at once.
    assert (await admin.put(lists, json={"names": []})).is_success
    on_pool = await route(nc, room_key="r-legacy", agent_id=agent_id)
    assert isinstance(on_pool, RouteResolved)
    assert (on_pool.target, on_pool.legacy_agent_name) == (Target.POOL, None)
    again = await acme.patch(f"{API}/{agent_id}", json={"legacy_percent": 50})
    assert again.status_code == 422 and "legacy_agent_name" in error_of(again).detail
    cleared = await acme.patch(
        f"{API}/{agent_id}", json={"legacy_agent_name": None, "legacy_percent": 0}
    )
    assert cleared.status_code == 200, cleared.text

    for bad in ({"names": ["has space"]}, {"names": "x"}, {"names": ["x"] * 101}, {}):
        invalid = await admin.put(lists, json=bad)
        assert invalid.status_code == 422, (bad, invalid.text)
    unknown = await admin.put("/api/v1/tenants/no-such-tenant/legacy-agents", json={"names": []})
    assert (unknown.status_code, error_of(unknown).error) == (404, "tenant_not_found")


async def test_only_operators_mint_runtime_and_operator_tokens(
    service: ConfigSync, admin: httpx.AsyncClient, acme: httpx.AsyncClient
) -> None:
    keyed = new_agent_id()
    await create_agent(acme, keyed, llm=OPENAI_LLM, keys={"openai": CANARY})
    for scope in ("runtime", "operator"):
        refused = await acme.post("/api/v1/tokens", json={"name": "x", "scope": scope})
        assert (refused.status_code, error_of(refused).error) == (403, "forbidden"), scope
        assert scope in error_of(refused).detail
    minted = await acme.post("/api/v1/tokens", json={"name": "ci", "scope": "admin"})
    assert minted.status_code == 201  # a tenant admin still mints admin and read tokens
    async with httpx.AsyncClient(
        base_url=service.base_url, headers=auth(minted.json()["token"])
    ) as ci:
        assert (
            await ci.post("/api/v1/tokens", json={"name": "x", "scope": "runtime"})
        ).status_code == 403
        assert (await ci.put(f"{TRUNKS}/ST_x", json={"tenant_id": "default"})).status_code == 403
        preview = await ci.get(f"{API}/{keyed}/runtime-config")
        assert codec.decode_runtime_config(preview.content).keys.values == {}

    # An operator may: the runtime token reads its (the operator's own) tenant's keys.
    ours = new_agent_id()
    await create_agent(admin, ours, llm=OPENAI_LLM, keys={"openai": CANARY})
    runtime = await admin.post("/api/v1/tokens", json={"name": "workers", "scope": "runtime"})
    assert runtime.status_code == 201 and runtime.json()["info"]["tenant_id"] == "default"
    async with httpx.AsyncClient(
        base_url=service.base_url, headers=auth(runtime.json()["token"])
    ) as rt:
        served = await rt.get(f"{API}/{ours}/runtime-config")
        assert codec.decode_runtime_config(served.content).keys.get("openai") == CANARY
        assert (await rt.get(f"{API}/{keyed}/runtime-config")).status_code == 404

    # Operator tokens are minted by an operator or the operator command, and act as one.
    made = service.command(
        "token", "create", "--scope", "operator", "--name", "ops", "--tenant", "default"
    )
    async with httpx.AsyncClient(base_url=service.base_url, headers=auth(made["token"])) as ops:
        assert (await ops.get("/api/v1/whoami")).json()["scope"] == "operator"
        trunk = f"ST_{uuid.uuid4().hex[:10]}"
        assert (await ops.put(f"{TRUNKS}/{trunk}", json={"tenant_id": "default"})).is_success
        again = await ops.post("/api/v1/tokens", json={"name": "ops2", "scope": "operator"})
        assert again.status_code == 201
    assert (await admin.get("/api/v1/whoami")).json()["scope"] == "operator"


async def test_a_taken_id_answers_the_same_whichever_tenant_holds_it(
    admin: httpx.AsyncClient, acme: httpx.AsyncClient
) -> None:
    """Ids are global (NATS subjects carry agent ids), so a taken id is a 409; its body
    is identical for the holder, another tenant and a deleted agent's reserved id."""
    agent_id, deleted = new_agent_id(), new_agent_id()
    await create_agent(admin, agent_id)
    await create_agent(acme, deleted)
    assert (await acme.delete(f"{API}/{deleted}")).status_code == 204
    campaign_id = f"c-{uuid.uuid4().hex[:10]}"
    assert (await admin.post(CAMPAIGNS, json={"id": campaign_id, "name": "C"})).status_code == 201

    for path, held, body in (
        (API, agent_id, {"id": agent_id, "name": "again"}),
        (CAMPAIGNS, campaign_id, {"id": campaign_id, "name": "again"}),
    ):
        by_holder = await admin.post(path, json=body)
        by_other = await acme.post(path, json=body)
        assert by_holder.status_code == by_other.status_code == 409
        assert by_holder.content == by_other.content, (by_holder.text, by_other.text)
        assert "default" not in by_other.text and "tenant" not in by_other.text
        assert held in by_other.text
    reserved_for_them = await acme.post(API, json={"id": deleted, "name": "again"})
    reserved_for_us = await admin.post(API, json={"id": deleted, "name": "again"})
    assert reserved_for_them.content == reserved_for_us.content
    assert reserved_for_us.status_code == 409
