"""Turning a verified LiveKit webhook into what to store on VOICE_JOBS.

Pure: no I/O (that is `webhook_endpoint`'s), so every case is unit-tested. One job per room (``job_id`` derives from the
room sid and is the JetStream message id), so a re-sent or replayed webhook, and the
several webhooks one room produces, collapse into one job.

- ``room_started`` and a SIP caller's ``participant_joined`` request a job. Room metadata
  ``{"agent_id", "campaign_id"?, "lead_id"?}`` names the agent or campaign; a room without
  either is requested under ``_unrouted`` and resolved by the consumer (a SIP caller's
  dialed number, via config_sync), so a config_sync outage never loses a webhook.
- Metadata that is not the expected JSON object is rejected here, visibly.
- ``room_finished`` and ``participant_left`` store nothing on VOICE_JOBS: the consumer
  checks the live room (and the SIP caller) right before dispatching, which is what makes
  a pending job for a finished room expire. See docs/dispatcher.md.
- ``participant_left`` of a call's agent participant (kind AGENT, identity
  ``agent-<call id>``) is a `CheckCall`: unless its worker reports the call's end first,
  the call is reported ``CallFailed(worker_lost)`` (`calls.WorkerLostReports`).
"""

import datetime as dt
from dataclasses import dataclass

from livekit.protocol.models import DisconnectReason, ParticipantInfo
from livekit.protocol.webhook import WebhookEvent

from core_voice_contracts import subjects
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import (
    CallFailed,
    CallFailure,
    JobRejected,
    JobRequested,
    RejectReason,
)
from core_voice_contracts.ids import is_token, is_valid_id
from core_voice_contracts.room import (
    ATTR_AGENT_ID,
    ATTR_CAMPAIGN_ID,
    ATTR_CONFIG_VERSION,
    ATTR_JOB_ID,
    ATTR_TENANT_ID,
    ATTR_WORKER_ID,
    call_id_of_agent,
    decode_room_metadata,
)
from core_voice_dispatcher.errors import WebhookRejectedError

DIALED_NUMBER_ATTRIBUTE = "sip.trunkPhoneNumber"
"""LiveKit SIP: the number the caller dialed (our trunk's number)."""
TRUNK_ATTRIBUTE = "sip.trunkID"
"""LiveKit SIP: the inbound trunk the call came in on; a number routes only with it."""

JOB_EVENTS = frozenset({"room_started", "participant_joined"})
NOTED_EVENTS = frozenset({"room_finished", "participant_left"})
_MAX_REF_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Store:
    """Publish ``message`` on ``subject`` under the de-duplication id ``msg_id``."""

    subject: str
    message: JobRequested | JobRejected
    msg_id: str


@dataclass(frozen=True, slots=True)
class Skip:
    """Nothing to store; ``reason`` is a fixed word for the answer and the log."""

    reason: str


@dataclass(frozen=True, slots=True)
class CheckCall:
    """A call's agent participant left the room: ``report`` is what is published (under
    the call's outcome message id) unless the worker reports the call's end first."""

    call_id: str
    report: CallFailed
    disconnect_reason: str
    """LiveKit's word for why the participant left (``CLIENT_INITIATED``, ``ROOM_DELETED``,
    ``ROOM_CLOSED``, ``CONNECTION_TIMEOUT``, ...)."""


def job_id_for_room(room_sid: str) -> str:
    """Stable per room: every webhook of one room maps to the same job."""
    return f"job-{room_sid}"


def is_sip_caller(participant: ParticipantInfo) -> bool:
    """Only LiveKit says who is a SIP caller: the participant kind, which its SIP service
    sets and a client token cannot claim unless minted with it. ``sip.*`` attributes do
    not count: any participant allowed to update its own attributes can set them, and
    with them pick the dialed number, hence the agent and tenant, its room is routed to."""
    return participant.kind == ParticipantInfo.Kind.SIP


def plan(event: WebhookEvent) -> Store | Skip | CheckCall:
    """What a verified webhook means; raises 400 for incomplete events."""
    kind = event.event
    if kind == "participant_left":
        check = agent_left(event)
        if check is not None:
            return check
    if kind in NOTED_EVENTS:
        return Skip(kind)
    if kind not in JOB_EVENTS:
        return Skip("not_handled")
    if not event.id:
        raise WebhookRejectedError(400, "missing_event_id")
    if not event.room.sid or not event.room.name:
        raise WebhookRejectedError(400, "missing_room")
    # The room sid becomes the job id: a JetStream message id and an answer header, where
    # a control character would end the header early (aiohttp drops the connection).
    if not is_token(event.room.sid):
        raise WebhookRejectedError(400, "invalid_room")
    caller: ParticipantInfo | None = None
    if kind == "participant_joined":
        if not event.participant.identity:
            raise WebhookRejectedError(400, "missing_participant")
        if not is_sip_caller(event.participant):
            return Skip("not_a_sip_caller")
        caller = event.participant
    return _job_for_room(event, caller)


def agent_left(event: WebhookEvent) -> CheckCall | None:
    """A call's agent participant left: the report to make if its worker does not.

    The ids come from the participant's ``corevoice.*`` attributes (set by the worker when
    it joined); a missing one stays empty (the agent: ``_unrouted``, the subject it is
    published on).
    """
    participant = event.participant
    if participant.kind != ParticipantInfo.Kind.AGENT:
        return None
    call_id = call_id_of_agent(participant.identity)
    if call_id is None or not is_token(call_id):  # it becomes a message id
        return None
    attrs = participant.attributes
    agent_id = attrs.get(ATTR_AGENT_ID, "")
    try:
        version = int(attrs.get(ATTR_CONFIG_VERSION, "0"))
    except ValueError:
        version = 0
    left_at = float(event.created_at) if event.created_at else None
    joined_ms = participant.joined_at_ms or participant.joined_at * 1000
    duration = max(0.0, left_at - joined_ms / 1000) if left_at and joined_ms else 0.0
    try:
        reason = DisconnectReason.Name(participant.disconnect_reason)
    except ValueError:
        reason = str(participant.disconnect_reason)
    report = CallFailed(
        at=dt.datetime.fromtimestamp(left_at, dt.UTC) if left_at else dt.datetime.now(dt.UTC),
        call_id=call_id,
        job_id=attrs.get(ATTR_JOB_ID, ""),
        room_name=event.room.name,
        agent_id=agent_id if is_valid_id(agent_id) else subjects.UNROUTED,
        tenant_id=attrs.get(ATTR_TENANT_ID, ""),
        config_version=version,
        error=CallFailure.WORKER_LOST.value,
        duration_s=round(duration, 3),
        campaign_id=attrs.get(ATTR_CAMPAIGN_ID) or None,
        worker_id=attrs.get(ATTR_WORKER_ID, ""),
    )
    return CheckCall(call_id=call_id, report=report, disconnect_reason=reason)


def _job_for_room(event: WebhookEvent, caller: ParticipantInfo | None) -> Store:
    room = event.room
    job_id = job_id_for_room(room.sid)

    def rejected(reason: RejectReason, detail: str) -> Store:
        message = JobRejected(
            job_id=job_id,
            room_name=room.name,
            agent_id=subjects.UNROUTED,
            reason=reason,
            detail=detail,
        )
        return Store(subjects.job_rejected(subjects.UNROUTED), message, f"{job_id}-rejected")

    agent_id: str | None = None
    campaign_id: str | None = None
    lead_id: str | None = None
    if room.metadata.strip():
        try:
            meta = decode_room_metadata(room.metadata)
        except DecodeError:
            return rejected(RejectReason.INVALID_METADATA, "room metadata is not a JSON object")
        if meta.agent_id is not None and not is_valid_id(meta.agent_id):
            return rejected(RejectReason.INVALID_METADATA, "agent_id is not a valid id")
        for value in (meta.campaign_id, meta.lead_id):
            if value is not None and not 0 < len(value) <= _MAX_REF_LENGTH:
                return rejected(RejectReason.INVALID_METADATA, "campaign_id or lead_id is invalid")
        agent_id, campaign_id, lead_id = meta.agent_id, meta.campaign_id, meta.lead_id

    dialed_number: str | None = None
    trunk_id: str | None = None
    if caller is not None:
        dialed_number = caller.attributes.get(DIALED_NUMBER_ATTRIBUTE) or None
        trunk_id = caller.attributes.get(TRUNK_ATTRIBUTE) or None
    subject_agent = agent_id or subjects.UNROUTED
    message = JobRequested(
        job_id=job_id,
        room_name=room.name,
        room_sid=room.sid,
        agent_id=subject_agent,
        campaign_id=campaign_id,
        lead_id=lead_id,
        webhook_id=event.id,
        trigger=event.event,
        dialed_number=dialed_number,
        trunk_id=trunk_id,
        participant_identity=caller.identity if caller is not None else None,
    )
    return Store(subjects.job_requested(subject_agent), message, job_id)
