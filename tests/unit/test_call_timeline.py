"""Call timelines from event lists: complete, failed, rejected, and with pieces missing."""

import argparse
import datetime as dt
from typing import TypedDict

import pytest

from core_voice_cli.calls import (
    iso,
    parse_since,
    render_list,
    render_show,
    select,
    summary_json,
    timeline_json,
)
from core_voice_cli.main import build_parser
from core_voice_cli.timeline import (
    Event,
    Outcome,
    Record,
    Timeline,
    build_timelines,
    find,
    trace_id_of,
)
from core_voice_contracts.events import (
    CallEnded,
    CallFailed,
    CallStarted,
    JobAccepted,
    JobDispatched,
    JobExpired,
    JobRejected,
    JobRequested,
    RejectReason,
    TurnLatency,
)

pytestmark = pytest.mark.unit

T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def tp(span: str = "00f067aa0ba902b7", trace: str = TRACE) -> str:
    return f"00-{trace}-{span}-01"


def rec(event: Event, stored: float | None = None, traceparent: str = "") -> Record:
    """A record stored 2 ms after its event, unless said otherwise."""
    stored_at = event.at + dt.timedelta(milliseconds=2) if stored is None else at(stored)
    return Record(event, stored_at, traceparent)


class JobIds(TypedDict):
    job_id: str
    room_name: str
    agent_id: str


class CallIds(JobIds):
    call_id: str


JOB = JobIds(job_id="job-RM_1", room_name="room-1", agent_id="support")
CALL = CallIds(call_id="AJ_1", job_id="job-RM_1", room_name="room-1", agent_id="support")


def complete_call() -> list[Record]:
    return [
        rec(JobRequested(at=at(0), room_sid="RM_1", **JOB), stored=0.004, traceparent=tp()),
        rec(
            JobDispatched(
                at=at(0.05),
                dispatch_id="AD_1",
                worker_agent_name="core-voice",
                via="agent",
                tenant_id="acme",
                requested_at=at(0),
                **JOB,
            ),
            traceparent=tp("1111111111111111"),
        ),
        rec(JobAccepted(at=at(0.2), worker_id="pool-a", **CALL), traceparent=tp("2" * 16)),
        rec(
            CallStarted(
                at=at(0.9),
                tenant_id="acme",
                config_version=3,
                worker_id="pool-a",
                config_load_s=0.1,
                setup_s=0.6,
                requested_at=at(0),
                accepted_at=at(0.2),
                **CALL,
            ),
            traceparent=tp("3" * 16),
        ),
        rec(
            CallEnded(
                at=at(20.9),
                tenant_id="acme",
                config_version=3,
                duration_s=20.5,
                greeting_latency_s=0.8,
                turns=2,
                end_reason="caller_left",
                config_versions=[3, 4],
                turn_metrics=[
                    TurnLatency(
                        stt_final_s=0.1,
                        end_of_turn_s=0.3,
                        llm_ttft_s=0.05,
                        tts_ttfb_s=0.04,
                        e2e_s=0.45,
                        config_version=3,
                    ),
                    TurnLatency(stt_final_s=0.2, e2e_s=1.25, config_version=4),
                ],
                **CALL,
            ),
            traceparent=tp("4" * 16),
        ),
    ]


def only(records: list[Record]) -> Timeline:
    timelines = build_timelines(records)
    assert len(timelines) == 1, timelines
    return timelines[0]


def test_complete_call_has_every_step_with_its_time() -> None:
    timeline = only(complete_call())
    assert (timeline.call_id, timeline.job_id, timeline.room_name) == ("AJ_1", "job-RM_1", "room-1")
    assert (timeline.agent_id, timeline.tenant_id, timeline.worker_id) == (
        "support",
        "acme",
        "pool-a",
    )
    assert timeline.outcome is Outcome.ENDED
    assert timeline.reason == "caller_left"
    assert timeline.duration_s == 20.5
    assert timeline.worst_turn_s == 1.25
    assert timeline.config_versions == [3, 4]
    assert timeline.trace_ids == [TRACE]
    steps = {s.name: s.at for s in timeline.steps()}
    assert list(steps) == [
        "webhook",
        "stored",
        "dispatched",
        "offered",
        "joined",
        "greeting",
        "ended",
    ]
    assert steps == {
        "webhook": at(0),
        "stored": at(0.004),
        "dispatched": at(0.05),
        "offered": at(0.2),
        "joined": at(0.9),
        "greeting": at(1.7),
        "ended": at(20.9),
    }


def test_show_prints_offsets_turns_versions_and_trace() -> None:
    text = render_show(only(complete_call()), now=at(30))
    lines = text.splitlines()
    assert f"trace     {TRACE}" in lines
    assert "versions  3 -> 4" in lines
    assert "outcome   ended (caller_left)" in lines
    stored = next(line for line in lines if line.startswith("stored"))
    assert stored.split() == ["stored", "2025-03-01T12:00:00.004Z", "+0.004", "s"]
    greeting = next(line for line in lines if line.startswith("greeting"))
    assert "2025-03-01T12:00:01.700Z" in greeting and "+1.700 s" in greeting
    ended = next(line for line in lines if line.startswith("ended"))
    assert "+20.900 s" in ended and "caller_left, after 20.500 s" in ended
    turn_rows = [line.split() for line in lines if line[:1].isdigit()]
    assert turn_rows == [
        ["1", "0.100", "0.300", "0.050", "0.040", "0.450", "3"],
        ["2", "0.200", "-", "-", "-", "1.250", "4"],
    ]


def test_json_of_a_timeline_has_steps_with_offsets_and_no_transcript() -> None:
    doc = timeline_json(only(complete_call()), now=at(30))
    assert doc["trace_id"] == TRACE
    steps = doc["steps"]
    assert isinstance(steps, list)
    assert [s["offset_s"] for s in steps] == [0.0, 0.004, 0.05, 0.2, 0.9, 1.7, 20.9]
    assert doc["worst_turn_s"] == 1.25
    assert "transcript" not in str(doc)


def test_failed_call_ends_with_its_error_and_detail() -> None:
    failed = CallFailed(
        at=at(3),
        tenant_id="acme",
        config_version=3,
        error="provider_unavailable",
        detail="tts: HTTP 503",
        retryable=True,
        duration_s=2.1,
        **CALL,
    )
    records = [*complete_call()[:4], rec(failed)]
    timeline = only(records)
    assert timeline.outcome is Outcome.FAILED
    assert (timeline.reason, timeline.detail) == ("provider_unavailable", "tts: HTTP 503")
    assert timeline.duration_s == 2.1
    assert timeline.worst_turn_s is None
    end = timeline.steps()[-1]
    assert (end.name, end.at, end.detail) == (
        "failed",
        at(3),
        "provider_unavailable: tts: HTTP 503 (retryable)",
    )
    # No CallEnded: the greeting time is unknown, and listed as such.
    assert {s.name: s.at for s in timeline.steps()}["greeting"] is None


def test_rejected_job_is_a_timeline_without_a_call() -> None:
    records = [
        rec(
            JobRequested(
                at=at(0), room_sid="RM_2", job_id="job-RM_2", room_name="room-1", agent_id="support"
            )
        ),
        rec(
            JobRejected(
                at=at(0.03),
                job_id="job-RM_2",
                room_name="room-1",
                agent_id="support",
                reason=RejectReason.UNKNOWN_AGENT,
                detail="config_sync does not know it",
            )
        ),
    ]
    timeline = only(records)
    assert timeline.call_id is None
    assert timeline.id == "job-RM_2"
    assert timeline.outcome is Outcome.REJECTED
    assert (timeline.reason, timeline.detail) == ("unknown_agent", "config_sync does not know it")
    assert [s.name for s in timeline.steps()] == ["webhook", "stored", "dispatched", "rejected"]
    assert timeline.trace_id is None
    assert "trace     -" in render_show(timeline, now=at(1)).splitlines()
    assert "- (the job never became a call)" in render_show(timeline, now=at(1))


def test_a_detail_that_repeats_the_code_is_not_repeated() -> None:
    rejected = JobRejected(reason=RejectReason.UNKNOWN_AGENT, detail="unknown_agent", **JOB)
    timeline = only([rec(JobRequested(at=at(0), room_sid="RM_1", **JOB)), rec(rejected)])
    assert timeline.steps()[-1].detail == "unknown_agent"


def test_expired_job_says_why() -> None:
    timeline = only(
        [
            rec(JobRequested(at=at(0), room_sid="RM_3", **JOB)),
            rec(JobExpired(at=at(1), detail="caller_left", **JOB)),
        ]
    )
    assert (timeline.outcome, timeline.reason) == (Outcome.EXPIRED, "caller_left")


def test_running_call_is_active_and_missing_events_come_from_later_copies() -> None:
    # Only CallStarted is in the window (the job events are older, or lost): the webhook
    # and offer times come from the copies it carries; the stored time is unknown.
    started = complete_call()[3]
    timeline = only([started])
    assert timeline.outcome is Outcome.ACTIVE
    assert timeline.duration_s is None
    assert timeline.running_s(at(10.9)) == pytest.approx(10.0)
    steps = {s.name: s for s in timeline.steps()}
    assert steps["webhook"].at == at(0)
    assert steps["stored"].at is None
    assert steps["dispatched"].at is None
    assert steps["offered"].at == at(0.2)
    assert steps["offered"].detail == "JobAccepted not in the window"
    assert "ended" not in steps
    assert timeline.trace_ids == [TRACE]
    text = render_show(timeline, now=at(10.9))
    assert "outcome   active, running for 10.0 s" in text.splitlines()
    stored = next(line for line in text.splitlines() if line.startswith("stored"))
    assert stored.split() == ["stored", "-", "-"]


def test_events_without_traceparent_show_no_trace() -> None:
    records = [Record(r.event, r.stored_at, "") for r in complete_call()]
    records[2] = Record(records[2].event, records[2].stored_at, "garbage")
    timeline = only(records)
    assert timeline.trace_id is None
    assert summary_json(timeline)["trace_id"] is None


def test_events_in_two_traces_are_both_shown() -> None:
    other = "a" * 32
    records = complete_call()
    records[4] = Record(records[4].event, records[4].stored_at, tp(trace=other))
    timeline = only(records)
    assert timeline.trace_ids == [TRACE, other]
    assert f"(and {other}: the events are not in one trace)" in render_show(timeline, at(30))


def test_redispatched_job_shows_each_call_with_the_same_webhook() -> None:
    crashed = CallFailed(at=at(2), error="job_crashed", tenant_id="acme", **CALL)
    first = [*complete_call()[:4], rec(crashed)]
    second_call = CallIds(**{**CALL, "call_id": "AJ_2"})
    second = [
        rec(JobAccepted(at=at(3), worker_id="pool-b", **second_call)),
        rec(
            CallStarted(at=at(3.5), tenant_id="acme", config_version=3, **second_call),
        ),
    ]
    timelines = build_timelines(first + second)
    assert [t.call_id for t in timelines] == ["AJ_1", "AJ_2"]
    assert [t.outcome for t in timelines] == [Outcome.FAILED, Outcome.ACTIVE]
    assert all(t.webhook_at == at(0) for t in timelines)
    assert [t.call_id for t in find(timelines, "job-RM_1")] == ["AJ_1", "AJ_2"]
    assert [t.call_id for t in find(timelines, "room-1")] == ["AJ_1", "AJ_2"]
    assert [t.call_id for t in find(timelines, "AJ_2")] == ["AJ_2"]
    assert find(timelines, "AJ_9") == []


def test_first_terminal_event_wins() -> None:
    # The dispatcher's worker_lost after a normal end, past the duplicate window.
    lost = CallFailed(at=at(60), error="worker_lost", tenant_id="acme", **CALL)
    records = [*complete_call(), rec(lost)]
    assert only(records).outcome is Outcome.ENDED


def _mixed() -> list[Timeline]:
    def call(n: int, agent: str, tenant: str, start: float, end: bool) -> list[Record]:
        ids = CallIds(call_id=f"AJ_{n}", job_id=f"job-{n}", room_name=f"r{n}", agent_id=agent)
        records = [rec(CallStarted(at=at(start), tenant_id=tenant, config_version=1, **ids))]
        if end:
            records.append(rec(CallEnded(at=at(start + 5), tenant_id=tenant, config_version=1,
                                         duration_s=5, **ids)))  # fmt: skip
        return records

    rejected = rec(
        JobRejected(
            at=at(7), job_id="job-x", room_name="rx", agent_id="a", reason=RejectReason.NO_AGENT
        )
    )
    return build_timelines(
        call(1, "a", "t1", 1, True)
        + call(2, "b", "t1", 2, False)
        + call(3, "a", "t2", 3, True)
        + [rejected]
    )


def test_select_filters_and_puts_newest_first() -> None:
    timelines = _mixed()
    assert [t.id for t in select(timelines)] == ["AJ_3", "AJ_2", "AJ_1"]
    assert [t.id for t in select(timelines, agent="a")] == ["AJ_3", "AJ_1"]
    assert [t.id for t in select(timelines, tenant="t1")] == ["AJ_2", "AJ_1"]
    assert [t.id for t in select(timelines, outcome=Outcome.ACTIVE)] == ["AJ_2"]
    assert [t.id for t in select(timelines, outcome=Outcome.REJECTED)] == ["job-x"]
    assert select(timelines, include_jobs=True)[0].id == "job-x"
    assert [t.id for t in select(timelines, limit=2)] == ["AJ_3", "AJ_2"]


def test_list_is_an_aligned_table() -> None:
    lines = render_list(select(_mixed())).splitlines()
    header = lines[0].split()
    assert header[:3] == ["STARTED", "(UTC)", "CALL"]
    columns = [lines[0].index(name) for name in ("CALL", "OUTCOME", "DURATION S")]
    for line in lines[1:]:
        for column in columns:
            assert line[column - 2 : column] == "  " and line[column] != " "
    assert lines[1].split() == [
        "2025-03-01T12:00:03.000Z",
        "AJ_3",
        "a",
        "t2",
        "1",
        "ended",
        "-",
        "5.00",
        "-",
    ]


def test_trace_id_of_accepts_only_valid_traceparents() -> None:
    assert trace_id_of(tp()) == TRACE
    assert trace_id_of(tp().upper()) == TRACE
    assert trace_id_of("") is None
    assert trace_id_of(tp(trace="0" * 32)) is None
    assert trace_id_of("00-xyz-00f067aa0ba902b7-01") is None


def test_since_and_times() -> None:
    assert parse_since("90s").delta == dt.timedelta(seconds=90)
    assert parse_since("24h").delta == dt.timedelta(hours=24)
    assert parse_since("1.5d").delta == dt.timedelta(hours=36)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_since("yesterday")
    assert iso(at(1.2345)) == "2025-03-01T12:00:01.234Z"
    assert iso(None) == "-"


def test_command_line() -> None:
    listing = build_parser().parse_args(["calls", "--agent", "a", "--outcome", "rejected"])
    assert (listing.call_id, listing.agent, listing.outcome) == (None, "a", Outcome.REJECTED)
    assert listing.since.text == "24h" and listing.limit == 50 and not listing.json
    show = build_parser().parse_args(["calls", "show", "AJ_1", "--since", "7d", "--json"])
    assert (show.call_id, show.since.text, show.json) == ("AJ_1", "7d", True)
    before = build_parser().parse_args(["calls", "--json", "--since", "2h", "show", "AJ_1"])
    assert (before.call_id, before.since.text, before.json) == ("AJ_1", "2h", True)
    for bad in (["--outcome", "great"], ["--limit", "0"], ["--since", "soon"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["calls", *bad])
