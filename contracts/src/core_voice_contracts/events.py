"""Events on the Core Voice streams: one tagged union per subject family.

Evolve only by adding fields with defaults; never rename, reorder or retype. A breaking
change is a new type (and a new subject version). Messages never carry transcripts,
provider keys or tokens.

Every wire tag is built by `tag` and ends in its message's version (``job.requested.v1``),
so a breaking change has somewhere to go: a new type tagged ``.v2``, decoded beside the
``.v1`` one while both are on the streams, its schema under ``contracts/schemas/v2/``.
The version is per message, not one for the whole package, so breaking one message does
not re-tag the rest; a suffix, not a prefix, so the name reads first and one grep finds
every version of a message.
"""

import datetime as dt
from enum import StrEnum

import msgspec

from core_voice_contracts.runtime_config import RuntimeConfig


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def tag(name: str, version: int = 1) -> str:
    """The wire tag of ``version`` of message ``name``: ``tag("job.requested")`` is
    ``"job.requested.v1"``."""
    return f"{name}.v{version}"


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Common base: every event says when it happened."""

    at: dt.datetime = msgspec.field(default_factory=utcnow)


class RpcMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Common base of a request/reply service's messages: tagged like events, but with no
    ``at`` (a reply is read at once, never replayed from a stream)."""


# --- voice.jobs.* (VOICE_JOBS) -------------------------------------------------------


class RejectReason(StrEnum):
    NO_AGENT = "no_agent"  # room metadata names no agent
    INVALID_METADATA = "invalid_metadata"  # metadata is not the expected JSON object
    UNKNOWN_AGENT = "unknown_agent"  # config_sync does not know the agent
    DISABLED_AGENT = "disabled_agent"
    DISPATCH_FAILED = "dispatch_failed"  # LiveKit kept failing past the retry budget
    NO_ROUTE = "no_route"  # campaign without agents, dialed number without a mapping
    CONFIG_UNAVAILABLE = "config_unavailable"  # config_sync unreachable past the retry budget
    NO_CAPACITY = "no_capacity"  # dispatched, but no worker had a free slot within the wait


class JobRequested(_Event, frozen=True, kw_only=True, tag=tag("job.requested")):
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
    trunk_id: str | None = None
    """SIP: the inbound trunk the call came in on (``sip.trunkID``); routes with the number."""
    participant_identity: str | None = None
    """SIP: the caller participant whose arrival triggered the job."""
    traceparent: str = ""
    """W3C trace context of the dispatch, set in the copy sent as LiveKit dispatch
    metadata, so the worker's call joins the trace the webhook started."""


class JobDispatched(_Event, frozen=True, kw_only=True, tag=tag("job.dispatched")):
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
    route_stale: bool = False
    """Routed on the dispatcher's last known answer: config_sync could not be asked."""
    requested_at: dt.datetime | None = None
    """The job's `JobRequested.at` (the webhook), so webhook -> dispatch latency needs no
    state to compute."""
    tenant_id: str = ""


class JobAccepted(_Event, frozen=True, kw_only=True, tag=tag("job.accepted")):
    """A worker pool was assigned the job by LiveKit: its call is starting.

    Sent by the pool the moment LiveKit assigns it the job, before the job process has
    joined the room (seconds later on a busy machine). The dispatcher's capacity watch
    counts the job taken from it, so it never offers a job a second time that a slow
    worker already holds."""

    job_id: str
    room_name: str
    agent_id: str
    call_id: str
    """LiveKit's job id: the call's id in every call event."""
    worker_id: str
    campaign_id: str | None = None
    requested_at: dt.datetime | None = None
    """The job's `JobRequested.at` (the webhook): webhook -> pool assigned needs no state."""


def job_accepted_msg_id(call_id: str) -> str:
    return f"{call_id}-accepted"


class ExpiredDetail(StrEnum):
    ROOM_GONE = "room_gone"  # no room with this sid when the dispatch was due
    CALLER_LEFT = "caller_left"  # the SIP caller that triggered the job hung up first
    ROOM_CLOSED_DURING_DISPATCH = "room_closed_during_dispatch"  # closed while dispatching


class JobExpired(_Event, frozen=True, kw_only=True, tag=tag("job.expired")):
    """The room was gone when the dispatch was due; it is never re-created."""

    job_id: str
    room_name: str
    agent_id: str
    detail: str = ""
    """Why, when known: an `ExpiredDetail` value."""


class JobRejected(_Event, frozen=True, kw_only=True, tag=tag("job.rejected")):
    """The job cannot be routed or dispatched; ``reason`` says why."""

    job_id: str
    room_name: str
    agent_id: str
    reason: RejectReason
    detail: str = ""


JobEvent = JobRequested | JobDispatched | JobAccepted | JobExpired | JobRejected


# --- voice.calls.* (VOICE_CALLS) -----------------------------------------------------


class CallFailure(StrEnum):
    """`CallFailed.error`: why a call could not start, or broke."""

    BAD_JOB = "bad_job"  # the dispatch metadata is not a JobRequested
    CONFIG_UNAVAILABLE = "config_unavailable"  # no config for the agent could be had
    CONFIG_OUTDATED = "config_outdated"  # a newer version was announced but cannot be fetched
    UNKNOWN_AGENT = "unknown_agent"  # config_sync does not know the agent
    AGENT_DISABLED = "agent_disabled"
    AGENT_DELETED = "agent_deleted"
    PROVIDER_CONFIG = "provider_config"  # a provider cannot be built from the config
    PROVIDER_UNAVAILABLE = "provider_unavailable"  # a provider failed at call start
    CONNECT_FAILED = "connect_failed"  # joining the LiveKit room failed
    NO_CALLER = "no_caller"  # no caller came into the room within WORKER_CALLER_WAIT_S
    SESSION_FAILED = "session_failed"  # the voice session would not start
    CALL_ERROR = "call_error"  # the running call broke on an unrecoverable error
    JOB_CRASHED = "job_crashed"  # the job process died; its pool saw it
    LAUNCH_FAILED = "launch_failed"  # the pool took the job but could start no process for it
    WORKER_LOST = "worker_lost"  # the whole worker vanished; seen from outside (dispatcher)


def call_outcome_msg_id(call_id: str) -> str:
    """The JetStream message id of a call's one terminal event (`CallEnded` or
    `CallFailed`): whoever reports a call's end first wins, later reports of the same
    call (the dispatcher's ``worker_lost`` after a normal end) collapse as duplicates."""
    return f"{call_id}-outcome"


def call_started_msg_id(call_id: str) -> str:
    return f"{call_id}-started"


class TurnLatency(msgspec.Struct, frozen=True, kw_only=True):
    """One conversational turn, from the framework's metrics (seconds; None = not measured).

    ``stt_final_s``: end of the caller's speech to the final transcript;
    ``end_of_turn_s``: end of speech to the end-of-turn decision;
    ``llm_ttft_s``: LLM time to first token; ``tts_ttfb_s``: TTS time to first byte;
    ``e2e_s``: end of the caller's speech to the agent's first audio.
    """

    stt_final_s: float | None = None
    end_of_turn_s: float | None = None
    llm_ttft_s: float | None = None
    tts_ttfb_s: float | None = None
    e2e_s: float | None = None
    config_version: int = 0
    """The config version the turn was answered with."""


class CallStarted(_Event, frozen=True, kw_only=True, tag=tag("call.started")):
    """A worker joined the room and is about to greet."""

    call_id: str
    job_id: str
    room_name: str
    agent_id: str
    tenant_id: str
    config_version: int
    worker_id: str = ""
    config_load_s: float = 0.0
    """Job entry to the runtime config in hand."""
    campaign_id: str | None = None
    setup_s: float = 0.0
    """Job entry to the voice session running in the room."""
    config_stale: bool = False
    """Started on the last known good config: config_sync could not confirm it."""
    requested_at: dt.datetime | None = None
    """The job's `JobRequested.at` (the webhook): webhook -> agent joined needs no state."""
    accepted_at: dt.datetime | None = None
    """When LiveKit assigned the job to this pool (`JobAccepted.at`)."""


class CallEnded(_Event, frozen=True, kw_only=True, tag=tag("call.ended")):
    """The call finished normally. Latencies in seconds; usage counters are totals."""

    call_id: str
    job_id: str
    room_name: str
    agent_id: str
    tenant_id: str
    config_version: int
    """The version the call started on."""
    duration_s: float
    greeting_latency_s: float | None = None
    turns: int = 0
    turn_latencies_s: list[float] = msgspec.field(default_factory=list)
    llm_tokens: int = 0
    tts_characters: int = 0
    stt_audio_s: float = 0.0
    end_reason: str = ""
    campaign_id: str | None = None
    worker_id: str = ""
    config_versions: list[int] = msgspec.field(default_factory=list)
    """Every version the call ran on, the starting one first, in the order applied."""
    turn_metrics: list[TurnLatency] = msgspec.field(default_factory=list)
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0
    tts_audio_s: float = 0.0
    config_stale: bool = False


class CallFailed(_Event, frozen=True, kw_only=True, tag=tag("call.failed")):
    """The call could not start or broke; ``error`` is a `CallFailure` code and ``detail``
    says more (never user data, transcripts or keys)."""

    call_id: str
    job_id: str
    room_name: str
    agent_id: str
    tenant_id: str = ""
    config_version: int = 0
    error: str
    retryable: bool = False
    duration_s: float = 0.0
    detail: str = ""
    campaign_id: str | None = None
    worker_id: str = ""
    config_versions: list[int] = msgspec.field(default_factory=list)


CallEvent = CallStarted | CallEnded | CallFailed


# --- voice.config.changed.* (VOICE_CONFIG) ---------------------------------------------


class ChangeKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    CAMPAIGN = "campaign"


class ConfigChanged(_Event, frozen=True, kw_only=True, tag=tag("config.changed")):
    """An agent's config has a new version; holders of an older one refresh."""

    agent_id: str
    tenant_id: str
    version: int
    kind: ChangeKind
    campaign_id: str | None = None
    """For ``kind=campaign``: the campaign whose change gave the agent this version."""


ConfigEvent = ConfigChanged


# --- voice.config.routing.* (VOICE_CONFIG) ---------------------------------------------


class RoutingChanged(_Event, frozen=True, kw_only=True, tag=tag("routing.changed")):
    """Routing data changed without giving any agent a new version (an agent's status or
    legacy share, a campaign's status or link weight, a number mapping, a campaign
    created or deleted): holders of routing answers drop them all. The ids say what
    changed, for people and tools; a holder does not need them to stay correct."""

    tenant_id: str
    agent_id: str | None = None
    campaign_id: str | None = None
    number: str | None = None
    """The dialed number (E.164) whose mapping was set or removed."""
    trunk_id: str | None = None
    """The SIP trunk of ``number``, or the trunk whose assignment changed."""


ConfigStreamEvent = ConfigChanged | RoutingChanged
"""Everything on ``VOICE_CONFIG``, i.e. everything config_sync's outbox holds."""


# --- voice.config.get (request / reply) ------------------------------------------------


class ConfigGetRequest(RpcMessage, frozen=True, kw_only=True, tag=tag("config.get")):
    """Ask for an agent's runtime config, optionally merged with a campaign."""

    agent_id: str
    campaign_id: str | None = None
    min_version: int = 0


class ConfigFound(RpcMessage, frozen=True, kw_only=True, tag=tag("config.found")):
    """The agent's runtime config (carries keys: request/reply only, never a stream)."""

    config: RuntimeConfig


class ConfigNotFound(RpcMessage, frozen=True, kw_only=True, tag=tag("config.not_found")):
    agent_id: str
    reason: str = "unknown_agent"


class ConfigGetError(RpcMessage, frozen=True, kw_only=True, tag=tag("config.error")):
    error: str
    retryable: bool = True


ConfigGetReply = ConfigFound | ConfigNotFound | ConfigGetError

# --- voice.workers.* (core NATS, no stream: live state, not history) --------------------


class WorkerStatus(_Event, frozen=True, kw_only=True, tag=tag("worker.status")):
    """A pool's heartbeat: what it holds now. Sent every ``interval_s``; a pool not heard
    from for three intervals is counted gone. Fleet gauges (workers, capacity,
    utilisation) are built from these, so they are right again one interval after a
    telemetry restart."""

    worker_id: str
    capacity: int
    active_calls: int
    draining: bool = False
    interval_s: float = 5.0
    stale_configs: int = 0
    """Configs the pool serves as last known good (config_sync could not confirm them)."""
    agent_name: str = ""
    """The LiveKit agent name the pool is registered under ("": not said)."""
    full: bool = False
    """LiveKit offers this pool nothing now: not registered with LiveKit, told it is full
    (its cap reached), or draining."""
    turned_away: int = 0
    """Offers this pool answered unavailable since it started. A pool sends a heartbeat at
    once when ``full`` changes or it turns an offer away: the dispatcher re-offers a
    dispatch only if some launch may have found no pool to take it (`pool_offers`)."""


MISSED_HEARTBEATS = 3
"""A pool not heard from for this many of its `WorkerStatus.interval_s` is gone: telemetry's
fleet gauges and the dispatcher's checks count it alike."""


class ConfigHeld(_Event, frozen=True, kw_only=True, tag=tag("config.held")):
    """A pool holds a new config version (from `ConfigChanged` or a fetch): config
    propagation lag is ``at - changed_at``, to the first pool and to every pool."""

    worker_id: str
    agent_id: str
    tenant_id: str
    version: int
    changed_at: dt.datetime
    """The announcing `ConfigChanged.at` (the commit)."""


WorkerEvent = WorkerStatus | ConfigHeld


ALL_MESSAGES: tuple[type[msgspec.Struct], ...] = (
    JobRequested,
    JobDispatched,
    JobAccepted,
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
    WorkerStatus,
    ConfigHeld,
)
