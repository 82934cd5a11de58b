"""Dispatcher settings: explicit argument > environment > default.

Every field names its environment variable; a missing required one fails startup with
its name. Settings that must agree with the VOICE_JOBS stream (the replay window) are
checked against the live stream at startup, see `check_against_stream`.
"""

from enum import StrEnum

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from core_voice_contracts.permissions import Role as BusRole
from core_voice_contracts.settings import ServiceSettings
from core_voice_dispatcher.errors import ConfigurationError


class Role(StrEnum):
    ALL = "all"  # webhook endpoint and dispatch consumer (the default, one process)
    INGEST = "ingest"  # webhook endpoint only: scale ingestion apart from dispatch
    DISPATCH = "dispatch"  # dispatch consumer only (its /healthz still answers)


class DispatcherSettings(ServiceSettings):
    """Environment variables are the field names upper-cased (``DISPATCHER_HTTP_PORT``...),
    and the shared ``NATS_*`` (`ServiceSettings`)."""

    bus_role = BusRole.DISPATCHER
    model_config = SettingsConfigDict(env_prefix="DISPATCHER_")

    role: Role = Role.ALL
    """DISPATCHER_ROLE: ``all``, ``ingest`` (webhooks only) or ``dispatch`` (consumer only)."""
    http_host: str = "127.0.0.1"
    """DISPATCHER_HTTP_HOST: where the webhook endpoint listens."""
    http_port: int = 8082
    """DISPATCHER_HTTP_PORT."""
    max_body_bytes: int = Field(default=512 * 1024, ge=1024)
    """DISPATCHER_MAX_BODY_BYTES: larger webhook bodies get 413. LiveKit's are 1-2 KiB, but
    room metadata and participant attributes may each reach 64 KB (LiveKit's limits)."""
    webhook_max_age_s: float = Field(default=120.0, gt=0)
    """DISPATCHER_WEBHOOK_MAX_AGE_S: webhooks whose ``createdAt`` is older get 401. Must
    cover LiveKit's own retries (about 15 s) and queueing; with the clock skew it must fit
    in the VOICE_JOBS duplicate window, so a replayed event is always caught."""
    max_clock_skew_s: float = Field(default=30.0, ge=0)
    """DISPATCHER_MAX_CLOCK_SKEW_S: how far LiveKit's clock may be ahead of or behind ours."""
    livekit_url: str = Field(default="http://127.0.0.1:7880", validation_alias="LIVEKIT_URL")
    """LIVEKIT_URL: the LiveKit server API (ws:// or http://)."""
    livekit_api_key: str = Field(validation_alias="LIVEKIT_API_KEY")
    """LIVEKIT_API_KEY: required; also the key webhooks are signed with."""
    livekit_api_secret: SecretStr = Field(validation_alias="LIVEKIT_API_SECRET", repr=False)
    """LIVEKIT_API_SECRET: required; never logged."""
    livekit_timeout_s: float = Field(default=5.0, gt=0)
    """DISPATCHER_LIVEKIT_TIMEOUT_S: per LiveKit API call; a timeout is retried with backoff."""
    worker_agent_name: str = Field(default="core-voice", validation_alias="WORKER_AGENT_NAME")
    """WORKER_AGENT_NAME: the agent name the shared worker pool registers under."""
    consumer_name: str = "dispatcher"
    """DISPATCHER_CONSUMER_NAME: the durable JetStream consumer doing dispatches."""
    consumer_metrics_interval_s: float = Field(default=5.0, gt=0)
    """DISPATCHER_CONSUMER_METRICS_INTERVAL_S: how often the durable consumer's backlog is
    read for ``corevoice_dispatcher_consumer_pending``."""
    consumer_lookback_s: float = Field(default=300.0, ge=0)
    """DISPATCHER_CONSUMER_LOOKBACK_S: a newly created durable consumer starts this far back
    in VOICE_JOBS, not at its beginning: a job minutes old is not worth a dispatch, and a
    lost consumer must not re-drive a week of jobs. Replay older ones explicitly."""
    replay_prefix: str = "dispatcher-replay"
    """DISPATCHER_REPLAY_PREFIX: consumers on VOICE_JOBS named so are replays the dispatcher
    works through beside live traffic (see docs/operations/nats-cli.md)."""
    max_deliver: int = Field(default=6, ge=1)
    """DISPATCHER_MAX_DELIVER: attempts before a job is rejected (dispatch_failed or
    config_unavailable). Retries back off exponentially from 0.5 s, at most 15 s apart."""
    ack_wait_s: float = Field(default=30.0, ge=1.0)
    """DISPATCHER_ACK_WAIT_S: after a crash, unacknowledged jobs are redelivered this late.
    Must exceed the longest handling of one job (route + 4 LiveKit calls + publish)."""
    max_concurrency: int = Field(default=64, ge=1)
    """DISPATCHER_MAX_CONCURRENCY: jobs handled at once by one process."""
    replay_concurrency: int = Field(default=8, ge=1)
    """DISPATCHER_REPLAY_CONCURRENCY: jobs of a replay handled at once (live traffic first)."""
    route_timeout_s: float = Field(default=1.0, gt=0)
    """DISPATCHER_ROUTE_TIMEOUT_S: how long to wait for config_sync's routing answer. It
    answers from memory in about a millisecond; a frozen config_sync holds every job this
    long before the remembered answer (or a retry) takes over, so keep it short."""
    route_memory_size: int = Field(default=10_000, ge=0)
    """DISPATCHER_ROUTE_MEMORY_SIZE: routing answers remembered (per agent, campaign and
    dialed number, least recently used dropped first) to dispatch with while config_sync
    cannot be asked. 0 turns the fallback off: jobs then wait for config_sync."""
    route_memory_max_age_s: float = Field(default=24 * 3600.0, gt=0)
    """DISPATCHER_ROUTE_MEMORY_MAX_AGE_S: a remembered answer config_sync has not repeated
    for this long is not used any more."""
    sip_wait_s: float = Field(default=10.0, ge=0)
    """DISPATCHER_SIP_WAIT_S: a room without agent metadata waits this long for a SIP caller
    whose dialed number routes it, then is rejected as ``no_agent``."""
    prefetch: bool = True
    """DISPATCHER_PREFETCH: with ``role=all``, start a job's look-ups (routing, ListRooms,
    ListDispatch) as its webhook is being stored, not when the consumer receives it. With
    several replicas the consumer may hand the job to another one, whose own look-ups then
    run too: up to two extra LiveKit reads per job. Off: look-ups start at delivery."""
    capacity_wait_s: float = Field(default=30.0, ge=0)
    """DISPATCHER_CAPACITY_WAIT_S: how long after its job was stored a dispatched room may
    wait for a worker to take it (LiveKit offers a dispatch once; the dispatcher offers it
    again while it waits). Then the job is rejected ``no_capacity``, its dispatch removed
    and, unless DISPATCHER_CAPACITY_KEEP_ROOM, the room deleted. 0: no watch (a job is
    finished once LiveKit holds its dispatch)."""
    capacity_keep_room: bool = False
    """DISPATCHER_CAPACITY_KEEP_ROOM: keep the room of a ``no_capacity`` job (for a
    backend that plays its own message to the caller) instead of deleting it."""
    capacity_max_waiting: int = Field(default=1000, ge=1)
    """DISPATCHER_CAPACITY_MAX_WAITING: jobs one process watches at once while they wait
    for a worker; past it, new dispatches wait for a free place (the consumer slows)."""
    worker_lost_grace_s: float = Field(default=15.0, ge=0, le=90)
    """DISPATCHER_WORKER_LOST_GRACE_S: after a call's agent participant left the room,
    how long the worker has to report the call's end before the dispatcher reports
    ``CallFailed(worker_lost)`` for it (the first report wins; see docs/dispatcher.md).
    Longer than a NATS leader election (up to ~8 s measured) plus the worker's publish
    retries, so a call that ended normally during one is not reported lost; at most 90 s,
    inside `VOICE_CALLS`' 120 s duplicate window that makes the first report win."""
    drain_timeout_s: float = Field(default=10.0, ge=0)
    """DISPATCHER_DRAIN_TIMEOUT_S: on SIGTERM, how long in-flight webhooks and jobs may finish."""

    def check(self) -> None:
        """Cross-field rules; raises `ConfigurationError` naming the variables (no values).

        Not a pydantic validator on purpose: its error would echo every input, secret too.
        """
        if self.ack_wait_s <= self.route_timeout_s + 4 * self.livekit_timeout_s:
            raise ConfigurationError(
                "DISPATCHER_ACK_WAIT_S must exceed DISPATCHER_ROUTE_TIMEOUT_S + "
                "4 x DISPATCHER_LIVEKIT_TIMEOUT_S, or a slow job is redelivered while in flight"
            )

    @property
    def replay_window_s(self) -> float:
        """How long after its creation a webhook may still be accepted."""
        return self.webhook_max_age_s + self.max_clock_skew_s

    @property
    def livekit_http_url(self) -> str:
        url = self.livekit_url
        if url.startswith("ws"):
            url = "http" + url[2:]
        return url


def check_against_stream(settings: DispatcherSettings, duplicate_window_s: float) -> None:
    """Refuse to start if a replayed webhook could outlive the stream's de-duplication.

    A webhook is accepted up to ``webhook_max_age_s + max_clock_skew_s`` after LiveKit
    created it, and its job is stored under a message id that JetStream de-duplicates for
    ``duplicate_window``. If the first were longer, a replay arriving after the window but
    inside the age limit would be stored as a new job.
    """
    if settings.replay_window_s > duplicate_window_s:
        raise ConfigurationError(
            f"DISPATCHER_WEBHOOK_MAX_AGE_S + DISPATCHER_MAX_CLOCK_SKEW_S "
            f"({settings.replay_window_s:g} s) exceeds the VOICE_JOBS duplicate window "
            f"({duplicate_window_s:g} s): replayed webhooks could be stored twice. Lower "
            f"the max age or raise the stream's duplicate window."
        )
