"""Worker settings: explicit argument > environment > default.

The pool process reads them once; its job processes read the same environment (they
are forked from it), including ``WORKER_LINK_PATH``, which the pool sets for them.
"""

import os
import socket
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from core_voice_contracts.permissions import Role as BusRole
from core_voice_contracts.settings import ServiceSettings


def default_worker_id() -> str:
    """The pool's identity: the pod name in Kubernetes (``HOSTNAME`` is the pod name
    there), else the host name; the same for the pool and all of its job processes."""
    return os.environ.get("POD_NAME") or socket.gethostname()


class WorkerSettings(ServiceSettings):
    """``WORKER_*`` variables, plus the standard LIVEKIT_* and the shared ``NATS_*``
    (`ServiceSettings`)."""

    bus_role = BusRole.WORKER
    model_config = SettingsConfigDict(env_prefix="WORKER_")

    livekit_url: str = Field(default="ws://127.0.0.1:7880", validation_alias="LIVEKIT_URL")
    """LIVEKIT_URL: the LiveKit server the worker registers with."""
    livekit_api_key: str = Field(validation_alias="LIVEKIT_API_KEY")
    """LIVEKIT_API_KEY: required."""
    livekit_api_secret: SecretStr = Field(validation_alias="LIVEKIT_API_SECRET", repr=False)
    """LIVEKIT_API_SECRET: required; never logged."""
    agent_name: str = Field(default="core-voice", validation_alias="WORKER_AGENT_NAME")
    """WORKER_AGENT_NAME: the explicit-dispatch name the pool registers under."""
    max_concurrency: int = Field(default=25, ge=1)
    """WORKER_MAX_CONCURRENCY: calls one worker holds at most; offers past it are declined
    (LiveKit then tries another worker)."""
    config_timeout_s: float = Field(default=2.0, gt=0)
    """WORKER_CONFIG_TIMEOUT_S: how long a call start waits for a config the pool does not
    hold yet (config_sync's answer)."""
    config_memory_size: int = Field(default=10_000, ge=1)
    """WORKER_CONFIG_MEMORY_SIZE: (agent, campaign) configs the pool keeps; the least
    recently used beyond this are dropped."""
    num_idle_processes: int = Field(default=1, ge=0)
    """WORKER_NUM_IDLE_PROCESSES: prewarmed job processes kept ready (each ~26 MB USS)."""
    executor: Literal["process", "thread"] = "process"
    """WORKER_EXECUTOR: ``process`` (one process per call, the default: a crash takes one
    call) or ``thread`` (calls share the pool process: less memory per call)."""
    worker_id: str = Field(default_factory=default_worker_id)
    """WORKER_WORKER_ID: the pool's identity in call events and room attributes
    (default: POD_NAME, else the host name)."""
    turn_detection: Literal["vad", "stt"] = "vad"
    """WORKER_TURN_DETECTION: how end of turn is decided. ``vad`` (silence) answered
    ~0.8 s after the caller stopped in the e2e test; livekit-agents' auto-selected
    detector took ~2.7 s there."""
    min_endpointing_delay_s: float = 0.3
    """WORKER_MIN_ENDPOINTING_DELAY_S: silence after speech before the turn ends."""
    health_host: str = "127.0.0.1"
    """WORKER_HEALTH_HOST: where /healthz, /readyz and /status listen (0.0.0.0 in a pod,
    so Kubernetes probes reach them)."""
    health_port: int = Field(default=8083, ge=0, le=65535)
    """WORKER_HEALTH_PORT: the health port (0 = any free port)."""
    startup_timeout_s: float = Field(default=30.0, ge=0)
    """WORKER_STARTUP_TIMEOUT_S: how long a starting pool waits for NATS before it exits 1."""
    caller_wait_s: float = Field(default=60.0, gt=0)
    """WORKER_CALLER_WAIT_S: how long an agent waits in its room for a caller. A caller who
    hung up before the agent joined leaves a room LiveKit re-creates for the late agent;
    after this the job ends as ``CallFailed(no_caller)`` and the room is deleted."""
    drain_timeout_s: int = Field(default=1800, ge=1)
    """WORKER_DRAIN_TIMEOUT_S: after SIGTERM, how long running calls may go on before the
    worker ends them and exits (size the pod's grace period to this plus a margin)."""
    provider_timeout_s: float = Field(default=10.0, gt=0)
    """WORKER_PROVIDER_TIMEOUT_S: one STT/LLM/TTS request or connection attempt."""
    provider_max_retry: int = Field(default=1, ge=0)
    """WORKER_PROVIDER_MAX_RETRY: retries of a failed provider request before the call
    gives up on it (each waits WORKER_PROVIDER_RETRY_INTERVAL_S)."""
    provider_retry_interval_s: float = Field(default=0.5, ge=0)
    """WORKER_PROVIDER_RETRY_INTERVAL_S."""
    key_fallback: bool = True
    """WORKER_KEY_FALLBACK: an agent without its own provider key uses the pool's default
    from this environment (OPENAI_API_KEY, ...); false: agents' own keys only."""
    end_room_on_failure: bool = True
    """WORKER_END_ROOM_ON_FAILURE: a call that fails deletes its room, so the caller is
    hung up on instead of left in silence."""
    link_path: str = ""
    """WORKER_LINK_PATH: the pool's local socket; set by the pool for its job processes."""
    status_interval_s: float = Field(default=5.0, gt=0)
    """WORKER_STATUS_INTERVAL_S: how often the pool publishes its heartbeat
    (`WorkerStatus` on voice.workers.status): capacity, active calls, draining."""
    event_queue_size: int = Field(default=10_000, ge=1)
    """WORKER_EVENT_QUEUE_SIZE: call events the pool holds while NATS cannot take them."""
