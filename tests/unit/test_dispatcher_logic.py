"""Dispatcher decisions that need no server: settings rules, retries, replay windows."""

import datetime as dt
import logging

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo

from core_voice_contracts.codec import encode
from core_voice_contracts.events import JobDispatched, JobRequested, RejectReason
from core_voice_contracts.settings import settings_or_exit
from core_voice_dispatcher.consumer import SERVER_DELIVER_HEADROOM, consumer_config
from core_voice_dispatcher.errors import ConfigurationError
from core_voice_dispatcher.lookups import job_id_of_dispatch
from core_voice_dispatcher.outcomes import reject_reason, retry_delay
from core_voice_dispatcher.replay import ReplayConfigError, window_end
from core_voice_dispatcher.settings import DispatcherSettings, check_against_stream

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-never-printed-0123456789"


def settings(**overrides: object) -> DispatcherSettings:
    base: dict[str, object] = {"LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": SECRET}
    return DispatcherSettings(**(base | overrides))  # type: ignore[arg-type]


def test_retries_back_off_exponentially_and_cap() -> None:
    assert [retry_delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 15, 15]
    assert retry_delay(0) == 0.5


def test_config_sync_reasons_map_to_reject_reasons() -> None:
    assert reject_reason("disabled_agent") == RejectReason.DISABLED_AGENT
    assert reject_reason("unknown_agent") == RejectReason.UNKNOWN_AGENT
    assert reject_reason("something_new") == RejectReason.NO_ROUTE


def test_only_our_own_job_metadata_identifies_a_dispatch() -> None:
    job = JobRequested(job_id="job-RM_1", room_name="r", room_sid="RM_1", agent_id="a")
    assert job_id_of_dispatch(encode(job).decode()) == "job-RM_1"
    other = JobDispatched(
        job_id="x", room_name="r", agent_id="a", dispatch_id="d", worker_agent_name="w"
    )
    assert job_id_of_dispatch(encode(other).decode()) is None
    assert job_id_of_dispatch("") is None and job_id_of_dispatch('{"job_id": "x"}') is None


def test_the_durable_consumer_leaves_room_for_a_final_rejection() -> None:
    config = consumer_config(settings(max_deliver=6, ack_wait_s=40))
    assert config.durable_name == "dispatcher" and config.ack_policy == AckPolicy.EXPLICIT
    assert config.max_deliver == 6 + SERVER_DELIVER_HEADROOM and config.ack_wait == 40
    assert config.filter_subject == "voice.jobs.requested.*"


def test_replay_protection_must_fit_the_stream_duplicate_window() -> None:
    check_against_stream(settings(webhook_max_age_s=120, max_clock_skew_s=30), 300)
    with pytest.raises(ConfigurationError) as info:
        check_against_stream(settings(webhook_max_age_s=600, max_clock_skew_s=30), 300)
    message = str(info.value)
    assert "DISPATCHER_WEBHOOK_MAX_AGE_S" in message and "duplicate window" in message
    assert SECRET not in message


def test_ack_wait_must_outlast_one_job() -> None:
    settings().check()
    assert SECRET not in repr(settings()) and SECRET not in str(settings().model_dump())
    with pytest.raises(ConfigurationError, match="DISPATCHER_ACK_WAIT_S"):
        settings(ack_wait_s=5, livekit_timeout_s=5).check()


def test_bad_settings_exit_naming_the_variable_never_a_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    monkeypatch.setenv("DISPATCHER_HTTP_PORT", "not-a-port")
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as info:
        settings_or_exit(DispatcherSettings)
    assert info.value.code == 2
    text = " ".join(str(vars(r)) for r in caplog.records)
    assert "LIVEKIT_API_KEY" in text and "DISPATCHER_HTTP_PORT" in text
    assert SECRET not in text and "not-a-port" not in text


def _consumer(metadata: dict[str, str] | None, **config: object) -> ConsumerInfo:
    cfg = ConsumerConfig(
        durable_name="dispatcher-replay", ack_policy=AckPolicy.EXPLICIT, metadata=metadata
    )
    for key, value in config.items():
        setattr(cfg, key, value)
    return ConsumerInfo(
        name="dispatcher-replay",
        stream_name="VOICE_JOBS",
        config=cfg,
        created=dt.datetime.now(dt.UTC),
    )


def test_replay_windows_end_by_time_or_sequence() -> None:
    end = window_end(_consumer({"until": "2026-11-24T10:00:00Z"}))
    assert end.until == dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC) and end.bounded
    assert window_end(_consumer({"until_seq": "42"})).until_seq == 42
    assert not window_end(_consumer(None)).bounded
    for bad in [{"until": "yesterday"}, {"until": "2026-11-24T10:00:00"}, {"until_seq": "x"}]:
        with pytest.raises(ReplayConfigError):
            window_end(_consumer(bad))
    with pytest.raises(ReplayConfigError, match="explicit"):
        window_end(_consumer(None, ack_policy=AckPolicy.NONE))
    with pytest.raises(ReplayConfigError, match="pull"):
        window_end(_consumer(None, deliver_subject="deliver.here"))
