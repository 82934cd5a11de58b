"""The worker pool in real calls: live edits mid-call, exact capacity, drain, failures.

Real nats-server, livekit-server, config_sync, dispatcher and worker processes; callers
are the synthetic caller over real WebRTC. Each test starts the workers it needs, with
its own cap and drain settings, and stops them.
"""

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import psutil
import pytest
from livekit import api

from core_voice_cli.demo import DEMO_RULES, demo_agent
from core_voice_cli.procs import ManagedProcess, free_port
from core_voice_cli.stack import LOOPBACK_BASE_URLS, WORKER_AGENT_NAME, Stack
from core_voice_cli.synthetic_call import CallOptions, CallResult, run_call
from core_voice_contracts import codec, room, subjects
from core_voice_contracts.admin_api import ProviderChoice
from core_voice_contracts.bus import connect
from core_voice_contracts.events import (
    CallEnded,
    CallEvent,
    CallFailed,
    CallFailure,
    CallStarted,
    JobAccepted,
    JobRejected,
    RejectReason,
    WorkerStatus,
)
from core_voice_contracts.permissions import Role
from core_voice_worker.speech import normalize
from tests.fakes.openai_server import OpenAIFake
from tests.harness.nats import assert_no_permission_violations
from tests.harness.stack import api_client, livekit_api
from tests.waiting import until

pytestmark = pytest.mark.e2e

GREETING = "Hello, thank you for calling the clinic. How can I help you today?"
FALLBACK = "Sorry, could you say that again?"
ASK = "what are your opening hours"
ANSWER_V1 = DEMO_RULES[0]["reply"]
ANSWER_V2 = "We have moved: we now open at ten, every day of the week."
AGENT_KEY = "sk-agent-canary-e2e-77aa"
# Words of what the caller says and the agent answers: none may appear in a call event.
SAID_WORDS = ("opening hours", "nine to five", "moved", "thank you for calling")


CAPACITY_WAIT_S = 20
"""Room for the offer at 16 s: a pool that frees a slot tells LiveKit only at its next
status update (2.5 s), and in one CI run the offer at 11 s came 0.4 s before that."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(
        tmp_path_factory.mktemp("workers"),
        worker=False,
        dispatcher_env={"DISPATCHER_CAPACITY_WAIT_S": str(CAPACITY_WAIT_S)},
        base_url_allow=LOOPBACK_BASE_URLS,  # agents use fake providers on 127.0.0.1
    ) as running:
        yield running
    assert_no_permission_violations(running.log_dir)


class Workers:
    """Worker processes started by one test, stopped (and checked) at its end."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started: list[tuple[ManagedProcess, int]] = []

    def start(self, name: str, **env: str) -> tuple[ManagedProcess, int]:
        port = free_port()
        process = self.stack.worker_process(
            f"{name}-{uuid.uuid4().hex[:4]}", port, WORKER_WORKER_ID=name, **env
        )
        process.start().wait_ready(120)
        self.started.append((process, port))
        return process, port

    def stop(self) -> None:
        for process, _ in self.started:
            process.stop(grace=20)
        for process, _ in self.started:
            assert AGENT_KEY not in process.log_path.read_text(errors="replace")


@pytest.fixture
def workers(stack: Stack) -> Iterator[Workers]:
    started = Workers(stack)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def lk(stack: Stack) -> AsyncIterator[api.LiveKitAPI]:
    async with livekit_api(stack) as client:
        yield client


async def new_agent(stack: Stack, **fields: Any) -> str:
    agent_id = f"w-{uuid.uuid4().hex[:8]}"
    body = msgspec.structs.replace(demo_agent(), id=agent_id, **fields)
    async with api_client(stack) as client:
        created = await client.post(
            "/api/v1/agents",
            content=msgspec.json.encode(body),
            headers={"Content-Type": "application/json"},
        )
    assert created.status_code == 201, created.text
    return agent_id


async def status(port: int) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        answer: dict[str, Any] = (await client.get(f"http://127.0.0.1:{port}/status")).json()
        return answer


async def call_events(
    stack: Stack, agent_id: str, want: int, timeout: float = 30
) -> list[CallEvent]:
    nc, js = await connect(stack.nats.access(Role.OPERATOR), name="e2e-calls", ensure=False)
    out: list[CallEvent] = []
    try:
        sub = await js.subscribe(subjects.calls_for_agent(agent_id), ordered_consumer=True)
        async with asyncio.timeout(timeout):
            while len(out) < want:
                msg = await sub.next_msg(timeout=timeout)
                assert AGENT_KEY.encode() not in msg.data
                text = msg.data.decode().lower()
                assert not [w for w in SAID_WORDS if w in text], "no transcript on the bus"
                out.append(codec.decode_call_event(msg.data))
    finally:
        await nc.drain()
    return out


def options(stack: Stack, agent_id: str, **overrides: Any) -> CallOptions:
    defaults: dict[str, Any] = {
        "room": f"{agent_id}-{uuid.uuid4().hex[:6]}",
        "say": [ASK],
        "phrases": [GREETING, FALLBACK, ANSWER_V1, ANSWER_V2, *(r["reply"] for r in DEMO_RULES)],
        "greeting_timeout": 10.0,
        "reply_timeout": 10.0,
        "create_room_metadata": json.dumps({"agent_id": agent_id}),
    }
    return CallOptions(
        url=stack.livekit.url,
        api_key=stack.livekit.api_key,
        api_secret=stack.livekit.api_secret,
        **{**defaults, **overrides},
    )


async def test_an_edit_mid_call_is_heard_at_the_next_turn(stack: Stack, workers: Workers) -> None:
    _, port = workers.start("edit-pool")
    agent_id = await new_agent(stack)

    async def edit_before_the_second_turn(turn: int) -> None:
        if turn != 1:
            return
        rules = [{"match": "opening hours", "reply": ANSWER_V2}]
        async with api_client(stack) as client:
            edited = await client.patch(
                f"/api/v1/agents/{agent_id}",
                json={
                    "instructions": "You are the receptionist of the new clinic.",
                    "llm": {"provider": "scripted", "options": {"rules": rules}},
                },
            )
        assert edited.status_code == 200, edited.text
        await asyncio.sleep(0.5)  # pushed to the running call in milliseconds; margin

    result = await run_call(
        options(stack, agent_id, say=[ASK, ASK], between_turns=edit_before_the_second_turn)
    )
    assert result.ok, result.error
    assert [r.heard for r in result.replies] == [normalize(ANSWER_V1), normalize(ANSWER_V2)]

    started, ended = await call_events(stack, agent_id, 2)
    assert isinstance(started, CallStarted) and started.config_version == 1
    assert started.worker_id == "edit-pool" and started.config_load_s < 0.05
    assert isinstance(ended, CallEnded)
    assert ended.config_version == 1 and ended.config_versions == [1, 2]
    assert [t.config_version for t in ended.turn_metrics] == [1, 2]
    first = ended.turn_metrics[0]
    assert first.e2e_s is not None and first.llm_ttft_s is not None
    assert first.tts_ttfb_s is not None and first.end_of_turn_s is not None
    assert ended.greeting_latency_s is not None and ended.llm_completion_tokens > 0
    assert ended.worker_id == "edit-pool" and ended.tenant_id
    # Latencies need no state downstream: webhook time and assignment time travel along.
    assert started.requested_at is not None and started.accepted_at is not None
    assert started.requested_at <= started.accepted_at <= started.at

    # The job process reported each turn and its greeting to its pool, as they happened.
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    turns = 'corevoice_worker_turn_latency_seconds_count{stage="e2e",worker_id="edit-pool"} 2.0'
    greeting = 'corevoice_worker_greeting_latency_seconds_count{worker_id="edit-pool"} 1.0'
    assert turns in metrics and greeting in metrics
    assert 'corevoice_worker_utilisation{worker_id="edit-pool"}' in metrics


async def test_a_caller_hanging_up_ends_the_call_at_once(stack: Stack, workers: Workers) -> None:
    """The room is left open (a SIP caller hanging up leaves it to LiveKit): the call still
    ends when the caller goes, not when LiveKit closes the empty room ~20 s later."""
    workers.start("hangup-pool")
    agent_id = await new_agent(stack)
    result = await run_call(options(stack, agent_id, delete_room=False))
    left = time.time()
    assert result.ok, result.error
    started, ended = await call_events(stack, agent_id, 2, timeout=10)
    assert isinstance(started, CallStarted) and isinstance(ended, CallEnded)
    assert ended.end_reason == "participant_disconnected"
    assert ended.at.timestamp() - left < 8, "the call outlived its caller"


def job_processes(process: ManagedProcess) -> list[psutil.Process]:
    """The pool's job processes (forked from its forkserver), prewarmed or running."""
    tree = psutil.Process(process.pid).children(recursive=True)
    forkservers = [p for p in tree if "forkserver" in " ".join(p.cmdline())]
    return [p for p in tree if p.ppid() in {f.pid for f in forkservers}]


async def test_a_job_slow_to_join_is_never_offered_to_a_second_worker(
    stack: Stack, workers: Workers
) -> None:
    """A job process that takes seconds to join (a busy machine) holds its job: the pool's
    JobAccepted tells the dispatcher at assignment, so the capacity watch (which re-offers
    a dispatch nobody took after 6 s) leaves it alone, and one agent answers."""
    process, _ = workers.start("slow-pool")
    agent_id = await new_agent(stack)
    await until(lambda: job_processes(process), 30, 0.2)
    prewarmed = job_processes(process)
    for proc in prewarmed:  # the next job lands in a process that cannot run yet
        proc.suspend()
    async with httpx.AsyncClient(base_url=stack.dispatcher_url) as client:
        before = (await client.get("/healthz")).json()["capacity"]

        async def resume_after_the_reoffers(*_: object) -> None:
            await asyncio.sleep(7.0)  # past the re-offer due at 6 s
            for proc in prewarmed:
                proc.resume()

        resumer = asyncio.create_task(resume_after_the_reoffers())
        try:
            result = await run_call(options(stack, agent_id, greeting_timeout=25.0))
        finally:
            await resumer
        after = (await client.get("/healthz")).json()["capacity"]
    assert result.ok, result.error
    assert after.get("reoffered", 0) == before.get("reoffered", 0)
    assert after.get("taken", 0) == before.get("taken", 0) + 1

    nc, js = await connect(stack.nats.access(Role.OPERATOR), name="e2e-slow", ensure=False)
    try:
        sub = await js.subscribe(subjects.job_accepted(agent_id), ordered_consumer=True)
        accepted = codec.decode_job_event((await sub.next_msg(timeout=5)).data)
    finally:
        await nc.drain()
    started, ended = await call_events(stack, agent_id, 2)
    assert isinstance(accepted, JobAccepted) and isinstance(started, CallStarted)
    assert accepted.call_id == started.call_id and accepted.worker_id == "slow-pool"
    assert isinstance(ended, CallEnded) and ended.call_id == started.call_id  # one call
    assert accepted.at < started.at


async def test_the_cap_is_exact_across_two_workers_and_the_rest_wait_then_end_visibly(
    stack: Stack, workers: Workers, lk: api.LiveKitAPI
) -> None:
    cap = 3
    ports = [workers.start(f"cap-{i}", WORKER_MAX_CONCURRENCY=str(cap))[1] for i in range(2)]
    agent_id = await new_agent(stack)
    # The pools' heartbeats: full pools say so at once, so the dispatcher re-offers the
    # waiting rooms' dispatches (LiveKit dropped their launches: no pool could take them).
    heartbeats, _ = await connect(stack.nats.access(Role.OPERATOR), name="e2e-hb", ensure=False)
    said: list[WorkerStatus] = []

    async def heard(msg: Any) -> None:
        event = codec.decode_worker_event(msg.data)
        if isinstance(event, WorkerStatus) and event.worker_id.startswith("cap-"):
            said.append(event)

    await heartbeats.subscribe(subjects.WORKER_STATUS, cb=heard)
    try:
        rooms = [f"cap-{agent_id}-{i}" for i in range(3 * cap)]
        created = time.monotonic()
        await asyncio.gather(
            *(
                lk.room.create_room(
                    api.CreateRoomRequest(name=name, metadata=json.dumps({"agent_id": agent_id}))
                )
                for name in rooms
            )
        )

        async def agents_per_worker() -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            for name in rooms:
                with contextlib.suppress(api.TwirpError):
                    listed = await lk.room.list_participants(api.ListParticipantsRequest(room=name))
                    for p in listed.participants:
                        if room.call_id_of_agent(p.identity):
                            worker = p.attributes.get(room.ATTR_WORKER_ID, "?")
                            found.setdefault(worker, []).append(name)
            return found

        async def served() -> int:
            return sum(len(v) for v in (await agents_per_worker()).values())

        for _ in range(80):
            if await served() >= 2 * cap:
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(2.0)  # would anything slip in past the cap?
        seen = await agents_per_worker()
        print(f"\nagents per worker: { {k: len(v) for k, v in seen.items()} }")
        assert sorted(seen) == ["cap-0", "cap-1"]
        assert [len(seen[w]) for w in ("cap-0", "cap-1")] == [cap, cap], "2N slots, none past N"
        full = {s.worker_id for s in said if s.full}
        assert full == {"cap-0", "cap-1"}, [
            (s.worker_id, s.active_calls, s.full, s.turned_away) for s in said
        ]
        assert all(s.agent_name == WORKER_AGENT_NAME for s in said)

        # Two calls end: two of the N waiting rooms get those slots while they wait.
        for name in (seen["cap-0"][0], seen["cap-1"][0]):
            await lk.room.delete_room(api.DeleteRoomRequest(room=name))
        for _ in range(60):
            if await served() >= 2 * cap:
                break
            await asyncio.sleep(0.25)
        assert await served() == 2 * cap

        # The last one waits out DISPATCHER_CAPACITY_WAIT_S and ends visibly.
        nc, js = await connect(stack.nats.access(Role.OPERATOR), name="e2e-capacity", ensure=False)
        try:
            sub = await js.subscribe(subjects.job_rejected(agent_id), ordered_consumer=True)
            rejected = codec.decode_job_event(
                (await sub.next_msg(timeout=CAPACITY_WAIT_S + 20)).data
            )
        finally:
            await nc.drain()
        waited = time.monotonic() - created
        print(f"no_capacity after {waited:.1f} s")
        assert isinstance(rejected, JobRejected) and rejected.reason == RejectReason.NO_CAPACITY
        assert CAPACITY_WAIT_S - 1 <= waited <= CAPACITY_WAIT_S + 10

        async def room_gone() -> bool:
            listed = await lk.room.list_rooms(api.ListRoomsRequest(names=[rejected.room_name]))
            return not listed.rooms

        # Deleted right after the rejection is stored (the event first, so it is never lost):
        # the caller of a call nobody could take is not left waiting.
        await until(room_gone, 5, 0.1)
        peaks = [(await status(port))["peak_calls"] for port in ports]
        assert peaks == [cap, cap]
    finally:
        await heartbeats.drain()
    for name in rooms:
        with contextlib.suppress(api.TwirpError):
            await lk.room.delete_room(api.DeleteRoomRequest(room=name))


async def test_a_worker_killed_mid_call_is_reported_worker_lost(
    stack: Stack, workers: Workers
) -> None:
    process, _ = workers.start("doomed-pool")
    agent_id = await new_agent(stack)
    killed: dict[str, float] = {}

    async def kill_mid_call(turn: int) -> None:
        if turn == 1:
            process.signal(signal.SIGKILL)  # the pool and its job processes, no goodbye
            killed["at"] = time.time()

    result = await run_call(
        options(stack, agent_id, say=[ASK, ASK], reply_timeout=3.0, between_turns=kill_mid_call)
    )
    assert not result.ok and len(result.replies) == 1
    started, failed = await call_events(stack, agent_id, 2, timeout=60)
    assert isinstance(started, CallStarted) and isinstance(failed, CallFailed)
    print(f"\nworker_lost reported {failed.at.timestamp() - killed['at']:.1f} s after the kill")
    assert failed.error == CallFailure.WORKER_LOST and failed.call_id == started.call_id
    assert failed.worker_id == "doomed-pool" and failed.tenant_id == started.tenant_id


async def test_sigterm_drains_a_live_call_then_exits_zero(
    stack: Stack, workers: Workers, lk: api.LiveKitAPI
) -> None:
    process, port = workers.start("drain-pool", WORKER_DRAIN_TIMEOUT_S="60")
    agent_id = await new_agent(stack)
    drain: dict[str, Any] = {}

    async def terminate_mid_call(turn: int) -> None:
        if turn != 1:
            return
        os.kill(process.pid, signal.SIGTERM)  # the pod's main process, as Kubernetes does
        drain["sent"] = time.monotonic()
        async with httpx.AsyncClient() as client:

            async def not_ready() -> bool:
                return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 503

            for _ in range(100):
                if await not_ready():
                    break
                await asyncio.sleep(0.05)
            drain["readiness"] = (await client.get(f"http://127.0.0.1:{port}/readyz")).json()
        # A new room while draining: this worker must not take it.
        drain["room"] = f"drain-new-{agent_id}"
        await lk.room.create_room(
            api.CreateRoomRequest(name=drain["room"], metadata=json.dumps({"agent_id": agent_id}))
        )
        await asyncio.sleep(2.0)

    result = await run_call(
        options(stack, agent_id, say=[ASK, ASK], between_turns=terminate_mid_call)
    )
    assert result.ok, result.error  # the live call went on through the drain
    assert len(result.replies) == 2
    assert drain["readiness"]["ready"] is False and "draining" in drain["readiness"]["problems"]
    participants = await lk.room.list_participants(api.ListParticipantsRequest(room=drain["room"]))
    assert not [p for p in participants.participants if room.call_id_of_agent(p.identity)]

    # The call is over (the caller left): the worker finishes its drain and exits 0.
    await until(lambda: not process.running(), 30, 0.1)
    assert process.stop() == 0
    print(f"\nexited {time.monotonic() - drain['sent']:.1f} s after SIGTERM")
    events = await call_events(stack, agent_id, 2)
    assert [type(e) for e in events] == [CallStarted, CallEnded]
    await lk.room.delete_room(api.DeleteRoomRequest(room=drain["room"]))


async def test_an_agent_no_caller_comes_to_ends_no_caller_and_deletes_the_room(
    stack: Stack, workers: Workers, lk: api.LiveKitAPI
) -> None:
    """The caller hung up before the agent joined (LiveKit re-creates the room for the late
    agent): the job must not sit there holding a slot for ever."""
    _, port = workers.start("lonely-pool", WORKER_CALLER_WAIT_S="2")
    agent_id = await new_agent(stack)
    name = f"{agent_id}-empty"
    await lk.room.create_room(
        api.CreateRoomRequest(name=name, metadata=json.dumps({"agent_id": agent_id}))
    )
    started, failed = await call_events(stack, agent_id, 2)
    assert isinstance(started, CallStarted) and isinstance(failed, CallFailed)
    assert failed.error == CallFailure.NO_CALLER and failed.call_id == started.call_id
    assert failed.at.timestamp() - started.at.timestamp() >= 1.9  # it did wait
    assert failed.worker_id == "lonely-pool" and failed.config_versions == [1]

    async def room_gone_and_slot_free() -> bool:
        rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[name]))
        return not rooms.rooms and (await status(port))["active_calls"] == 0

    await until(room_gone_and_slot_free, 15, 0.2)


async def test_a_provider_failing_at_call_start_ends_the_call_with_call_failed(
    stack: Stack, workers: Workers, lk: api.LiveKitAPI
) -> None:
    workers.start("fail-pool")
    closed_port = free_port()  # nothing listens here
    agent_id = await new_agent(
        stack,
        tts=ProviderChoice(
            provider="openai", options={"base_url": f"http://127.0.0.1:{closed_port}/v1"}
        ),
        keys={"openai": AGENT_KEY},
    )
    started = time.time()
    result: CallResult = await run_call(options(stack, agent_id, greeting_timeout=15.0))
    assert not result.ok

    started_event, failed = await call_events(stack, agent_id, 2)
    assert isinstance(started_event, CallStarted) and isinstance(failed, CallFailed)
    took = failed.at.timestamp() - started
    print(f"\nCallFailed {failed.error}: {failed.detail!r} after ~{took:.1f} s")
    assert failed.error == CallFailure.PROVIDER_UNAVAILABLE
    assert "tts" in failed.detail.lower() and AGENT_KEY not in failed.detail
    assert failed.worker_id == "fail-pool" and failed.tenant_id and failed.config_versions == [1]
    assert took < 10

    async def room_gone() -> bool:
        rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[result.room]))
        return not rooms.rooms

    # The failed call's room is deleted (right after its CallFailed is handed to the
    # pool): the caller is hung up on.
    await until(room_gone, 5, 0.1)


async def test_a_call_through_the_real_openai_plugin_for_stt_llm_and_tts(
    stack: Stack, workers: Workers
) -> None:
    """STT, LLM and TTS are all livekit-plugins-openai, talking to a local OpenAI fake."""
    async with OpenAIFake(rules=[("opening hours", ANSWER_V2)], phrases=[ASK]) as fake:
        workers.start("openai-pool")
        openai = {"provider": "openai", "options": {"base_url": fake.base_url}}
        agent_id = await new_agent(
            stack,
            stt=ProviderChoice(**openai),  # type: ignore[arg-type]
            llm=ProviderChoice(**openai),  # type: ignore[arg-type]
            tts=ProviderChoice(**openai),  # type: ignore[arg-type]
            keys={"openai": AGENT_KEY},
        )
        result = await run_call(options(stack, agent_id))
        assert result.ok, result.error
        assert result.greeting_text == normalize(GREETING)
        assert [r.heard for r in result.replies] == [normalize(ANSWER_V2)]
        counts = fake.counts()
        assert counts["/v1/audio/transcriptions"] >= 1
        assert counts["/v1/chat/completions"] >= 1
        assert counts["/v1/audio/speech"] >= 2  # greeting and reply
        assert set(fake.keys) == {AGENT_KEY}, "the agent's own key, never another"

        # The same agent with a key the provider refuses: the call fails at its greeting.
        fake.refused_keys = frozenset({AGENT_KEY})
        refused = await run_call(options(stack, agent_id, greeting_timeout=8.0))
        assert not refused.ok
    events = await call_events(stack, agent_id, 4)
    assert sorted(type(e).__name__ for e in events) == [
        "CallEnded",
        "CallFailed",
        "CallStarted",
        "CallStarted",
    ]
    (ended,) = [e for e in events if isinstance(e, CallEnded)]
    (failed,) = [e for e in events if isinstance(e, CallFailed)]
    assert ended.turn_metrics[0].stt_final_s is not None
    assert failed.error == CallFailure.PROVIDER_UNAVAILABLE
    assert "401" in failed.detail or "auth" in failed.detail.lower(), failed.detail


def restart_config_sync(stack: Stack) -> None:
    old = stack.group.get("config-sync")
    old.stop()
    stack.group.processes.remove(old)
    stack.group.start(stack.config_sync_process(), timeout=60)


async def test_calls_are_answered_while_config_sync_is_stopped_or_frozen(
    stack: Stack, workers: Workers, lk: api.LiveKitAPI
) -> None:
    """The whole call path keeps the last known good answers: the dispatcher its routing,
    the pool its configs. Both flag what they served as stale."""
    workers.start("lkg-pool")
    agent_id = await new_agent(stack)
    first = await run_call(options(stack, agent_id))
    assert first.ok, first.error

    config_sync = stack.group.get("config-sync")
    config_sync.stop()
    try:
        stopped = await run_call(options(stack, agent_id, greeting_timeout=15.0))
    finally:
        restart_config_sync(stack)
    assert stopped.ok, stopped.error
    assert [r.heard for r in stopped.replies] == [normalize(ANSWER_V1)]

    config_sync = stack.group.get("config-sync")
    os.kill(config_sync.pid, signal.SIGSTOP)
    try:
        frozen = await run_call(options(stack, agent_id, greeting_timeout=15.0))
    finally:
        os.kill(config_sync.pid, signal.SIGCONT)
    assert frozen.ok, frozen.error

    events = await call_events(stack, agent_id, 6)
    started = sorted((e for e in events if isinstance(e, CallStarted)), key=lambda e: e.at)
    assert [e.config_stale for e in started] == [False, True, True]
    assert all(e.config_version == 1 for e in started)
    nc, js = await connect(stack.nats.access(Role.OPERATOR), name="e2e-jobs", ensure=False)
    try:
        sub = await js.subscribe(subjects.job_dispatched(agent_id), ordered_consumer=True)
        dispatched = [
            codec.decode_job_event((await sub.next_msg(timeout=10)).data) for _ in range(3)
        ]
    finally:
        await nc.drain()
    assert [getattr(d, "route_stale", None) for d in dispatched] == [False, True, True]
