"""config_sync's admin HTTP API and route request as tests call them: paths, auth,
error bodies and small creators (agents, campaigns, trunks, numbers)."""

import asyncio
import time
import uuid
from typing import Any

import httpx
import msgspec
from nats.aio.client import Client

from core_voice_contracts.admin_api import AgentView, ErrorBody
from core_voice_contracts.routing import RouteRequest
from core_voice_contracts.rpc import resolve_route

API = "/api/v1/agents"
CAMPAIGNS = "/api/v1/campaigns"
TRUNKS = "/api/v1/trunks"


def new_agent_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(response: httpx.Response) -> ErrorBody:
    return msgspec.json.decode(response.content, type=ErrorBody)


async def create_agent(client: httpx.AsyncClient, agent_id: str, **fields: Any) -> AgentView:
    response = await client.post(API, json={"id": agent_id, "name": "Test agent", **fields})
    assert response.status_code == 201, response.text
    return msgspec.json.decode(response.content, type=AgentView)


async def create_campaign(client: httpx.AsyncClient, **fields: Any) -> str:
    campaign_id = f"c-{uuid.uuid4().hex[:10]}"
    response = await client.post(CAMPAIGNS, json={"id": campaign_id, "name": "C", **fields})
    assert response.status_code == 201, response.text
    return campaign_id


async def link(
    client: httpx.AsyncClient, campaign_id: str, agent_id: str, **body: Any
) -> httpx.Response:
    return await client.put(f"{CAMPAIGNS}/{campaign_id}/agents/{agent_id}", json=body)


def new_number() -> str:
    return f"+1555{uuid.uuid4().int % 10**7:07d}"


async def assign_trunk(operator: httpx.AsyncClient, tenant_id: str = "default") -> str:
    """A new SIP trunk assigned to ``tenant_id`` (``operator``: the bootstrap admin)."""
    trunk_id = f"ST_{uuid.uuid4().hex[:12]}"
    response = await operator.put(f"{TRUNKS}/{trunk_id}", json={"tenant_id": tenant_id})
    assert response.status_code == 200, response.text
    return trunk_id


def numbers(trunk_id: str) -> str:
    return f"{TRUNKS}/{trunk_id}/numbers"


async def allow_legacy(
    operator: httpx.AsyncClient, *names: str, tenant_id: str = "default"
) -> None:
    """Add ``names`` to the tenant's legacy worker list (``operator``: the bootstrap admin)."""
    path = f"/api/v1/tenants/{tenant_id}/legacy-agents"
    current = (await operator.get(path)).json()["names"]
    response = await operator.put(path, json={"names": sorted({*current, *names})})
    assert response.status_code == 200, response.text


async def route(nc: Client, **fields: Any) -> object:
    return await resolve_route(nc, RouteRequest(**fields), timeout=5)


async def wait_status(
    client: httpx.AsyncClient, path: str, status: int, timeout: float = 15
) -> None:
    deadline = time.monotonic() + timeout
    while (await client.get(path)).status_code != status:
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        await asyncio.sleep(0.1)
