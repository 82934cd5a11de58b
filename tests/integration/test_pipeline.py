"""Webhook → JetStream → dispatch → LiveKit, and the metrics of it, on real servers.

A real livekit-server posts real webhooks to the dispatcher; config_sync, dispatcher and
telemetry run as separate processes (the voice worker is not needed here). The
dispatcher's own behaviour (bad input, replays, routing, crashes) is tested in the
``test_dispatcher_*`` modules.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import msgspec
import pytest
from livekit import api
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from core_voice_cli.demo import demo_agent
from core_voice_cli.stack import Stack
from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import connect
from core_voice_contracts.events import (
    JobDispatched,
    JobRequested,
)
from core_voice_contracts.permissions import Role
from tests.harness.events import job_events
from tests.harness.stack import livekit_api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("stack"), worker=False) as running:
        yield running


@pytest.fixture
async def lk(stack: Stack) -> AsyncIterator[api.LiveKitAPI]:
    async with livekit_api(stack) as client:
        yield client


@pytest.fixture
async def js(stack: Stack) -> AsyncIterator[JetStreamContext]:
    nc, js = await connect(stack.nats.access(Role.OPERATOR), name="test-pipeline")
    try:
        yield js
    finally:
        await nc.drain()


def admin(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.config_sync_url,
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        timeout=10,
    )


def create_agent(stack: Stack, agent_id: str) -> None:
    body = msgspec.structs.replace(demo_agent(), id=agent_id, name=f"agent {agent_id}")
    with admin(stack) as client:
        resp = client.post(
            "/api/v1/agents",
            content=msgspec.json.encode(body),
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 201, resp.text


async def test_room_naming_an_agent_is_dispatched_to_the_worker_pool(
    stack: Stack, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = f"a-{uuid.uuid4().hex[:8]}"
    create_agent(stack, agent_id)
    room = f"room-{agent_id}"
    await lk.room.create_room(
        api.CreateRoomRequest(
            name=room, metadata=json.dumps({"agent_id": agent_id, "lead_id": "L1"})
        )
    )

    requested, dispatched = await job_events(
        js, subjects.job_requested(agent_id), 1
    ) + await job_events(js, subjects.job_dispatched(agent_id), 1)
    assert isinstance(requested, JobRequested) and requested.room_name == room
    assert requested.lead_id == "L1" and requested.trigger == "room_started"
    assert isinstance(dispatched, JobDispatched) and dispatched.job_id == requested.job_id
    assert dispatched.worker_agent_name == "core-voice" and not dispatched.already_existed

    # LiveKit really holds the dispatch, with the job as its metadata.
    # (LiveKit also lists its implicit dispatch for unnamed workers, agent_name "".)
    dispatches = [d for d in await lk.agent_dispatch.list_dispatch(room) if d.agent_name]
    assert [d.agent_name for d in dispatches] == ["core-voice"]
    job = codec.decode_job_event(dispatches[0].metadata.encode())
    assert isinstance(job, JobRequested)
    # The dispatch's copy carries the dispatch span's context: the call joins the trace.
    assert msgspec.structs.replace(job, traceparent="") == requested
    assert len(job.traceparent.split("-")[1]) == 32


async def test_metrics_count_jobs_by_agent(
    stack: Stack, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = f"m-{uuid.uuid4().hex[:8]}"
    create_agent(stack, agent_id)
    for i in range(2):
        await lk.room.create_room(
            api.CreateRoomRequest(
                name=f"m{i}-{agent_id}", metadata=json.dumps({"agent_id": agent_id})
            )
        )
    await job_events(js, subjects.job_dispatched(agent_id), 2)
    # The agent was routed (config_sync announced it), so it has its own label.
    labels = (("agent", agent_id), ("campaign", "none"), ("tenant", "default"))
    want = {
        ("corevoice_jobs_requested_total", labels): 2.0,
        ("corevoice_jobs_dispatched_total", tuple(sorted((*labels, ("target", "pool"))))): 2.0,
    }
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    async with httpx.AsyncClient() as client:
        for _ in range(50):
            text = (await client.get(f"{stack.telemetry_url}/metrics")).text
            found = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.labels.get("agent") == agent_id
            }
            if want.items() <= found.items():
                break
            await asyncio.sleep(0.1)
    assert want.items() <= found.items(), found
