"""Every service's settings: one base, one loader, one exit on a bad environment.

Every service keeps one `ServiceSettings` subclass (explicit argument > environment >
default), each field documented by the docstring under it, which starts with its env
variable (``use_attribute_docstrings`` makes that the field's description). The NATS
login and the startup failure are the same for every service and a contract with
operators (the variable names, the message, exit status 2), hence they live here, the one
package every service shares, as `logs` does. pydantic's own error echoes the offending
input, which may be a secret; `load_settings` names the variable only.

    class TelemetrySettings(ServiceSettings):
        bus_role = Role.TELEMETRY
        model_config = SettingsConfigDict(env_prefix="TELEMETRY_")
        http_port: int = 9464
        '''TELEMETRY_HTTP_PORT: where /metrics listens.'''

    settings = settings_or_exit(TelemetrySettings)   # in the service's entry point
"""

import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NoReturn, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core_voice_contracts.bus import NatsAccess
from core_voice_contracts.permissions import Role

log = logging.getLogger(__name__)

EXIT_SETTINGS = 2
"""A service's exit status when its settings are unusable: restarting will not help."""

S = TypeVar("S", bound=BaseSettings)


class SettingsError(ValueError):
    """The environment does not describe a runnable service; the message names the
    variables and never their values."""

    code = "invalid_settings"
    retryable = False


class ServiceSettings(BaseSettings):
    """What every service reads alike: its NATS login, from the stack-wide ``NATS_*``
    variables (the names the ``nats`` CLI reads too)."""

    model_config = SettingsConfigDict(extra="ignore", use_attribute_docstrings=True)
    bus_role: ClassVar[Role]
    """The service's own NATS user and rights (`permissions.Role`)."""

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    """NATS_URL: the NATS server to connect to."""
    nats_user: str | None = Field(default=None, validation_alias="NATS_USER")
    """NATS_USER: this service's bus user (default: its role, with NATS_PASSWORD set)."""
    nats_password: SecretStr | None = Field(
        default=None, validation_alias="NATS_PASSWORD", repr=False
    )
    """NATS_PASSWORD: that user's password; never logged."""
    nats_ca: str | None = Field(default=None, validation_alias="NATS_CA")
    """NATS_CA: the CA file (PEM) for TLS to NATS (a ``tls://`` NATS_URL alone uses the
    system's CAs)."""
    nats_stream_replicas: int = Field(
        default=1, ge=1, le=5, validation_alias="NATS_STREAM_REPLICAS"
    )
    """NATS_STREAM_REPLICAS: replicas of the JetStream streams this service creates or
    brings up to date: 1 on a single server, 3 on a 3-node cluster (R3). At most the
    number of JetStream servers; every service of one install sets the same value."""

    def nats_access(self) -> NatsAccess:
        """How this service connects: its own NATS user (`bus_role`)."""
        password = self.nats_password.get_secret_value() if self.nats_password else None
        return NatsAccess.for_role(
            self.bus_role,
            self.nats_url,
            user=self.nats_user,
            password=password,
            ca_file=self.nats_ca,
            stream_replicas=self.nats_stream_replicas,
        )


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Field name -> the environment variable it is read from (its first alias, else
    the model's ``env_prefix`` + the field name), upper-cased as documented."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    names = {}
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
            alias = alias.choices[0]
        names[field] = (alias if isinstance(alias, str) else prefix + field).upper()
    return names


def load_settings(
    cls: type[S],
    overrides: Mapping[str, Any] | None = None,
    *,
    error: Callable[[str], Exception] = SettingsError,
) -> S:
    """``cls(**overrides)``, or ``error`` with one message naming every bad variable.

    ``error`` lets a service raise its own `SettingsError` subclass or equivalent.
    """
    try:
        return cls(**(overrides or {}))
    except ValidationError as exc:
        raise error(describe(cls, exc)) from None


def describe(cls: type[BaseSettings], exc: ValidationError) -> str:
    """pydantic's errors as ``NAME is required; NAME must be ...``, without the input."""
    names = env_names(cls)
    problems = []
    for err in exc.errors(include_input=False, include_url=False, include_context=True):
        loc = str(err["loc"][0]) if err["loc"] else ""
        name = names.get(loc, loc.upper() or cls.__name__)
        if err["type"] == "missing":
            what = "is required"
        elif err["type"] == "too_short":
            what = f"must be at least {(err.get('ctx') or {}).get('min_length')} characters"
        else:
            what = err["msg"]
        problems.append(f"{name} {what}")
    return "; ".join(problems)


def settings_or_exit(cls: type[S], **overrides: object) -> S:
    """For an entry point: the settings, or one log line naming the bad variables and
    exit status `EXIT_SETTINGS` (no traceback, no value)."""
    try:
        return load_settings(cls, overrides)
    except SettingsError as exc:
        exit_settings(str(exc))


def exit_settings(problems: str) -> NoReturn:
    """Log ``invalid configuration`` with ``problems`` and exit `EXIT_SETTINGS`."""
    log.error("invalid configuration", extra={"problems": problems})
    raise SystemExit(EXIT_SETTINGS)
