"""Contracts: schemas are current, subjects are well-formed, messages round-trip."""

import msgspec
import pytest

from core_voice_contracts import codec, schema, subjects
from core_voice_contracts.errors import DecodeError, InvalidIdentifierError
from core_voice_contracts.events import (
    CallEnded,
    CallFailed,
    CallStarted,
    ChangeKind,
    ConfigChanged,
    ConfigFound,
    ConfigGetError,
    ConfigNotFound,
    JobAccepted,
    JobDispatched,
    JobExpired,
    JobRejected,
    JobRequested,
    RejectReason,
    RoutingChanged,
)
from core_voice_contracts.runtime_config import ProviderKeys, RuntimeConfig
from core_voice_contracts.streams import stream_configs

pytestmark = pytest.mark.unit

CANARY = "sk-canary-DO-NOT-LEAK-4242"


def test_checked_in_json_schemas_are_current() -> None:
    rendered = schema.render()
    on_disk = schema.read()
    assert on_disk == rendered, "run `make schemas` and commit contracts/schemas/"


def test_every_subject_streams_into_exactly_one_stream() -> None:
    builders = [
        subjects.job_requested,
        subjects.job_dispatched,
        subjects.job_accepted,
        subjects.job_expired,
        subjects.job_rejected,
        subjects.call_started,
        subjects.call_ended,
        subjects.call_failed,
        subjects.config_changed,
        subjects.routing_changed,
    ]

    def matches(pattern: str, subject: str) -> bool:
        p, s = pattern.split("."), subject.split(".")
        if p[-1] == ">":
            return s[: len(p) - 1] == p[:-1] or all(
                a in ("*", b) for a, b in zip(p[:-1], s, strict=False)
            )
        return len(p) == len(s) and all(a in ("*", b) for a, b in zip(p, s, strict=True))

    for build in builders:
        subject = build("agent-1")
        owners = [
            c.name for c in stream_configs() for pat in c.subjects or [] if matches(pat, subject)
        ]
        assert len(owners) == 1, (subject, owners)
    assert subjects.job_requested("a1") == "voice.jobs.requested.a1"
    assert subjects.job_rejected(subjects.UNROUTED) == "voice.jobs.rejected._unrouted"


@pytest.mark.parametrize("bad", ["", "a.b", "a*", ">", "a b", "-x", "x" * 65, "ä"])
def test_subject_builders_refuse_ids_that_would_break_subjects(bad: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        subjects.job_requested(bad)


def test_job_events_round_trip_through_one_decoder() -> None:
    events = [
        JobRequested(job_id="j", room_name="r", room_sid="RM_1", agent_id="a"),
        JobDispatched(
            job_id="j", room_name="r", agent_id="a", dispatch_id="d", worker_agent_name="w"
        ),
        JobAccepted(job_id="j", room_name="r", agent_id="a", call_id="AJ_1", worker_id="pod-1"),
        JobExpired(job_id="j", room_name="r", agent_id="a"),
        JobRejected(job_id="j", room_name="r", agent_id="a", reason=RejectReason.UNKNOWN_AGENT),
    ]
    for event in events:
        assert codec.decode_job_event(codec.encode(event)) == event


def test_call_and_config_events_round_trip() -> None:
    calls = [
        CallStarted(
            call_id="c", job_id="j", room_name="r", agent_id="a", tenant_id="t", config_version=1
        ),
        CallEnded(
            call_id="c",
            job_id="j",
            room_name="r",
            agent_id="a",
            tenant_id="t",
            config_version=1,
            duration_s=3.5,
            turn_latencies_s=[0.4],
        ),
        CallFailed(
            call_id="c", job_id="j", room_name="r", agent_id="a", error="config_unavailable"
        ),
    ]
    for event in calls:
        assert codec.decode_call_event(codec.encode(event)) == event
    change = ConfigChanged(agent_id="a", tenant_id="t", version=2, kind=ChangeKind.UPDATED)
    assert codec.decode_config_event(codec.encode(change)) == change


def test_routing_events_are_their_own_family_on_the_config_stream() -> None:
    routing = RoutingChanged(tenant_id="t", campaign_id="c")
    config = ConfigChanged(agent_id="a", tenant_id="t", version=2, kind=ChangeKind.CAMPAIGN)
    for event in (routing, config):  # the outbox relay reads both
        assert codec.decode_config_stream_event(codec.encode(event)) == event
    with pytest.raises(DecodeError):  # readers of voice.config.changed.* never get one
        codec.decode_config_event(codec.encode(routing))
    assert subjects.routing_changed("t") == "voice.config.routing.t"
    assert subjects.routing_changed("t") != subjects.ROUTING_RESOLVE


def test_decoders_reject_other_families_and_garbage_with_a_typed_error() -> None:
    change = codec.encode(
        ConfigChanged(agent_id="a", tenant_id="t", version=1, kind=ChangeKind.CREATED)
    )
    for data in (b"", b"{", b"[]", b'{"type":"nope"}', change):
        with pytest.raises(DecodeError):
            codec.decode_job_event(data)


def test_messages_accept_unknown_fields_for_forward_compatibility() -> None:
    raw = msgspec.json.decode(codec.encode(JobExpired(job_id="j", room_name="r", agent_id="a")))
    raw["added_in_a_later_version"] = 1
    assert isinstance(codec.decode_job_event(msgspec.json.encode(raw)), JobExpired)


def test_provider_keys_never_show_in_reprs() -> None:
    config = RuntimeConfig(
        agent_id="a", tenant_id="t", version=1, keys=ProviderKeys(values={"openai": CANARY})
    )
    found = ConfigFound(config=config)
    for text in (repr(config), str(config), repr(found), repr(config.keys), f"{config}"):
        assert CANARY not in text
    # ...but the key does travel to the worker on the request/reply path.
    decoded = codec.decode_config_reply(codec.encode(found))
    assert isinstance(decoded, ConfigFound)
    assert decoded.config.keys.get("openai") == CANARY


def test_config_replies_are_one_tagged_union() -> None:
    for reply in (ConfigNotFound(agent_id="a"), ConfigGetError(error="x")):
        assert codec.decode_config_reply(codec.encode(reply)) == reply
