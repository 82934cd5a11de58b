"""The whole product, end to end: create an agent, call it, edit it, call it again.

Real nats-server, livekit-server and the four services as separate processes; the
caller is the operators' synthetic-call command, speaking and listening through
LiveKit like a phone caller would. Nothing is restarted between the two calls.
"""

import asyncio
import io
import json
import re
import uuid
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core_voice_cli.calls import execute
from core_voice_cli.demo import demo_agent
from core_voice_cli.main import build_parser
from core_voice_cli.stack import Stack
from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import connect
from core_voice_contracts.events import CallEnded, CallEvent, CallStarted
from core_voice_contracts.permissions import Role
from core_voice_worker.speech import normalize
from tests.harness.nats import assert_no_permission_violations
from tests.harness.stack import ANSWER, ASK, GREETING_V1, GREETING_V2, api_client, call

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("e2e")) as running:
        yield running
    assert_no_permission_violations(running.log_dir)


async def call_events(stack: Stack, agent_id: str, want: int) -> list[CallEvent]:
    nc, js = await connect(stack.nats.access(Role.OPERATOR), name="e2e-reader", ensure=False)
    out: list[CallEvent] = []
    try:
        sub = await js.subscribe(subjects.calls_for_agent(agent_id), ordered_consumer=True)
        async with asyncio.timeout(20):
            while len(out) < want:
                out.append(codec.decode_call_event((await sub.next_msg(timeout=20)).data))
    finally:
        await nc.drain()
    return out


async def test_agent_greets_answers_and_an_edit_is_heard_on_the_next_call(stack: Stack) -> None:
    agent_id = f"e2e-{uuid.uuid4().hex[:8]}"
    agent = msgspec.structs.replace(demo_agent(), id=agent_id, greeting=GREETING_V1)
    async with api_client(stack) as client:
        created = await client.post("/api/v1/agents", content=msgspec.json.encode(agent))
        assert created.status_code == 201, created.text

    first = await call(stack, agent_id, f"e2e-1-{agent_id}")
    print(f"call 1: greeting {first.greeting_latency_s!r}s, replies {first.replies}")
    assert first.ok, first.error
    assert first.greeting_text == normalize(GREETING_V1)
    assert first.greeting_latency_s is not None and first.greeting_latency_s < 5.0
    assert [(r.said, r.heard) for r in first.replies] == [(ASK, normalize(ANSWER))]

    async with api_client(stack) as client:
        edited = await client.patch(
            f"/api/v1/agents/{agent_id}", content=json.dumps({"greeting": GREETING_V2})
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["version"] == 2

    second = await call(stack, agent_id, f"e2e-2-{agent_id}")
    print(f"call 2: greeting {second.greeting_latency_s!r}s, replies {second.replies}")
    assert second.ok, second.error
    assert second.greeting_text == normalize(GREETING_V2)
    assert [(r.said, r.heard) for r in second.replies] == [(ASK, normalize(ANSWER))]

    events = await call_events(stack, agent_id, 4)
    started = [e for e in events if isinstance(e, CallStarted)]
    ended = [e for e in events if isinstance(e, CallEnded)]
    assert sorted(e.config_version for e in started) == [1, 2]
    assert len(ended) == 2 and all(e.greeting_latency_s is not None for e in ended)
    assert all(e.turns >= 1 for e in ended)

    # `corevoice calls show` rebuilds a call's timeline from the same streams.
    shown = io.StringIO()
    args = build_parser().parse_args(["calls", "show", ended[0].call_id, "--json"])
    assert await execute(args, stack.nats.env(Role.OPERATOR), shown) == 0
    timeline = json.loads(shown.getvalue())
    steps = {step["name"]: step["at"] for step in timeline["steps"]}
    assert steps["joined"] and steps["greeting"] and steps["ended"], steps
    assert len(timeline["turns"]) >= 1 and re.fullmatch("[0-9a-f]{32}", timeline["trace_id"])

    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{stack.telemetry_url}/metrics")).text
    started_by_version = {
        sample.labels["config_version"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "corevoice_calls_started_total"
        and sample.labels["agent"] == agent_id
        and sample.labels["tenant"] == "default"
        and sample.labels["campaign"] == "none"
    }
    assert started_by_version == {"1": 1.0, "2": 1.0}
