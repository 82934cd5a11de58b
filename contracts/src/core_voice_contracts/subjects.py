"""Every NATS subject Core Voice uses, built here and nowhere else.

Grouped by family in the order of `events`: jobs, calls, config (changes and the
request/reply services) and workers; each ``*_ALL`` wildcard sits beside its builder.

Decision: subjects carry the agent id, not the tenant id. Agent ids are globally unique
and the tenant is in every message; per-tenant NATS permissions are not needed because
tenants never hold NATS credentials (only our services do). The one exception is
`routing_changed`: a campaign or number change belongs to no single agent, so it carries
the tenant id.
"""

from core_voice_contracts.ids import check_id

PREFIX = "voice"

# Jobs for a room that names no valid agent still need a subject to be visible on.
UNROUTED = "_unrouted"


def _agent_token(agent_id: str) -> str:
    return UNROUTED if agent_id == UNROUTED else check_id(agent_id, what="agent id")


# --- voice.jobs.* (VOICE_JOBS) -------------------------------------------------------

JOBS_ALL = f"{PREFIX}.jobs.>"


def jobs_for_agent(agent_id: str) -> str:
    """Every job event of one agent (a filter for consumers and `nats` commands)."""
    return f"{PREFIX}.jobs.*.{_agent_token(agent_id)}"


def job_requested(agent_id: str) -> str:
    return f"{PREFIX}.jobs.requested.{_agent_token(agent_id)}"


JOBS_REQUESTED_ALL = f"{PREFIX}.jobs.requested.*"


def job_dispatched(agent_id: str) -> str:
    return f"{PREFIX}.jobs.dispatched.{_agent_token(agent_id)}"


JOBS_DISPATCHED_ALL = f"{PREFIX}.jobs.dispatched.*"


def job_accepted(agent_id: str) -> str:
    return f"{PREFIX}.jobs.accepted.{_agent_token(agent_id)}"


JOBS_ACCEPTED_ALL = f"{PREFIX}.jobs.accepted.*"


def job_expired(agent_id: str) -> str:
    return f"{PREFIX}.jobs.expired.{_agent_token(agent_id)}"


JOBS_EXPIRED_ALL = f"{PREFIX}.jobs.expired.*"


def job_rejected(agent_id: str) -> str:
    return f"{PREFIX}.jobs.rejected.{_agent_token(agent_id)}"


JOBS_REJECTED_ALL = f"{PREFIX}.jobs.rejected.*"


# --- voice.calls.* (VOICE_CALLS) -----------------------------------------------------

CALLS_ALL = f"{PREFIX}.calls.>"


def calls_for_agent(agent_id: str) -> str:
    """Every call event of one agent."""
    return f"{PREFIX}.calls.*.{_agent_token(agent_id)}"


def call_started(agent_id: str) -> str:
    return f"{PREFIX}.calls.started.{_agent_token(agent_id)}"


CALLS_STARTED_ALL = f"{PREFIX}.calls.started.*"


def call_ended(agent_id: str) -> str:
    return f"{PREFIX}.calls.ended.{_agent_token(agent_id)}"


CALLS_ENDED_ALL = f"{PREFIX}.calls.ended.*"


def call_failed(agent_id: str) -> str:
    return f"{PREFIX}.calls.failed.{_agent_token(agent_id)}"


CALLS_FAILED_ALL = f"{PREFIX}.calls.failed.*"


# --- voice.config.* (VOICE_CONFIG) ---------------------------------------------------


def config_changed(agent_id: str) -> str:
    return f"{PREFIX}.config.changed.{_agent_token(agent_id)}"


CONFIG_CHANGED_ALL = f"{PREFIX}.config.changed.*"


def routing_changed(tenant_id: str) -> str:
    """`RoutingChanged` of one tenant (on ``VOICE_CONFIG``, not the request subject
    `ROUTING_RESOLVE`)."""
    return f"{PREFIX}.config.routing.{check_id(tenant_id, what='tenant id')}"


ROUTING_CHANGED_ALL = f"{PREFIX}.config.routing.*"


def config_echo(subject: str) -> str:
    """The core-NATS echo of a ``VOICE_CONFIG`` subject, sent by config_sync once the
    stream stored the message: pools hear an edit at once even while their ordered
    consumer stalls (its NATS node restarted or catching up). No stream captures it."""
    if not subject.startswith(f"{PREFIX}.config."):
        raise ValueError(f"not a VOICE_CONFIG subject: {subject!r}")
    return f"{PREFIX}.echo.{subject.removeprefix(PREFIX + '.')}"


CONFIG_ECHO_ALL = f"{PREFIX}.echo.config.>"


# --- request/reply (config_sync micro services, no stream) ----------------------------

CONFIG_GET = f"{PREFIX}.config.get"
"""`ConfigGetRequest` -> `ConfigGetReply`: an agent's runtime config."""
ROUTING_RESOLVE = f"{PREFIX}.routing.resolve"
"""`RouteRequest` -> `RouteReply`: which agent and target serve a room."""


# --- voice.workers.* (core NATS, no stream: live state, not history) --------------------

WORKERS_ALL = f"{PREFIX}.workers.>"
WORKER_STATUS = f"{PREFIX}.workers.status"
"""`WorkerStatus` heartbeats: the worker id is in the message, not the subject, because a
pod name need not be a valid subject token."""
CONFIG_HELD = f"{PREFIX}.workers.config_held"
"""`ConfigHeld`: a pool holds a new config version."""
