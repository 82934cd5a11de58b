"""Turning a verified LiveKit event into a job event.

Room metadata ``{"agent_id": ..., "campaign_id"?: ..., "lead_id"?: ...}`` names the
agent. A room that names none (or names it badly) becomes a visible `JobRejected`,
never silence.
"""

from dataclasses import dataclass

import msgspec
from livekit.protocol.webhook import WebhookEvent

from core_voice_contracts import subjects
from core_voice_contracts.events import JobRejected, JobRequested, RejectReason
from core_voice_contracts.ids import is_valid_id
from core_voice_contracts.room import decode_room_metadata


@dataclass(frozen=True)
class Routed:
    """What to publish for one webhook: subject, message and its dedup id."""

    subject: str
    message: JobRequested | JobRejected
    msg_id: str


def job_id_for_room(room_sid: str) -> str:
    """Stable per room: a re-sent webhook for the same room collapses into one job."""
    return f"job-{room_sid}"


def route_room_started(event: WebhookEvent) -> Routed:
    room = event.room
    job_id = job_id_for_room(room.sid or room.name)

    def rejected(reason: RejectReason, detail: str) -> Routed:
        message = JobRejected(
            job_id=job_id,
            room_name=room.name,
            agent_id=subjects.UNROUTED,
            reason=reason,
            detail=detail,
        )
        return Routed(subjects.job_rejected(subjects.UNROUTED), message, f"{job_id}-rejected")

    if not room.metadata.strip():
        return rejected(RejectReason.NO_AGENT, "room has no metadata")
    try:
        meta = decode_room_metadata(room.metadata)
    except msgspec.DecodeError:
        return rejected(RejectReason.INVALID_METADATA, "room metadata is not a JSON object")
    if meta.agent_id is None:
        return rejected(RejectReason.NO_AGENT, "room metadata has no agent_id")
    if not is_valid_id(meta.agent_id):
        return rejected(RejectReason.INVALID_METADATA, "agent_id is not a valid id")
    message = JobRequested(
        job_id=job_id,
        room_name=room.name,
        room_sid=room.sid,
        agent_id=meta.agent_id,
        campaign_id=meta.campaign_id,
        lead_id=meta.lead_id,
        webhook_id=event.id,
        trigger=event.event,
    )
    return Routed(subjects.job_requested(meta.agent_id), message, job_id)
