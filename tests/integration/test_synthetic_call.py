"""The synthetic caller against a real livekit-server, with a scripted fake agent.

Runs without the rest of the stack: ``tests/fakes/echo_agent.py`` plays the agent over
real WebRTC, so what is checked is the caller's audio path, segmentation, recognition
and timing, and its failure reports.
"""

import asyncio
import json
import time
import uuid
import wave
from dataclasses import replace
from pathlib import Path

import pytest
from livekit import api

from core_voice_cli.servers import LiveKitServer
from core_voice_cli.synthetic_call import CallOptions, run_call
from tests.fakes.echo_agent import EchoAgent

pytestmark = [
    pytest.mark.integration,
    # livekit-server --dev's public secret is short; PyJWT warns on every token.
    pytest.mark.filterwarnings("ignore:The HMAC key is .* below the minimum recommended"),
]

GREETING = "hello this is the test agent"
ASK = "I would like to book a table"
ANSWER = "you said book a table"
# Decoys make the grammars real choices, so a forced match cannot pass by luck.
AGENT_PHRASES = [GREETING, ANSWER, "sorry i did not catch that", "goodbye and thank you"]
AGENT_REPLIES = {ASK: ANSWER, "cancel my reservation please": "your reservation is cancelled"}


def _options(server: LiveKitServer, room: str) -> CallOptions:
    return CallOptions(
        url=server.url,
        api_key=server.api_key,
        api_secret=server.api_secret,
        room=room,
        say=[ASK],
        phrases=AGENT_PHRASES,
    )


def _agent(server: LiveKitServer, room: str, replies: dict[str, str] | None) -> EchoAgent:
    return EchoAgent(
        url=server.url,
        api_key=server.api_key,
        api_secret=server.api_secret,
        room=room,
        greeting=GREETING,
        replies=replies,
    )


def _room() -> str:
    return f"synthetic-test-{uuid.uuid4().hex[:8]}"


async def test_call_hears_greeting_and_reply(livekit_server: LiveKitServer, tmp_path: Path) -> None:
    room = _room()
    metadata = json.dumps({"agent_id": "agent-under-test"})
    record = tmp_path / "agent.wav"
    agent = _agent(livekit_server, room, AGENT_REPLIES)
    # The agent arrives once the caller has created the room, as a dispatched one would.
    joining = asyncio.create_task(agent.start(wait_for_room=15))
    try:
        result = await run_call(
            replace(
                _options(livekit_server, room),
                create_room_metadata=metadata,
                greeting_timeout=15,
                record_path=record,
            )
        )
        await joining
    finally:
        joining.cancel()
        await agent.aclose()
    print(f"\nsynthetic call result: {result}")

    assert result.ok, result.error
    assert result.greeting_text == GREETING
    assert result.greeting_latency_s is not None
    assert 0 < result.greeting_latency_s < 15
    assert [(r.said, r.heard) for r in result.replies] == [(ASK, ANSWER)]
    # The fake answers after 0.6 s of caller silence; anything near 0 means the caller
    # took its own trailing audio, or the previous turn, for the reply.
    assert 0.5 < result.replies[0].latency_s < 5
    assert agent.heard == ["i would like to book a table"]
    assert agent.room_metadata == metadata

    with wave.open(str(record)) as wav:
        assert wav.getframerate() == 16_000
        assert wav.getnframes() / 16_000 > 2.5  # greeting (~2 s) + reply (~1.3 s)
    async with api.LiveKitAPI(
        livekit_server.url, livekit_server.api_key, livekit_server.api_secret
    ) as lkapi:
        rooms = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room]))
    assert not rooms.rooms, "a room the call created must be deleted"


async def test_call_without_agent_fails_at_greeting_timeout(
    livekit_server: LiveKitServer,
) -> None:
    opts = replace(_options(livekit_server, _room()), greeting_timeout=2)
    assert "secret" not in repr(opts)

    started = time.monotonic()
    result = await run_call(opts)
    elapsed = time.monotonic() - started

    assert not result.ok
    assert result.error == "no greeting within 2s"
    assert result.greeting_text is None
    assert 2 <= elapsed < 8


async def test_call_reports_the_unanswered_phrase(livekit_server: LiveKitServer) -> None:
    room = _room()
    agent = _agent(livekit_server, room, replies=None)
    await agent.start()
    try:
        result = await run_call(replace(_options(livekit_server, room), reply_timeout=2))
    finally:
        await agent.aclose()

    assert not result.ok
    assert result.greeting_text == GREETING
    assert result.error == f"no reply to {ASK!r} within 2s"
