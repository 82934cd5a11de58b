"""Agents for the benchmarks, created through config_sync's admin API like any operator's."""

from collections.abc import Sequence

import httpx
import msgspec

from core_voice_cli.stack import Stack
from core_voice_contracts.admin_api import AgentCreate


def admin(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.config_sync_url,
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        timeout=10,
        # uvicorn closes a connection idle for 5 s: never reuse one that old
        limits=httpx.Limits(keepalive_expiry=2.0),
    )


async def create_agents(stack: Stack, bodies: Sequence[AgentCreate]) -> list[str]:
    """Create each agent (raising on any refusal); their ids, in order."""
    ids: list[str] = []
    async with admin(stack) as client:
        for body in bodies:
            resp = await client.post(
                "/api/v1/agents",
                content=msgspec.json.encode(body),
                headers={"Content-Type": "application/json"},
            )
            resp.raise_for_status()
            ids.append(resp.json()["id"])
    return ids
