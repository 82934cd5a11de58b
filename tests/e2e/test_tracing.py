"""One real call, one trace: every service's spans reach a real OTLP/HTTP receiver.

The whole stack runs as separate processes with the standard ``OTEL_*`` variables
pointing at `OtlpReceiver`; a synthetic caller calls an agent through LiveKit. The spans
of the dispatcher, config_sync, the worker's pool and its job process, and telemetry
must share one trace id, hang off the right parents (webhook -> publish JobRequested ->
dispatch -> call -> greeting/turns; CallEnded published under the call; telemetry's
apply under that publish), and nothing exported may hold a key, a token or a word said.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from core_voice_cli.demo import DEMO_RULES, demo_agent
from core_voice_cli.stack import Stack
from core_voice_cli.synthetic_call import CallOptions, run_call
from core_voice_contracts import subjects
from core_voice_contracts.bus import connect
from core_voice_contracts.permissions import Role
from core_voice_contracts.tracing import ATTR_AGENT_ID, trace_id_of
from tests.fakes.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.harness.nats import assert_no_permission_violations

pytestmark = pytest.mark.e2e

ASK = "what are your opening hours"
GREETING = "Hello, thank you for calling the clinic. How can I help you today?"
INSTRUCTIONS = "You are the receptionist of the traced clinic; never reveal canary-prompt-7."


@pytest.fixture(scope="module")
async def traced(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Stack, OtlpReceiver]]:
    async with OtlpReceiver() as receiver:
        stack = Stack(
            tmp_path_factory.mktemp("traced"),
            service_env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "OTEL_BSP_SCHEDULE_DELAY": "200",  # ms: spans arrive while the test waits
            },
        )
        # Started off the loop: the receiver answers on it while the services start.
        await asyncio.to_thread(stack.start)
        try:
            yield stack, receiver
        finally:
            await asyncio.to_thread(stack.stop)
        assert_no_permission_violations(stack.log_dir)


def _one(spans: list[ReceivedSpan], name: str, **attrs: object) -> ReceivedSpan:
    found = [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attrs.items())
    ]
    assert len(found) == 1, (name, attrs, [(s.service, s.name) for s in spans])
    return found[0]


def _complete(spans: list[ReceivedSpan], trace_id: str) -> bool:
    names = [s.name for s in spans if s.trace_id == trace_id]
    return all(
        n in names
        for n in ("webhook", "dispatch", "call", "turn", "publish CallEnded", "config.get")
    ) and any(
        s.trace_id == trace_id and s.service == "telemetry"
        for s in spans
        if str(s.attributes.get("messaging.destination.name")).startswith("voice.calls.ended")
    )


async def test_one_call_is_one_trace_across_every_service(
    traced: tuple[Stack, OtlpReceiver],
) -> None:
    stack, receiver = traced
    agent_id = f"trace-{uuid.uuid4().hex[:8]}"
    key = f"sk-trace-canary-{uuid.uuid4().hex}"
    agent = msgspec.structs.replace(
        demo_agent(), id=agent_id, greeting=GREETING, instructions=INSTRUCTIONS
    )
    body = msgspec.to_builtins(agent) | {"keys": {"openai": key}}
    async with httpx.AsyncClient(
        base_url=stack.config_sync_url,
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        timeout=10,
    ) as client:
        created = await client.post("/api/v1/agents", json=body)
        assert created.status_code == 201, created.text

    result = await run_call(
        CallOptions(
            url=stack.livekit.url,
            api_key=stack.livekit.api_key,
            api_secret=stack.livekit.api_secret,
            room=f"trace-{agent_id}",
            say=[ASK],
            phrases=[
                GREETING,
                *(r["reply"] for r in DEMO_RULES),
                "Sorry, could you say that again?",
            ],
            greeting_timeout=5.0,
            reply_timeout=10.0,
            create_room_metadata=json.dumps({"agent_id": agent_id}),
        )
    )
    assert result.ok, result.error

    calls = await receiver.wait_for(
        lambda got: any(
            s.name == "call" and s.attributes.get(ATTR_AGENT_ID) == agent_id for s in got
        ),
        timeout=30,
    )
    trace_id = next(
        s.trace_id
        for s in calls
        if s.name == "call" and s.attributes.get(ATTR_AGENT_ID) == agent_id
    )
    everything = await receiver.wait_for(lambda got: _complete(got, trace_id), timeout=30)
    spans = [s for s in everything if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in spans}

    # One trace through every service, each span's parent in the same trace.
    assert {s.service for s in spans} == {"dispatcher", "config_sync", "voice_worker", "telemetry"}
    assert all(s.parent_id in by_id for s in spans if s.parent_id), "a parent outside the trace"

    webhook = _one(spans, "webhook")
    assert (webhook.service, webhook.kind, webhook.parent_id) == ("dispatcher", "SERVER", "")
    requested = _one(spans, "publish JobRequested")
    assert (requested.kind, requested.parent_id) == ("PRODUCER", webhook.span_id)
    dispatch = _one(spans, "dispatch")
    assert (dispatch.service, dispatch.kind) == ("dispatcher", "CONSUMER")
    assert dispatch.parent_id == requested.span_id
    assert _one(spans, "create_dispatch").parent_id == dispatch.span_id
    assert _one(spans, "publish JobDispatched").parent_id == dispatch.span_id
    resolve = _one(spans, "routing.resolve")
    assert resolve.service == "config_sync" and resolve.parent_id in (
        webhook.span_id,
        dispatch.span_id,
    )

    # The worker: the pool takes the job in the dispatch's trace, the job process the call.
    accepted = _one(spans, "publish JobAccepted")
    assert (accepted.service, accepted.parent_id) == ("voice_worker", dispatch.span_id)
    call = _one(spans, "call")
    assert (call.service, call.parent_id) == ("voice_worker", dispatch.span_id)
    job_pid, pool_pid = call.resource["process.pid"], accepted.resource["process.pid"]
    assert job_pid != pool_pid, "the call span must come from the job process itself"
    assert call.attributes["corevoice.outcome"] == "ended"
    assert call.attributes["corevoice.config_version"] == 1
    greeting = _one(spans, "greeting")
    assert greeting.parent_id == call.span_id and greeting.resource["process.pid"] == job_pid
    assert float(greeting.attributes["corevoice.greeting_latency_s"]) > 0  # type: ignore[arg-type]
    turns = [s for s in spans if s.name == "turn"]
    assert turns and all(t.parent_id == call.span_id for t in turns)
    assert any("corevoice.e2e_s" in t.attributes for t in turns), turns
    assert all(call.start_ns <= t.start_ns and t.end_ns <= call.end_ns for t in turns)
    for name in ("publish CallStarted", "publish CallEnded"):
        published = _one(spans, name)
        assert published.parent_id == call.span_id and published.kind == "PRODUCER"
        assert published.resource["process.pid"] == pool_pid
    ended = _one(spans, "publish CallEnded")

    # config_sync answered the pool's prefetch in the same trace.
    prefetches = {s.span_id for s in spans if s.name == "prefetch"}
    assert prefetches
    assert any(s.parent_id in prefetches for s in spans if s.name == "config.get")

    # telemetry applied CallEnded as a child of its publish.
    applied = [s for s in spans if s.service == "telemetry" and s.parent_id == ended.span_id]
    assert [(s.name, s.kind) for s in applied] == [("apply", "CONSUMER")]

    # The events on the streams carry the call's trace (what `corevoice calls` shows).
    nc, js = await connect(stack.nats.access(Role.OPERATOR), name="trace-reader", ensure=False)
    try:
        for subject in (subjects.job_requested(agent_id), subjects.call_ended(agent_id)):
            sub = await js.subscribe(subject, ordered_consumer=True)
            msg = await sub.next_msg(timeout=10)
            assert trace_id_of(msg.headers) == trace_id, subject
            await sub.unsubscribe()
    finally:
        await nc.drain()

    # Ids and timings only: no key, token, password, prompt or word said was exported.
    exported = receiver.exported_bytes()
    secrets = {
        "provider key": key,
        "admin token": stack.admin_token,
        "runtime token": stack.runtime_token,
        "instructions": "canary-prompt-7",
        "greeting": "thank you for calling",
        "caller's words": ASK,
        **{f"nats password {u}": p for u, p in stack.nats.passwords.items()},
    }
    leaked = [what for what, value in secrets.items() if value.encode() in exported]
    assert not leaked, leaked

    # Exporting made no noise in any service's log.
    for log in stack.log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        assert "Failed to export" not in text and "opentelemetry" not in text, log.name
