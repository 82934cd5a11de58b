"""Dispatcher settings: explicit argument > environment > default."""

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DispatcherSettings(BaseSettings):
    """Environment variables are the field names upper-cased (``DISPATCHER_HTTP_PORT``...)."""

    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", extra="ignore")

    http_host: str = "127.0.0.1"
    """DISPATCHER_HTTP_HOST: where the webhook endpoint listens."""
    http_port: int = 8082
    """DISPATCHER_HTTP_PORT."""
    max_body_bytes: int = 64 * 1024
    """DISPATCHER_MAX_BODY_BYTES: larger webhook bodies get 413 (LiveKit's are ~1-2 KiB)."""
    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    """NATS_URL."""
    livekit_url: str = Field(default="http://127.0.0.1:7880", validation_alias="LIVEKIT_URL")
    """LIVEKIT_URL: the LiveKit server API (ws:// or http://)."""
    livekit_api_key: str = Field(validation_alias="LIVEKIT_API_KEY")
    """LIVEKIT_API_KEY: required; also the key webhooks are signed with."""
    livekit_api_secret: SecretStr = Field(validation_alias="LIVEKIT_API_SECRET")
    """LIVEKIT_API_SECRET: required."""
    worker_agent_name: str = Field(default="core-voice", validation_alias="WORKER_AGENT_NAME")
    """WORKER_AGENT_NAME: the agent name the shared worker pool registers under."""
    consumer_name: str = "dispatcher"
    """DISPATCHER_CONSUMER_NAME: the durable JetStream consumer doing dispatches."""
    max_deliver: int = 6
    """DISPATCHER_MAX_DELIVER: attempts before a job is rejected as dispatch_failed."""
    config_timeout_s: float = 2.0
    """DISPATCHER_CONFIG_TIMEOUT_S: how long to wait for config_sync's agent look-up."""

    @property
    def livekit_http_url(self) -> str:
        url = self.livekit_url
        if url.startswith("ws"):
            url = "http" + url[2:]
        return url
