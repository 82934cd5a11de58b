"""The whole stack as the e2e tests drive it: its admin API, a scripted call to an agent
and what the demo agent says."""

import asyncio
import contextlib
import json
import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor

import httpx
from livekit import api

from core_voice_cli.demo import DEMO_RULES
from core_voice_cli.stack import Stack
from core_voice_cli.synthetic_call import CallOptions, CallResult, run_call

GREETING_V1 = "Hello, thank you for calling the clinic. How can I help you today?"
GREETING_V2 = "Good morning, you are speaking with the new front desk. What do you need?"
FALLBACK = "Sorry, could you say that again?"
ASK = "what are your opening hours"
ANSWER = DEMO_RULES[0]["reply"]


def api_client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.config_sync_url,
        headers={
            "Authorization": f"Bearer {stack.admin_token}",
            "Content-Type": "application/json",
        },
        timeout=10,
    )


@contextlib.asynccontextmanager
async def livekit_api(stack: Stack) -> AsyncIterator[api.LiveKitAPI]:
    """The stack's LiveKit server API, closed after use."""
    client = api.LiveKitAPI(stack.livekit.http_url, stack.livekit.api_key, stack.livekit.api_secret)
    try:
        yield client
    finally:
        await client.aclose()


async def call(stack: Stack, agent_id: str, room: str) -> CallResult:
    return await run_call(call_options(stack, agent_id, room))


async def call_from_a_child_process(stack: Stack, agent_id: str, room: str) -> CallResult:
    """`call`, made from a child process: livekit-rtc's native runtime then never starts
    in the test process. At that process's exit it once aborted it (SIGABRT: a tokio
    thread "panicked in a function that cannot unwind", calling back into the finishing
    interpreter) after every test had passed (CI, the containers suite)."""
    options = call_options(stack, agent_id, room)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        return await asyncio.get_running_loop().run_in_executor(child, _run_call, options)


def _run_call(options: CallOptions) -> CallResult:
    return asyncio.run(run_call(options))


def call_options(stack: Stack, agent_id: str, room: str) -> CallOptions:
    everything_the_agent_might_say = [
        GREETING_V1,
        GREETING_V2,
        FALLBACK,
        *(r["reply"] for r in DEMO_RULES),
    ]
    return CallOptions(
        url=stack.livekit.url,
        api_key=stack.livekit.api_key,
        api_secret=stack.livekit.api_secret,
        room=room,
        say=[ASK],
        phrases=everything_the_agent_might_say,
        # Generous: these tests check what happens, not how fast (benchmarks do). With
        # test files two at a time, a stack's first call can wait seconds for a core
        # while a cluster or container suite runs beside it (CI: no greeting in 5 s).
        greeting_timeout=20.0,
        reply_timeout=20.0,
        create_room_metadata=json.dumps({"agent_id": agent_id}),
    )
