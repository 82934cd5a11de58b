"""The capacity watch's wake-up: a pool's `JobAccepted` settles the job at once, even
when it arrives before the watch starts (a quick pool, a busy dispatcher)."""

import asyncio
import datetime as dt
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from nats.aio.msg import Msg

from core_voice_contracts.events import JobRequested
from core_voice_dispatcher.capacity import FIRST_CHECK_S, CapacityWatch, Waiting
from core_voice_dispatcher.livekit_client import LiveKitClient
from core_voice_dispatcher.settings import DispatcherSettings

pytestmark = pytest.mark.unit


class HeldMsg:
    """A JetStream message held by the watch: what it was told."""

    def __init__(self) -> None:
        self.metadata = SimpleNamespace(timestamp=dt.datetime.now(dt.UTC))
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append("nak")

    async def in_progress(self) -> None:
        self.settled.append("in_progress")


class NoLiveKit:
    """Any LiveKit call fails the test: the common path makes none."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"LiveKit asked: {name}")


def waiting(msg: HeldMsg, job_id: str) -> Waiting:
    job = JobRequested(job_id=job_id, room_name="room-1", room_sid="RM_1", agent_id="a-1")
    return Waiting(
        job=job,
        msg=cast(Msg, msg),
        agent_id="a-1",
        agent_name="core-voice",
        metadata="{}",
        dispatch_id="AD_1",
        offered_at=time.monotonic(),
        started=time.monotonic(),
    )


async def publish(*_: object) -> None:
    raise AssertionError("no outcome is published for a job a pool took")


@pytest.mark.parametrize("accepted_first", [True, False], ids=["before", "after"])
async def test_a_job_accepted_settles_the_watch_at_once_before_or_after_it_starts(
    accepted_first: bool,
) -> None:
    settings = DispatcherSettings(
        LIVEKIT_API_KEY="k", LIVEKIT_API_SECRET="unit-test-secret-0123456789abcdef"
    )
    watch = CapacityWatch(settings, cast(LiveKitClient, NoLiveKit()), publish)
    msg = HeldMsg()
    if accepted_first:
        watch.note_accepted("job-1")
    started = time.monotonic()
    await watch.watch(waiting(msg, "job-1"))
    if not accepted_first:
        await asyncio.sleep(0.05)
        watch.note_accepted("job-1")
    while watch.waiting():
        await asyncio.sleep(0.01)
        assert time.monotonic() - started < FIRST_CHECK_S, "waited for the first look"
    assert msg.settled == ["ack"]
    assert watch.counts["taken"] == 1
