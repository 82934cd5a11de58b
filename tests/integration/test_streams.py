"""Stream definitions are applied idempotently by whichever service starts first."""

import asyncio

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from core_voice_contracts import subjects
from core_voice_contracts.bus import publish
from core_voice_contracts.events import JobRequested
from core_voice_contracts.streams import (
    VOICE_CALLS,
    VOICE_CONFIG,
    VOICE_JOBS,
    ensure_streams,
    stream_configs,
)

pytestmark = pytest.mark.integration


async def test_concurrent_ensure_creates_each_stream_once_with_its_settings(
    bus: tuple[Client, JetStreamContext],
) -> None:
    _, js = bus
    await asyncio.gather(*(ensure_streams(js) for _ in range(5)))
    for want in stream_configs():
        assert want.name is not None
        got = (await js.stream_info(want.name)).config
        # (the server reports "no limit" as 0 where the definition leaves it unset)
        assert (got.subjects, got.max_age or 0, got.duplicate_window, got.max_msgs_per_subject) == (
            want.subjects,
            want.max_age or 0,
            want.duplicate_window,
            want.max_msgs_per_subject,
        )
    assert {VOICE_JOBS, VOICE_CALLS, VOICE_CONFIG} <= {
        s.config.name for s in await js.streams_info()
    }


async def test_ensure_restores_drifted_settings_and_keeps_messages(
    bus: tuple[Client, JetStreamContext],
) -> None:
    _, js = bus
    await ensure_streams(js)
    job = JobRequested(
        job_id="job-streams-test", room_name="r", room_sid="RM_s", agent_id="streams-test"
    )
    await publish(js, subjects.job_requested("streams-test"), job, msg_id="streams-test-1")
    before = (await js.stream_info(VOICE_JOBS)).state.messages
    # Drifted, but dropping nothing: a shorter max_age would age out what earlier tests
    # on this shared server stored, which is NATS doing its job, not what is tested here.
    drifted = StreamConfig(
        name=VOICE_JOBS,
        subjects=[subjects.JOBS_ALL],
        max_age=30 * 24 * 3600.0,
        duplicate_window=30.0,
    )
    await js.update_stream(drifted)
    await ensure_streams(js)
    info = await js.stream_info(VOICE_JOBS)
    assert info.config.max_age == 7 * 24 * 3600
    assert info.state.messages == before


async def test_a_subject_a_newer_release_added_is_never_taken_away(
    bus: tuple[Client, JetStreamContext],
) -> None:
    # The stream as a newer release defined it: one subject more than this code knows.
    _, js = bus
    await ensure_streams(js)
    newer = (await js.stream_info(VOICE_CONFIG)).config
    newer.subjects = [*(newer.subjects or []), "voice.config.newer.*"]
    await js.update_stream(newer)
    try:
        await ensure_streams(js)  # this (older) release restarts
        kept = (await js.stream_info(VOICE_CONFIG)).config.subjects or []
        assert "voice.config.newer.*" in kept
        assert {subjects.CONFIG_CHANGED_ALL, subjects.ROUTING_CHANGED_ALL} <= set(kept)
    finally:  # the operator's step, so the session's other tests see the definition
        (defined,) = [c for c in stream_configs() if c.name == VOICE_CONFIG]
        await js.update_stream(defined)


async def test_duplicate_message_ids_collapse_inside_the_window(
    bus: tuple[Client, JetStreamContext],
) -> None:
    _, js = bus
    job = JobRequested(job_id="job-dup", room_name="r", room_sid="RM_d", agent_id="dup-test")
    acks = [
        await publish(js, subjects.job_requested("dup-test"), job, msg_id="dup-test-1")
        for _ in range(3)
    ]
    assert len({a.seq for a in acks}) == 1
    assert [a.duplicate for a in acks] == [None, True, True] or [
        bool(a.duplicate) for a in acks
    ] == [False, True, True]
