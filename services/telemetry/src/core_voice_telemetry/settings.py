"""Telemetry settings: explicit argument > environment > default."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TelemetrySettings(BaseSettings):
    """Environment variables are ``TELEMETRY_`` + the field name upper-cased."""

    model_config = SettingsConfigDict(env_prefix="TELEMETRY_", extra="ignore")

    http_host: str = "127.0.0.1"
    """TELEMETRY_HTTP_HOST: where /metrics listens."""
    http_port: int = 9464
    """TELEMETRY_HTTP_PORT."""
    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    """NATS_URL."""
    consumer_prefix: str = "telemetry"
    """TELEMETRY_CONSUMER_PREFIX: durable consumer names are ``<prefix>-jobs`` etc."""
