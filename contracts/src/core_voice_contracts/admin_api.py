"""Shapes of config_sync's admin HTTP API (requests and responses).

Request bodies forbid unknown fields: a typo in an admin call is an error, not a
silently ignored setting.
"""

from typing import Annotated

import msgspec

from core_voice_contracts.ids import ID_PATTERN
from core_voice_contracts.runtime_config import (
    DEFAULT_GREETING,
    ProviderSpec,
    default_llm,
    default_stt,
    default_tts,
)

AgentId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
Text = Annotated[str, msgspec.Meta(max_length=20_000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class AgentCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/agents``: a new agent; ``id`` is generated when omitted."""

    name: Name
    id: AgentId | None = None
    instructions: Text = ""
    greeting: Text = DEFAULT_GREETING
    llm: ProviderSpec = msgspec.field(default_factory=default_llm)
    stt: ProviderSpec = msgspec.field(default_factory=default_stt)
    tts: ProviderSpec = msgspec.field(default_factory=default_tts)


class AgentPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /api/v1/agents/{id}``: only the fields given change; a new version results."""

    name: Name | None = None
    instructions: Text | None = None
    greeting: Text | None = None
    llm: ProviderSpec | None = None
    stt: ProviderSpec | None = None
    tts: ProviderSpec | None = None


class AgentView(msgspec.Struct, frozen=True, kw_only=True):
    """An agent and its current config version, as the admin API shows it."""

    id: str
    tenant_id: str
    name: str
    status: str
    version: int
    instructions: str
    greeting: str
    llm: ProviderSpec
    stt: ProviderSpec
    tts: ProviderSpec
    created_at: str
    updated_at: str


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every 4xx/5xx body: a stable machine code and a human message."""

    error: str
    detail: str = ""


class HealthView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /healthz`` of a service: ``status`` is "ok" only if every check is "ok"."""

    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)
