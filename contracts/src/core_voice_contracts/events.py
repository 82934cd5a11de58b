"""Events on the Core Voice streams: one tagged union per subject family.

Evolve only by adding fields with defaults; never rename, reorder or retype. A breaking
change is a new type (and a new subject version). Messages never carry transcripts,
provider keys or tokens.
"""

import datetime as dt
from enum import StrEnum

import msgspec

from core_voice_contracts.runtime_config import RuntimeConfig


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Common base: every event says when it happened."""

    at: dt.datetime = msgspec.field(default_factory=utcnow)


# --- voice.jobs.* (VOICE_JOBS) -------------------------------------------------------


class RejectReason(StrEnum):
    NO_AGENT = "no_agent"  # room metadata names no agent
    INVALID_METADATA = "invalid_metadata"  # metadata is not the expected JSON object
    UNKNOWN_AGENT = "unknown_agent"  # config_sync does not know the agent
    DISABLED_AGENT = "disabled_agent"
    DISPATCH_FAILED = "dispatch_failed"  # LiveKit kept failing past the retry budget
    NO_ROUTE = "no_route"  # campaign without agents, dialed number without a mapping
    CONFIG_UNAVAILABLE = "config_unavailable"  # config_sync unreachable past the retry budget


class JobRequested(_Event, frozen=True, kw_only=True, tag="job.requested"):
    """A room needs an agent. ``job_id`` is stable per room, so duplicates collapse."""

    job_id: str
    room_name: str
    room_sid: str
    agent_id: str
    campaign_id: str | None = None
    lead_id: str | None = None
    webhook_id: str = ""
    trigger: str = "room_started"
    dialed_number: str | None = None
    """SIP: the number the caller dialed (``sip.trunkPhoneNumber``), when that routes."""
    participant_identity: str | None = None
    """SIP: the caller participant whose arrival triggered the job."""


class JobDispatched(_Event, frozen=True, kw_only=True, tag="job.dispatched"):
    """LiveKit accepted an explicit dispatch of the worker pool into the room."""

    job_id: str
    room_name: str
    agent_id: str
    dispatch_id: str
    worker_agent_name: str
    already_existed: bool = False
    target: str = "pool"
    """``pool`` or ``legacy`` (a gradual migration's share): `routing.Target`."""
    campaign_id: str | None = None
    via: str = ""
    """How the agent was found (`routing.RouteResolved.via`): agent, campaign, dialed_number."""


class ExpiredDetail(StrEnum):
    ROOM_GONE = "room_gone"  # no room with this sid when the dispatch was due
    CALLER_LEFT = "caller_left"  # the SIP caller that triggered the job hung up first
    ROOM_CLOSED_DURING_DISPATCH = "room_closed_during_dispatch"  # closed while dispatching


class JobExpired(_Event, frozen=True, kw_only=True, tag="job.expired"):
    """The room was gone when the dispatch was due; it is never re-created."""

    job_id: str
    room_name: str
    agent_id: str
    detail: str = ""
    """Why, when known: an `ExpiredDetail` value."""


class JobRejected(_Event, frozen=True, kw_only=True, tag="job.rejected"):
    """The job cannot be routed or dispatched; ``reason`` says why."""

    job_id: str
    room_name: str
    agent_id: str
    reason: RejectReason
    detail: str = ""


JobEvent = JobRequested | JobDispatched | JobExpired | JobRejected


# --- voice.calls.* (VOICE_CALLS) -----------------------------------------------------


class CallStarted(_Event, frozen=True, kw_only=True, tag="call.started"):
    """A worker joined the room and is about to greet."""

    call_id: str
    job_id: str
    room_name: str
    agent_id: str
    tenant_id: str
    config_version: int
    worker_id: str = ""
    config_load_s: float = 0.0


class CallEnded(_Event, frozen=True, kw_only=True, tag="call.ended"):
    """The call finished normally. Latencies in seconds; usage counters are totals."""

    call_id: str
    job_id: str
    room_name: str
    agent_id: str
    tenant_id: str
    config_version: int
    duration_s: float
    greeting_latency_s: float | None = None
    turns: int = 0
    turn_latencies_s: list[float] = msgspec.field(default_factory=list)
    llm_tokens: int = 0
    tts_characters: int = 0
    stt_audio_s: float = 0.0
    end_reason: str = ""


class CallFailed(_Event, frozen=True, kw_only=True, tag="call.failed"):
    """The call could not start or broke; ``error`` is a fixed code, never user data."""

    call_id: str
    job_id: str
    room_name: str
    agent_id: str
    tenant_id: str = ""
    config_version: int = 0
    error: str
    retryable: bool = False
    duration_s: float = 0.0


CallEvent = CallStarted | CallEnded | CallFailed


# --- voice.config.changed.* (VOICE_CONFIG) ---------------------------------------------


class ChangeKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    CAMPAIGN = "campaign"


class ConfigChanged(_Event, frozen=True, kw_only=True, tag="config.changed"):
    """An agent's config has a new version; holders of an older one refresh."""

    agent_id: str
    tenant_id: str
    version: int
    kind: ChangeKind
    campaign_id: str | None = None
    """For ``kind=campaign``: the campaign whose change gave the agent this version."""


ConfigEvent = ConfigChanged


# --- voice.config.routing.* (VOICE_CONFIG) ---------------------------------------------


class RoutingChanged(_Event, frozen=True, kw_only=True, tag="routing.changed"):
    """Routing data changed without giving any agent a new version (an agent's status or
    legacy share, a campaign's status or link weight, a number mapping, a campaign
    created or deleted): holders of routing answers drop them all. The ids say what
    changed, for people and tools; a holder does not need them to stay correct."""

    tenant_id: str
    agent_id: str | None = None
    campaign_id: str | None = None
    number: str | None = None
    """The dialed number (E.164) whose mapping was set or removed."""


ConfigStreamEvent = ConfigChanged | RoutingChanged
"""Everything on ``VOICE_CONFIG``, i.e. everything config_sync's outbox holds."""


# --- voice.config.get (request / reply) ------------------------------------------------


class ConfigGetRequest(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="config.get"
):
    """Ask for an agent's runtime config, optionally merged with a campaign."""

    agent_id: str
    campaign_id: str | None = None
    min_version: int = 0


class ConfigFound(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="config.found"):
    """The agent's runtime config (carries keys: request/reply only, never a stream)."""

    config: RuntimeConfig


class ConfigNotFound(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="config.not_found"
):
    agent_id: str
    reason: str = "unknown_agent"


class ConfigGetError(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="config.error"
):
    error: str
    retryable: bool = True


ConfigGetReply = ConfigFound | ConfigNotFound | ConfigGetError

ALL_MESSAGES: tuple[type[msgspec.Struct], ...] = (
    JobRequested,
    JobDispatched,
    JobExpired,
    JobRejected,
    CallStarted,
    CallEnded,
    CallFailed,
    ConfigChanged,
    RoutingChanged,
    ConfigGetRequest,
    ConfigFound,
    ConfigNotFound,
    ConfigGetError,
)
