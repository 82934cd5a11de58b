"""config_sync's settings: one object, read from the environment once at startup.

Precedence is explicit argument > environment > default. Every variable is
``CONFIG_SYNC_<FIELD>`` except the NATS URL, which is the stack-wide ``NATS_URL``.
A missing required variable stops startup with an error that names it.
"""

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core_voice_config_sync.crypto import KeyRing
from core_voice_config_sync.errors import SettingsError
from core_voice_config_sync.outbound import OutboundPolicy
from core_voice_config_sync.validation import (
    ALL_PROVIDERS,
    keyed_provider_names,
    platform_key_problems,
)
from core_voice_contracts import settings as shared_settings
from core_voice_contracts.bus import NatsAccess
from core_voice_contracts.permissions import Role as BusRole
from core_voice_contracts.settings import ServiceSettings

ENV_PREFIX = "CONFIG_SYNC_"
CONFIG = SettingsConfigDict(
    env_prefix=ENV_PREFIX,
    extra="ignore",
    frozen=True,
    populate_by_name=True,
    use_attribute_docstrings=True,
)
"""Both settings classes': `Settings` restates it, or its second base's defaults would win."""
MIN_TOKEN_LENGTH = 32
"""The bootstrap tokens' minimum length: 32 random characters are beyond guessing."""


def default_database_url() -> str:
    """An embedded SQLite file under ``./.data`` (the directory is created on start)."""
    return f"sqlite+aiosqlite:///{Path.cwd() / '.data' / 'config_sync.db'}"


class StoreSettings(BaseSettings):
    """What reaching the data needs: the database and the provider-key master keys.

    Enough for the admin commands (``python -m core_voice_config_sync tenant ...``).
    """

    model_config = CONFIG

    database_url: str = Field(default_factory=default_database_url)
    """CONFIG_SYNC_DATABASE_URL: SQLAlchemy async URL (sqlite+aiosqlite:///path or
    postgresql+asyncpg://...)."""
    encryption_keys: SecretStr | None = None
    """CONFIG_SYNC_ENCRYPTION_KEYS: master keys for provider keys at rest,
    'id:base64(32 bytes)[,id:base64...]'; the first seals, all open (rotation). Without
    it, agents cannot be given provider keys."""
    encryption_keys_file: Path | None = None
    """CONFIG_SYNC_ENCRYPTION_KEYS_FILE: a file (e.g. a mounted Kubernetes secret) holding
    the same as CONFIG_SYNC_ENCRYPTION_KEYS; give one of the two."""
    log_level: str = "INFO"
    """CONFIG_SYNC_LOG_LEVEL."""

    def keyring(self) -> KeyRing | None:
        """The master keys, or None when none are configured."""
        if self.encryption_keys is not None and self.encryption_keys_file is not None:
            raise SettingsError(
                "set CONFIG_SYNC_ENCRYPTION_KEYS or CONFIG_SYNC_ENCRYPTION_KEYS_FILE, not both"
            )
        if self.encryption_keys is not None:
            return KeyRing.parse(self.encryption_keys.get_secret_value())
        if self.encryption_keys_file is not None:
            try:
                text = self.encryption_keys_file.read_text()
            except OSError as exc:
                raise SettingsError(
                    f"CONFIG_SYNC_ENCRYPTION_KEYS_FILE cannot be read ({type(exc).__name__})"
                ) from None
            return KeyRing.parse(text.strip())
        return None


class Settings(StoreSettings, ServiceSettings):
    """Everything config_sync reads from its environment (the NATS login as every
    service does, `ServiceSettings`)."""

    model_config = CONFIG
    bus_role = BusRole.CONFIG_SYNC
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=AliasChoices("NATS_URL", "CONFIG_SYNC_NATS_URL"),
    )
    """NATS_URL (or CONFIG_SYNC_NATS_URL): the NATS server to connect to."""
    allow_plaintext_keys: bool = False
    """CONFIG_SYNC_ALLOW_PLAINTEXT_KEYS: serve provider keys over a NATS connection that is
    neither TLS nor on loopback. Off: such a config_sync refuses to start, because the keys
    in its replies would cross the network in clear."""
    http_host: str = "127.0.0.1"
    """CONFIG_SYNC_HTTP_HOST: address the HTTP API binds."""
    http_port: int = Field(default=8081, ge=0, le=65535)
    """CONFIG_SYNC_HTTP_PORT: HTTP API port."""
    admin_token: SecretStr = Field(min_length=MIN_TOKEN_LENGTH)
    """CONFIG_SYNC_ADMIN_TOKEN (required, at least 32 characters): bearer token for the
    admin API."""
    runtime_token: SecretStr = Field(min_length=MIN_TOKEN_LENGTH)
    """CONFIG_SYNC_RUNTIME_TOKEN (required, at least 32 characters, not the admin token):
    bearer token workers use to read runtime configs and their provider keys; it cannot
    change anything."""

    @field_validator("runtime_token")
    @classmethod
    def _not_the_admin_token(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        # One shared value would hand the workers admin rights (and the admin the keys).
        admin = info.data.get("admin_token")
        if isinstance(admin, SecretStr) and admin.get_secret_value() == value.get_secret_value():
            raise PydanticCustomError("same_token", "must differ from CONFIG_SYNC_ADMIN_TOKEN")
        return value

    token_max_stale_s: float = Field(default=60.0, gt=0, le=3600)
    """CONFIG_SYNC_TOKEN_MAX_STALE_S: while the database is unreachable, a stored API token
    is still accepted for this long after the database last vouched for it, then refused
    with 503 (a token revoked just before an outage stops working within this time). The
    bootstrap tokens need no database."""
    default_tenant: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    """CONFIG_SYNC_DEFAULT_TENANT: tenant that owns agents created with the admin token."""
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    """CONFIG_SYNC_MAX_BODY_BYTES: larger request bodies are refused with 413."""
    outbox_sweep_s: float = Field(default=0.25, gt=0)
    """CONFIG_SYNC_OUTBOX_SWEEP_S: how often the relay retries unpublished changes (a
    commit also wakes it at once). It bounds the lag of an edit whose replica died
    between its commit and its publish (another replica's sweep publishes it): one small
    indexed query per pass."""
    outbox_retention_s: float = Field(default=86_400.0, gt=0)
    """CONFIG_SYNC_OUTBOX_RETENTION_S: published outbox rows older than this are deleted."""
    platform_key_providers: str = Field(default="", pattern=r"^[a-z0-9,_ *-]*$")
    """CONFIG_SYNC_PLATFORM_KEY_PROVIDERS: the providers whose default key the worker pool
    holds (e.g. OPENAI_API_KEY in the workers' environment), as a comma list
    ('openai,deepgram'), or '*' for every provider. An agent using one of them needs no key
    of its own; any other agent without its key is refused (422). Empty (the default):
    every agent brings its own keys. Keep it in step with the workers: with
    WORKER_KEY_FALLBACK=false they use no default key at all."""

    @field_validator("platform_key_providers")
    @classmethod
    def _known_providers(cls, value: str) -> str:
        # The unknown names are not echoed: a key pasted here by mistake must not be logged.
        if platform_key_problems(_names(value)):
            raise ValueError(
                f"names a provider whose key a worker pool cannot lend; use: "
                f"{', '.join(keyed_provider_names())}, or {ALL_PROVIDERS} for all"
            )
        return value

    def platform_keys(self) -> frozenset[str]:
        """The providers the pool lends a key for; ``*`` in it means all of them."""
        return frozenset(_names(self.platform_key_providers))

    base_url_allow: str = Field(default="", max_length=4096)
    """CONFIG_SYNC_BASE_URL_ALLOW: where an agent's provider base_url may point although it
    is plain http or internal, as a comma list of hosts ('llm.internal'), host:port pairs
    ('127.0.0.1:8080') and CIDR networks ('10.1.0.0/16'). Empty (the default): every
    base_url must be https to a public address (loopback, private, link-local, metadata
    and other internal addresses are refused with 422)."""

    @field_validator("base_url_allow")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        OutboundPolicy.parse(value)
        return value

    def outbound_policy(self) -> OutboundPolicy:
        return OutboundPolicy.parse(self.base_url_allow)

    def nats_access(self) -> NatsAccess:
        """How this service connects: its own NATS user (`BusRole.CONFIG_SYNC`).

        Its replies carry provider keys, so the connection must be TLS or stay on this host
        (loopback), unless CONFIG_SYNC_ALLOW_PLAINTEXT_KEYS says otherwise. A server with
        TLS configured requires it of every client, so the workers' leg is TLS too.
        """
        access = super().nats_access()
        if not (access.tls or access.loopback or self.allow_plaintext_keys):
            raise SettingsError(
                "NATS_URL is plaintext to another host: provider keys would cross the network "
                "in clear. Use TLS (a tls:// URL, NATS_CA) or set "
                "CONFIG_SYNC_ALLOW_PLAINTEXT_KEYS=true"
            )
        return access


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def load_settings(**overrides: object) -> Settings:
    """Build `Settings`; a bad environment raises `SettingsError` naming the variables."""
    return shared_settings.load_settings(Settings, overrides, error=SettingsError)


def load_store_settings(**overrides: object) -> StoreSettings:
    """`StoreSettings` only: what the admin commands need (no tokens, no NATS)."""
    return shared_settings.load_settings(StoreSettings, overrides, error=SettingsError)
