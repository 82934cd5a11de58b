"""Telemetry settings: explicit argument > environment > default."""

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from core_voice_contracts.bus import NatsAccess
from core_voice_contracts.permissions import Role as BusRole


class TelemetrySettings(BaseSettings):
    """Environment variables are ``TELEMETRY_`` + the field name upper-cased."""

    model_config = SettingsConfigDict(
        env_prefix="TELEMETRY_", extra="ignore", use_attribute_docstrings=True
    )

    http_host: str = "127.0.0.1"
    """TELEMETRY_HTTP_HOST: where /metrics listens."""
    http_port: int = 9464
    """TELEMETRY_HTTP_PORT."""
    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    """NATS_URL."""
    nats_user: str | None = Field(default=None, validation_alias="NATS_USER")
    """NATS_USER: this service's bus user (default: its role, with NATS_PASSWORD set)."""
    nats_password: SecretStr | None = Field(
        default=None, validation_alias="NATS_PASSWORD", repr=False
    )
    """NATS_PASSWORD: that user's password; never logged."""
    nats_ca: str | None = Field(default=None, validation_alias="NATS_CA")
    """NATS_CA: the CA file (PEM) for TLS to NATS (a ``tls://`` NATS_URL alone uses the
    system's CAs)."""
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

    def nats_access(self) -> NatsAccess:
        """How this service connects: its own NATS user (`BusRole.TELEMETRY`)."""
        password = self.nats_password.get_secret_value() if self.nats_password else None
        return NatsAccess.for_role(
            BusRole.TELEMETRY,
            self.nats_url,
            user=self.nats_user,
            password=password,
            ca_file=self.nats_ca,
        )
