"""Telemetry settings: explicit argument > environment > default."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from core_voice_contracts.permissions import Role as BusRole
from core_voice_contracts.settings import ServiceSettings


class TelemetrySettings(ServiceSettings):
    """Environment variables are ``TELEMETRY_`` + the field name upper-cased (and the
    shared ``NATS_*``, `ServiceSettings`)."""

    bus_role = BusRole.TELEMETRY
    model_config = SettingsConfigDict(env_prefix="TELEMETRY_")

    http_host: str = "127.0.0.1"
    """TELEMETRY_HTTP_HOST: where /metrics listens."""
    http_port: int = 9464
    """TELEMETRY_HTTP_PORT."""
    consumer_prefix: str = "telemetry"
    """TELEMETRY_CONSUMER_PREFIX: durable consumer names are ``<prefix>-jobs`` etc."""
    max_agents: int = Field(default=1000, ge=1)
    """TELEMETRY_MAX_AGENTS: agents labelled on their own; the rest read ``other``."""
    max_campaigns: int = Field(default=1000, ge=1)
    """TELEMETRY_MAX_CAMPAIGNS: campaigns labelled on their own; the rest read ``other``."""
    max_config_versions: int = Field(default=3, ge=1)
    """TELEMETRY_MAX_CONFIG_VERSIONS: an agent's newest versions labelled; older read
    ``older``."""
    active_lookback_s: float = Field(default=6 * 3600.0, gt=0)
    """TELEMETRY_ACTIVE_LOOKBACK_S: at start, ``VOICE_CALLS`` is read back this far to
    rebuild the calls in progress; longer than the longest call."""
    propagation_window_s: float = Field(default=30.0, gt=0)
    """TELEMETRY_PROPAGATION_WINDOW_S: a config version not held by every live pool
    this long after the first holds it counts as incomplete."""
    pending_interval_s: float = Field(default=5.0, gt=0)
    """TELEMETRY_PENDING_INTERVAL_S: how often consumer backlogs are read."""
