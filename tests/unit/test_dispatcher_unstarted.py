"""Which accepted calls the dispatcher reports ``worker_lost`` without a participant:
those whose pool went silent before the call started (`unstarted.UnstartedCalls.due`).
The bus side is in tests/integration/test_dispatcher_worker_lost.py."""

from typing import Any, cast

import pytest

from core_voice_contracts.events import JobAccepted, JobRequested, WorkerStatus
from core_voice_dispatcher.calls import WorkerLostReports
from core_voice_dispatcher.unstarted import MAX_AGE_S, UnstartedCalls
from tests.fakes.clock import Clock

pytestmark = pytest.mark.unit

GRACE_S = 2.0


def accepted(call_id: str, worker_id: str) -> JobAccepted:
    return JobAccepted(
        job_id=f"job-{call_id}",
        room_name=f"room-{call_id}",
        agent_id="agent-1",
        call_id=call_id,
        worker_id=worker_id,
    )


def follower() -> tuple[UnstartedCalls, Clock]:
    clock = Clock()
    return UnstartedCalls(WorkerLostReports(cast(Any, None), GRACE_S), clock), clock


def test_a_call_whose_pool_went_silent_before_it_started_is_due() -> None:
    calls, clock = follower()
    calls.note_status(WorkerStatus(worker_id="pool-a", capacity=4, active_calls=0, interval_s=1))
    calls.note_status(WorkerStatus(worker_id="pool-b", capacity=4, active_calls=0, interval_s=1))
    calls.note_accepted(accepted("AJ_lost", "pool-a"))
    calls.note_accepted(accepted("AJ_started", "pool-a"))
    calls.note_accepted(accepted("AJ_alive", "pool-b"))
    calls.note_call("AJ_started")  # its CallStarted: no longer followed
    for _ in range(10):  # pool-b keeps its heartbeat, pool-a is silent
        clock.now += 1.0
        calls.note_status(
            WorkerStatus(worker_id="pool-b", capacity=4, active_calls=1, interval_s=1)
        )
        if clock.now - 1000.0 <= 3 * 1 + GRACE_S:
            assert calls.due() == []  # not before 3 missed heartbeats plus the grace
    due = calls.due()
    assert [event.call_id for event, _, _ in due] == ["AJ_lost"]
    assert due[0][1] == pytest.approx(10.0)
    assert calls.due() == []  # reported once
    assert calls.followed() == 1  # AJ_alive


def test_a_pool_never_heard_counts_from_the_acceptance_with_the_default_interval() -> None:
    calls, clock = follower()
    calls.note_accepted(accepted("AJ_x", "pool-unknown"))
    clock.now += 3 * 5.0 + GRACE_S - 0.5
    assert calls.due() == []
    clock.now += 1.0
    assert [e.call_id for e, _, _ in calls.due()] == ["AJ_x"]


def test_a_long_unstarted_call_on_a_live_pool_is_dropped_not_reported() -> None:
    calls, clock = follower()
    calls.note_accepted(accepted("AJ_slow", "pool-a"))
    for _ in range(int(MAX_AGE_S) + 2):
        clock.now += 1.0
        calls.note_status(
            WorkerStatus(worker_id="pool-a", capacity=4, active_calls=1, interval_s=1)
        )
        assert calls.due() == []
    assert calls.followed() == 0
    assert calls.counts["dropped"] == 1


def test_a_repeated_acceptance_and_a_call_id_that_is_no_token_are_ignored() -> None:
    calls, _ = follower()
    calls.note_accepted(accepted("AJ_1", "pool-a"))
    calls.note_accepted(accepted("AJ_1", "pool-a"))
    calls.note_accepted(accepted("bad id with spaces", "pool-a"))
    assert calls.followed() == 1


def job() -> JobRequested:
    return JobRequested(job_id="job-1", room_name="room-1", room_sid="RM_1", agent_id="agent-1")


def test_a_call_livekit_lists_taken_with_no_pool_is_due_after_the_default_wait() -> None:
    """The pool died after LiveKit assigned it the job, before its `JobAccepted`."""
    calls, clock = follower()
    calls.note_taken(job(), "agent-1", ["AJ_unseen"])
    calls.note_taken(job(), "agent-1", ["AJ_unseen"])  # the next look lists it again
    assert calls.followed() == 1 and calls.counts["taken_unseen"] == 1
    clock.now += 3 * 5.0 + GRACE_S - 0.5
    assert calls.due() == []
    clock.now += 1.0
    ((event, _, _),) = calls.due()
    assert (event.call_id, event.job_id, event.worker_id) == ("AJ_unseen", "job-1", "")


def test_a_late_acceptance_gives_a_listed_call_its_pool() -> None:
    calls, clock = follower()
    calls.note_taken(job(), "agent-1", ["AJ_late"])
    clock.now += 10.0
    calls.note_status(WorkerStatus(worker_id="pool-a", capacity=4, active_calls=1, interval_s=1))
    calls.note_accepted(accepted("AJ_late", "pool-a"))
    for _ in range(30):  # pool-a keeps its heartbeat: never due
        clock.now += 1.0
        calls.note_status(
            WorkerStatus(worker_id="pool-a", capacity=4, active_calls=1, interval_s=1)
        )
        assert calls.due() == []
    calls.note_call("AJ_late")
    assert calls.followed() == 0


async def test_a_listed_call_whose_agent_is_in_the_room_is_not_reported() -> None:
    answers: list[bool | None] = [None, True]
    asked: list[str] = []

    async def in_room(event: JobAccepted) -> bool | None:
        asked.append(event.call_id)
        return answers.pop(0)

    clock = Clock()
    calls = UnstartedCalls(WorkerLostReports(cast(Any, None), GRACE_S), clock, in_room)
    calls.note_taken(job(), "agent-1", ["AJ_running"])
    clock.now += 60.0
    ((event, _, since),) = calls.due()
    assert not await calls._unseen_lost(event, since)  # LiveKit could not say: kept
    assert calls.followed() == 1 and calls.counts["room_unknown"] == 1
    clock.now += 60.0
    ((event, _, since),) = calls.due()
    assert not await calls._unseen_lost(event, since)  # in the room: running
    assert calls.counts["in_room"] == 1 and calls.followed() == 0
    assert asked == ["AJ_running", "AJ_running"]


def test_a_call_already_seen_starting_is_not_followed_from_the_listing() -> None:
    calls, _ = follower()
    calls.note_call("AJ_seen")  # its CallStarted came, its JobAccepted did not
    calls.note_taken(job(), "agent-1", ["AJ_seen"])
    assert calls.followed() == 0
