"""Webhook -> VOICE_JOBS: one job per room, unroutable metadata rejected visibly."""

import json

import pytest
from google.protobuf.json_format import Parse
from livekit.protocol.models import ParticipantInfo
from livekit.protocol.webhook import WebhookEvent

from core_voice_contracts import subjects
from core_voice_contracts.codec import encode
from core_voice_contracts.events import JobRejected, JobRequested, RejectReason
from core_voice_contracts.routing import RouteRequest
from core_voice_dispatcher.errors import WebhookRejectedError
from core_voice_dispatcher.lookups import route_request
from core_voice_dispatcher.route_memory import memory_key, number_key
from core_voice_dispatcher.webhook_plan import Skip, Store, is_sip_caller, plan
from tests.fakes.webhooks import participant_body, room_finished_body, room_started_body

pytestmark = pytest.mark.unit


def event(body: bytes) -> WebhookEvent:
    return Parse(body.decode(), WebhookEvent(), ignore_unknown_fields=True)


def stored(body: bytes) -> Store:
    action = plan(event(body))
    assert isinstance(action, Store)
    return action


def test_room_naming_an_agent_requests_a_job_keyed_by_the_room() -> None:
    meta = json.dumps({"agent_id": "a1", "campaign_id": "c1", "lead_id": "L1"})
    action = stored(room_started_body("r", "RM_1", meta))
    job = action.message
    assert isinstance(job, JobRequested)
    assert action.subject == subjects.job_requested("a1") and action.msg_id == "job-RM_1"
    assert (job.agent_id, job.campaign_id, job.lead_id) == ("a1", "c1", "L1")
    assert job.trigger == "room_started" and job.webhook_id.startswith("EV_")
    # Another webhook for the same room is the same job (same message id).
    assert stored(room_started_body("r", "RM_1", meta)).msg_id == action.msg_id


def test_campaign_only_and_no_metadata_are_unrouted_for_the_consumer() -> None:
    campaign = stored(room_started_body("r", "RM_2", json.dumps({"campaign_id": "c9"})))
    assert campaign.subject == subjects.job_requested(subjects.UNROUTED)
    assert isinstance(campaign.message, JobRequested) and campaign.message.campaign_id == "c9"
    for meta in ["", "   ", "{}", json.dumps({"lead_id": "x"})]:
        bare = stored(room_started_body("r", "RM_3", meta))
        assert isinstance(bare.message, JobRequested)
        assert bare.message.agent_id == subjects.UNROUTED and bare.message.dialed_number is None


def test_sip_caller_carries_the_dialed_number_and_identity() -> None:
    body = participant_body(
        "participant_joined",
        "call-1",
        "RM_4",
        "sip_caller",
        attributes={
            "sip.trunkPhoneNumber": "+15551230000",
            "sip.trunkID": "ST_trunk1",
            "sip.phoneNumber": "+1999",
        },
    )
    action = stored(body)
    job = action.message
    assert isinstance(job, JobRequested) and action.msg_id == "job-RM_4"
    assert action.subject == subjects.job_requested(subjects.UNROUTED)
    assert job.dialed_number == "+15551230000" and job.participant_identity == "sip_caller"
    # The number routes with its trunk (config_sync resolves on the pair).
    assert job.trunk_id == "ST_trunk1"
    assert route_request(job).trunk_id == "ST_trunk1"
    assert job.trigger == "participant_joined"
    # A caller's number is not the dialed number: it never lands in the job.
    assert b"+1999" not in encode(job)
    # With agent metadata, the metadata routes; the caller is still recorded.
    named = stored(
        participant_body(
            "participant_joined",
            "call-1",
            "RM_4",
            "sip_caller",
            metadata=json.dumps({"agent_id": "a2"}),
            attributes={"sip.trunkPhoneNumber": "+15551230000"},
        )
    )
    assert named.subject == subjects.job_requested("a2") and named.msg_id == "job-RM_4"


def test_non_sip_participants_and_other_events_store_nothing() -> None:
    for kind in ["STANDARD", "AGENT"]:
        body = participant_body("participant_joined", "r", "RM_5", "u", participant_kind=kind)
        assert plan(event(body)) == Skip("not_a_sip_caller")
    # An agent never counts as a caller, whatever attributes it has.
    body = participant_body(
        "participant_joined",
        "r",
        "RM_5",
        "agent",
        participant_kind="AGENT",
        attributes={"sip.trunkPhoneNumber": "+1"},
    )
    assert plan(event(body)) == Skip("not_a_sip_caller")
    assert plan(event(room_finished_body("r", "RM_5"))) == Skip("room_finished")
    left = participant_body("participant_left", "r", "RM_5", "sip_caller")
    assert plan(event(left)) == Skip("participant_left")
    other = json.dumps({"event": "track_published", "id": "EV_1", "createdAt": "1"}).encode()
    assert plan(event(other)) == Skip("not_handled")


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ("not json", RejectReason.INVALID_METADATA),
        ("[1, 2]", RejectReason.INVALID_METADATA),
        (json.dumps({"agent_id": 5}), RejectReason.INVALID_METADATA),
        (json.dumps({"agent_id": "has.dot"}), RejectReason.INVALID_METADATA),
        (json.dumps({"agent_id": "a", "campaign_id": ""}), RejectReason.INVALID_METADATA),
        (json.dumps({"agent_id": "a", "lead_id": "x" * 500}), RejectReason.INVALID_METADATA),
    ],
)
def test_bad_metadata_is_rejected_visibly(metadata: str, reason: RejectReason) -> None:
    action = stored(room_started_body("r", "RM_6", metadata))
    assert isinstance(action.message, JobRejected) and action.message.reason == reason
    assert action.subject == subjects.job_rejected(subjects.UNROUTED)
    assert action.msg_id == "job-RM_6-rejected"


def test_incomplete_job_events_are_400() -> None:
    cases = {
        "missing_event_id": {"event": "room_started", "room": {"sid": "RM", "name": "r"}},
        "missing_room": {"event": "room_started", "id": "EV_1", "room": {"name": "r"}},
        "missing_participant": {
            "event": "participant_joined",
            "id": "EV_1",
            "room": {"sid": "RM", "name": "r"},
        },
    }
    for code, body in cases.items():
        with pytest.raises(WebhookRejectedError) as info:
            plan(event(json.dumps(body).encode()))
        assert (info.value.status, info.value.code) == (400, code)


def test_a_number_is_remembered_per_trunk() -> None:
    """The same number on two trunks is two routes (two tenants), in the route memory too."""
    on_a = RouteRequest(room_key="r", dialed_number="+15551230000", trunk_id="ST_a")
    on_b = RouteRequest(room_key="r", dialed_number="+15551230000", trunk_id="ST_b")
    assert memory_key(on_a) != memory_key(on_b)
    assert memory_key(on_a) == number_key("ST_a", "+15551230000")


def test_only_the_participant_kind_makes_a_sip_caller() -> None:
    """``sip.*`` attributes are settable by any participant allowed to update its own
    attributes: with them a browser user could pick the number, hence the agent and
    tenant, its room is routed to. Only LiveKit's kind SIP counts."""
    sip_attributes = {"sip.trunkPhoneNumber": "+15551230000", "sip.trunkID": "ST_x"}
    for kind in (ParticipantInfo.Kind.STANDARD, ParticipantInfo.Kind.INGRESS):
        pretender = ParticipantInfo(identity="u", kind=kind, attributes=sip_attributes)
        assert not is_sip_caller(pretender)
    assert is_sip_caller(ParticipantInfo(identity="c", kind=ParticipantInfo.Kind.SIP))
    body = participant_body(
        "participant_joined", "r", "RM_7", "u", participant_kind="STANDARD",
        attributes=sip_attributes,
    )  # fmt: skip
    assert plan(event(body)) == Skip("not_a_sip_caller")


def test_control_characters_never_reach_a_header() -> None:
    """The room sid becomes the job id (a NATS message id, an answer header); a call id
    from an agent's identity becomes a message id. CR/LF there would end the header."""
    for sid in ("RM_\r\nNats-Msg-Id: x", "RM_\x00", "RM 1", "RM_" + "x" * 300):
        with pytest.raises(WebhookRejectedError) as info:
            plan(event(room_started_body("r", sid, '{"agent_id": "a"}')))
        assert (info.value.status, info.value.code) == (400, "invalid_room"), sid
    # An event name of any content is not one we handle.
    odd = json.dumps({"event": "room_started\r\nX: y", "id": "EV_1", "createdAt": "1"})
    assert plan(event(odd.encode())) == Skip("not_handled")
    left = participant_body(
        "participant_left", "r", "RM_8", "agent-call\r\nX: y", participant_kind="AGENT"
    )
    assert plan(event(left)) == Skip("participant_left")
