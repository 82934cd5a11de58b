"""Campaigns, campaign ↔ agent links, SIP numbers and ``voice.routing.resolve``, against a
real config_sync process per database backend and the session NATS server."""

import asyncio
from collections import Counter
from typing import Any

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from core_voice_contracts import codec, subjects
from core_voice_contracts.admin_api import (
    AgentVersionPage,
    AgentView,
    CampaignAgentPage,
    CampaignAgentView,
    CampaignPage,
    NumberView,
)
from core_voice_contracts.events import ChangeKind, ConfigChanged, ConfigFound, RejectReason
from core_voice_contracts.routing import (
    RouteError,
    RouteRejected,
    RouteRequest,
    RouteResolved,
    Target,
    goes_to_legacy,
    pick_weighted,
)
from core_voice_contracts.rpc import get_runtime_config
from tests.harness.config_sync import RUNTIME_TOKEN, ConfigSync
from tests.harness.config_sync_api import (
    API,
    CAMPAIGNS,
    TRUNKS,
    allow_legacy,
    assign_trunk,
    auth,
    create_agent,
    create_campaign,
    error_of,
    link,
    new_agent_id,
    new_number,
    numbers,
    route,
)

pytestmark = pytest.mark.integration


async def test_campaign_overrides_merge_into_runtime_config_and_version_the_agent(
    admin: httpx.AsyncClient,
    bus: tuple[Client, JetStreamContext],
    service: ConfigSync,
    worker_bus: Client,
) -> None:
    nc, _ = bus
    agent_id = new_agent_id()
    events: asyncio.Queue[ConfigChanged] = asyncio.Queue()

    async def on_event(msg: Msg) -> None:
        await events.put(codec.decode_config_event(msg.data))

    sub = await nc.subscribe(subjects.config_changed(agent_id), cb=on_event)
    await create_agent(admin, agent_id, instructions="Base.", greeting="Hello.")
    campaign_id = await create_campaign(admin)
    overrides = {"greeting": "Spring sale!", "tts": {"voice": "en-gb", "options": {"pitch": 40}}}
    linked = await link(admin, campaign_id, agent_id, weight=5, overrides=overrides)
    assert linked.status_code == 200, linked.text
    view = msgspec.json.decode(linked.content, type=CampaignAgentView)
    assert (view.weight, view.overrides.greeting) == (5, "Spring sale!")

    found = await get_runtime_config(worker_bus, agent_id, campaign_id=campaign_id)
    assert isinstance(found, ConfigFound)
    merged = found.config
    assert (merged.version, merged.campaign_id) == (2, campaign_id)
    assert (merged.instructions, merged.greeting) == ("Base.", "Spring sale!")
    assert (merged.tts.voice, merged.tts.options) == ("en-gb", {"pitch": 40})
    own = await get_runtime_config(worker_bus, agent_id)
    assert isinstance(own, ConfigFound) and own.config.greeting == "Hello."
    other = await get_runtime_config(worker_bus, agent_id, campaign_id="not-linked")
    assert isinstance(other, ConfigFound) and other.config.campaign_id is None

    over_http = await admin.get(
        f"{API}/{agent_id}/runtime-config", params={"campaign_id": campaign_id}
    )
    assert codec.decode_runtime_config(over_http.content).greeting == "Spring sale!"

    # The link gave the agent version 2 (kind campaign); a weight change moves routing only.
    assert await link(admin, campaign_id, agent_id, weight=9, overrides=overrides)
    new_overrides = {**overrides, "greeting": "Summer sale!"}
    assert (await link(admin, campaign_id, agent_id, weight=9, overrides=new_overrides)).is_success
    refreshed = await get_runtime_config(worker_bus, agent_id, campaign_id=campaign_id)
    assert isinstance(refreshed, ConfigFound)
    assert (refreshed.config.version, refreshed.config.greeting) == (3, "Summer sale!")

    unlinked = await admin.delete(f"{CAMPAIGNS}/{campaign_id}/agents/{agent_id}")
    assert unlinked.status_code == 204
    received = [await asyncio.wait_for(events.get(), 5) for _ in range(4)]
    assert [(e.version, e.kind, e.campaign_id) for e in received] == [
        (1, ChangeKind.CREATED, None),
        (2, ChangeKind.CAMPAIGN, campaign_id),
        (3, ChangeKind.CAMPAIGN, campaign_id),
        (4, ChangeKind.CAMPAIGN, campaign_id),
    ]
    versions = await admin.get(f"{API}/{agent_id}/versions")
    page = msgspec.json.decode(versions.content, type=AgentVersionPage)
    assert [(v.version, v.note) for v in page.items][:2] == [
        (4, f"campaign {campaign_id}"),
        (3, f"campaign {campaign_id}"),
    ]
    await sub.unsubscribe()


async def test_links_are_validated_as_the_merged_config(admin: httpx.AsyncClient) -> None:
    agent_id = new_agent_id()
    await create_agent(admin, agent_id)
    campaign_id = await create_campaign(admin)
    cases = {
        "overrides.tts.voice": {"tts": {"provider": "openai", "voice": "robot"}},
        "overrides.keys.groq": {"llm": {"provider": "groq"}},
        "overrides.stt.options.phrase": {"stt": {"options": {"phrase": ["typo"]}}},
    }
    for field, overrides in cases.items():
        refused = await link(admin, campaign_id, agent_id, overrides=overrides)
        assert refused.status_code == 422, (field, refused.text)
        assert field in error_of(refused).detail
    unknown_field = await link(admin, campaign_id, agent_id, overrides={"greting": "x"})
    assert unknown_field.status_code == 422 and "greting" in error_of(unknown_field).detail
    assert (await link(admin, campaign_id, "no-such-agent")).status_code == 404
    assert (await link(admin, "no-such-campaign", agent_id)).status_code == 404
    negative = await link(admin, campaign_id, agent_id, weight=-1)
    assert negative.status_code == 422

    # An agent edit that would break a campaign's merge is refused, naming the campaign.
    assert (
        await link(admin, campaign_id, agent_id, overrides={"tts": {"voice": "en-gb"}})
    ).is_success
    breaking = await admin.patch(
        f"{API}/{agent_id}",
        json={
            "tts": {"provider": "openai", "voice": "alloy"},
            "keys": {"openai": "sk-proj-000000000001"},
        },
    )
    assert breaking.status_code == 422
    assert f"campaign {campaign_id}: tts.voice" in error_of(breaking).detail


async def test_campaign_crud_pagination_and_in_use_protection(admin: httpx.AsyncClient) -> None:
    created = [await create_campaign(admin, description="d") for _ in range(3)]
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = msgspec.json.decode(
            (await admin.get(CAMPAIGNS, params=params)).content, type=CampaignPage
        )
        seen += [c.id for c in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert set(created) <= set(seen) and seen == sorted(seen) and len(seen) == len(set(seen))

    campaign_id = created[0]
    paused = await admin.patch(f"{CAMPAIGNS}/{campaign_id}", json={"status": "paused", "name": "P"})
    assert (paused.status_code, paused.json()["status"], paused.json()["name"]) == (
        200,
        "paused",
        "P",
    )
    assert (await admin.patch(f"{CAMPAIGNS}/{campaign_id}", json={})).status_code == 422
    duplicate = await admin.post(CAMPAIGNS, json={"id": campaign_id, "name": "again"})
    assert (duplicate.status_code, error_of(duplicate).error) == (409, "campaign_exists")

    agent_id = new_agent_id()
    await create_agent(admin, agent_id)
    assert (await link(admin, campaign_id, agent_id)).is_success
    links = await admin.get(f"{CAMPAIGNS}/{campaign_id}/agents")
    assert [
        x.agent_id for x in msgspec.json.decode(links.content, type=CampaignAgentPage).items
    ] == [agent_id]
    number, trunk = new_number(), await assign_trunk(admin)
    mapped = await admin.put(f"{numbers(trunk)}/{number}", json={"campaign_id": campaign_id})
    assert mapped.is_success

    in_use = await admin.delete(f"{CAMPAIGNS}/{campaign_id}")
    assert (in_use.status_code, error_of(in_use).error) == (409, "in_use")
    assert number in error_of(in_use).detail
    agent_in_use = await admin.delete(f"{API}/{agent_id}")
    assert (agent_in_use.status_code, error_of(agent_in_use).error) == (409, "in_use")

    assert (await admin.delete(f"{numbers(trunk)}/{number}")).status_code == 204
    assert (await admin.delete(f"{CAMPAIGNS}/{campaign_id}")).status_code == 204
    assert (await admin.get(f"{CAMPAIGNS}/{campaign_id}")).status_code == 404
    agent = msgspec.json.decode((await admin.get(f"{API}/{agent_id}")).content, type=AgentView)
    assert agent.version == 3  # linked (2), campaign deleted (3)
    assert (await admin.delete(f"{API}/{agent_id}")).status_code == 204
    assert (await admin.get(f"{API}/{agent_id}")).status_code == 404
    reused = await admin.post(API, json={"id": agent_id, "name": "again"})
    assert (reused.status_code, error_of(reused).error) == (409, "agent_exists")


async def test_numbers_map_to_one_target_per_trunk(admin: httpx.AsyncClient) -> None:
    agent_id = new_agent_id()
    await create_agent(admin, agent_id)
    number, trunk = new_number(), await assign_trunk(admin)
    mapped = await admin.put(f"{numbers(trunk)}/{number}", json={"agent_id": agent_id})
    assert mapped.status_code == 200, mapped.text
    view = msgspec.json.decode(mapped.content, type=NumberView)
    assert (view.number, view.trunk_id, view.agent_id, view.campaign_id) == (
        number,
        trunk,
        agent_id,
        None,
    )
    assert (await admin.get(f"{numbers(trunk)}/{number}")).json()["agent_id"] == agent_id
    assert [n["number"] for n in (await admin.get(numbers(trunk))).json()["items"]] == [number]
    for body in ({}, {"agent_id": agent_id, "campaign_id": "x"}):
        both = await admin.put(f"{numbers(trunk)}/{number}", json=body)
        assert both.status_code == 422, both.text
    missing = await admin.put(f"{numbers(trunk)}/{number}", json={"agent_id": "ghost"})
    assert missing.status_code == 422 and "agent_id" in error_of(missing).detail
    not_e164 = await admin.put(f"{numbers(trunk)}/5551234", json={"agent_id": agent_id})
    assert not_e164.status_code == 422 and "number" in error_of(not_e164).detail
    assert (await admin.get(f"{numbers(trunk)}/not-a-number")).status_code == 404
    unassigned = await admin.put(f"{numbers('ST_nobody')}/{number}", json={"agent_id": agent_id})
    assert (unassigned.status_code, error_of(unassigned).error) == (404, "trunk_not_found")


async def test_routing_resolves_agents_campaigns_numbers_and_legacy_share(
    admin: httpx.AsyncClient, bus: tuple[Client, JetStreamContext]
) -> None:
    nc, _ = bus
    a, b, off = new_agent_id(), new_agent_id(), new_agent_id()
    await create_agent(admin, a)
    await create_agent(admin, b)
    await create_agent(admin, off, status="disabled")

    direct = await route(nc, room_key="r-1", agent_id=a)
    assert direct == RouteResolved(agent_id=a, tenant_id="default", via="agent")
    assert await route(nc, room_key="r-1", agent_id="ghost") == RouteRejected(
        reason=RejectReason.UNKNOWN_AGENT
    )
    assert await route(nc, room_key="r-1", agent_id=off) == RouteRejected(
        reason=RejectReason.DISABLED_AGENT
    )
    assert isinstance(await route(nc, room_key="r-1"), RouteRejected)

    campaign_id = await create_campaign(admin)
    empty = await route(nc, room_key="r-1", campaign_id=campaign_id)
    assert isinstance(empty, RouteRejected) and empty.reason == RejectReason.NO_ROUTE
    for agent_id, weight in ((a, 3), (b, 1), (off, 50)):
        assert (await link(admin, campaign_id, agent_id, weight=weight)).is_success

    picks: Counter[str] = Counter()
    for i in range(200):
        room = f"room-{i}"
        reply = await route(nc, room_key=room, campaign_id=campaign_id)
        assert isinstance(reply, RouteResolved), reply
        assert reply.agent_id == pick_weighted(room, [(a, 3), (b, 1)])  # disabled one skipped
        assert (reply.campaign_id, reply.via) == (campaign_id, "campaign")
        picks[reply.agent_id] += 1
    assert picks[off] == 0 and picks[a] > picks[b] > 0

    number, trunk = new_number(), await assign_trunk(admin)
    mapped = await admin.put(f"{numbers(trunk)}/{number}", json={"campaign_id": campaign_id})
    assert mapped.is_success
    dialed = await route(nc, room_key="room-7", dialed_number=number, trunk_id=trunk)
    assert isinstance(dialed, RouteResolved)
    assert (dialed.agent_id, dialed.campaign_id, dialed.via) == (
        pick_weighted("room-7", [(a, 3), (b, 1)]),
        campaign_id,
        "dialed_number",
    )
    unmapped = await route(nc, room_key="r", dialed_number=new_number(), trunk_id=trunk)
    assert isinstance(unmapped, RouteRejected) and unmapped.reason == RejectReason.NO_ROUTE
    for other in ({}, {"trunk_id": "ST_other"}):  # the number alone, or on another trunk
        refused = await route(nc, room_key="r", dialed_number=number, **other)
        assert isinstance(refused, RouteRejected) and refused.reason == RejectReason.NO_ROUTE

    assert (await admin.patch(f"{CAMPAIGNS}/{campaign_id}", json={"status": "paused"})).is_success
    paused = await route(nc, room_key="r", campaign_id=campaign_id)
    assert isinstance(paused, RouteRejected) and paused.reason == RejectReason.NO_ROUTE

    # Gradual migration: legacy_percent of the agent's rooms go to its old worker.
    await allow_legacy(admin, "old-a")
    refused = await admin.patch(f"{API}/{a}", json={"legacy_percent": 30})
    assert refused.status_code == 422 and "legacy_agent_name" in error_of(refused).detail
    migrating = await admin.patch(
        f"{API}/{a}", json={"legacy_agent_name": "old-a", "legacy_percent": 30}
    )
    assert migrating.status_code == 200
    view = msgspec.json.decode(migrating.content, type=AgentView)
    # Routing attributes change in place: the linked agent stays at version 2.
    assert (view.legacy_agent_name, view.legacy_percent, view.version) == ("old-a", 30, 2)
    targets: Counter[Target] = Counter()
    for i in range(100):
        room = f"mig-{i}"
        reply = await route(nc, room_key=room, agent_id=a)
        assert isinstance(reply, RouteResolved)
        legacy = goes_to_legacy(room, a, 30)
        assert reply.target == (Target.LEGACY if legacy else Target.POOL)
        assert reply.legacy_agent_name == ("old-a" if legacy else None)
        targets[reply.target] += 1
    assert 10 < targets[Target.LEGACY] < 50
    cleared = await admin.patch(f"{API}/{a}", json={"legacy_agent_name": None, "legacy_percent": 0})
    assert cleared.json()["legacy_agent_name"] is None

    bad = await nc.request(subjects.ROUTING_RESOLVE, b"not json", timeout=5)
    assert codec.decode_route_reply(bad.data) == RouteError(error="bad_request", retryable=False)
    raw = await nc.request(
        subjects.ROUTING_RESOLVE, codec.encode(RouteRequest(room_key="r", agent_id=b)), timeout=5
    )
    assert b"keys" not in raw.data  # routing replies never carry provider keys


async def test_runtime_token_reads_all_tenants_but_admin_api_needs_scope(
    service: ConfigSync, admin: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=service.base_url, headers=auth(RUNTIME_TOKEN)) as rt:
        assert (await rt.get(CAMPAIGNS)).status_code == 403
        assert (
            await rt.put(f"{numbers('ST_x')}/{new_number()}", json={"agent_id": "x"})
        ).status_code == 403
        assert (await rt.put(f"{TRUNKS}/ST_x", json={"tenant_id": "default"})).status_code == 403
        assert (await rt.get("/api/v1/providers")).status_code == 200
        who = (await rt.get("/api/v1/whoami")).json()
        assert (who["scope"], who["tenant_id"]) == ("runtime", None)
