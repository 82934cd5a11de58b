"""Worker settings: explicit argument > environment > default."""

import os
import socket
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(BaseSettings):
    """``WORKER_*`` variables, plus the standard LIVEKIT_* and NATS_URL."""

    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="ignore")

    livekit_url: str = Field(default="ws://127.0.0.1:7880", validation_alias="LIVEKIT_URL")
    """LIVEKIT_URL: the LiveKit server the worker registers with."""
    livekit_api_key: str = Field(validation_alias="LIVEKIT_API_KEY")
    """LIVEKIT_API_KEY: required."""
    livekit_api_secret: SecretStr = Field(validation_alias="LIVEKIT_API_SECRET")
    """LIVEKIT_API_SECRET: required."""
    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    """NATS_URL."""
    agent_name: str = Field(default="core-voice", validation_alias="WORKER_AGENT_NAME")
    """WORKER_AGENT_NAME: the explicit-dispatch name the pool registers under."""
    max_concurrency: int = 25
    """WORKER_MAX_CONCURRENCY: calls one worker takes before it reports itself full."""
    config_timeout_s: float = 2.0
    """WORKER_CONFIG_TIMEOUT_S: how long a call waits for its runtime config."""
    num_idle_processes: int = 1
    """WORKER_NUM_IDLE_PROCESSES: prewarmed job processes kept ready (each ~26 MB USS)."""
    worker_id: str = Field(default_factory=_default_worker_id)
    """WORKER_WORKER_ID: shown in CallStarted; defaults to host-pid."""
    turn_detection: Literal["vad", "stt"] = "vad"
    """WORKER_TURN_DETECTION: how end of turn is decided. ``vad`` (silence) answered
    ~0.8 s after the caller stopped in the e2e test; livekit-agents' auto-selected
    detector took ~2.7 s there."""
    min_endpointing_delay_s: float = 0.3
    """WORKER_MIN_ENDPOINTING_DELAY_S: silence after speech before the turn ends."""
    http_port: int = 0
    """WORKER_HTTP_PORT: livekit-agents' health endpoint (0 = any free port)."""
