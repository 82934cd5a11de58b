"""What the repositories return: plain values detached from any session, and how the
API shows them. Records hold provider keys only sealed (`Sealed`) or as hints; opened
keys exist only in runtime configs (`ProviderKeys`, which never shows them).

A record and its view share field names, so `view_of` builds every view (timestamps
become ISO 8601 strings); a repository builds most records the same way from their rows
(`persistence.record_of`).
"""

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from core_voice_config_sync.crypto import Sealed
from core_voice_contracts.admin_api import (
    AgentVersionView,
    AgentView,
    CampaignAgentView,
    CampaignOverrides,
    CampaignView,
    KeyInfo,
    NumberView,
    TokenView,
    TrunkView,
)
from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec, RuntimeConfig

V = TypeVar("V", bound=msgspec.Struct)


def iso(value: dt.datetime) -> str:
    return value.isoformat()


def view_of(record: Any, kind: type[V], **fields: Any) -> V:
    """The view ``kind`` of ``record``'s same-named fields; ``fields`` add or replace
    some (a view ignores record fields it does not name, such as sealed keys)."""
    data = {
        f.name: iso(value) if isinstance(value := getattr(record, f.name), dt.datetime) else value
        for f in dataclasses.fields(record)
    }
    return msgspec.convert(data | fields, kind)


def key_infos(hints: dict[str, str]) -> list[KeyInfo]:
    return [KeyInfo(provider=p, last4=hints[p]) for p in sorted(hints)]


@dataclass(frozen=True, slots=True)
class ConfigFields:
    """The versioned part of an agent: what one `agent_configs` row holds (keys apart)."""

    name: str
    instructions: str
    greeting: str
    llm: ProviderSpec
    stt: ProviderSpec
    tts: ProviderSpec


def _config(config: ConfigFields) -> dict[str, Any]:
    """The versioned fields, which views and runtime configs hold flat."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


@dataclass(frozen=True, slots=True)
class KeysState:
    """An agent version's keys as stored: sealed bytes and provider → last 4 hints."""

    sealed: Sealed | None = None
    hints: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """An agent at its current version."""

    id: str
    tenant_id: str
    status: str
    version: int
    config: ConfigFields
    created_at: dt.datetime
    updated_at: dt.datetime
    legacy_agent_name: str | None = None
    legacy_percent: int = 0
    key_hints: dict[str, str] = field(default_factory=dict)
    sealed: Sealed | None = None

    def view(self) -> AgentView:
        return view_of(self, AgentView, **_config(self.config), keys=key_infos(self.key_hints))

    def runtime(self, keys: ProviderKeys) -> RuntimeConfig:
        """The agent's own runtime config (no campaign, defaults not yet filled)."""
        return RuntimeConfig(
            agent_id=self.id,
            tenant_id=self.tenant_id,
            version=self.version,
            keys=keys,
            **_config(self.config),
        )


@dataclass(frozen=True, slots=True)
class VersionRecord:
    agent_id: str
    version: int
    config: ConfigFields
    created_at: dt.datetime
    author: str
    note: str = ""
    key_hints: dict[str, str] = field(default_factory=dict)
    sealed: Sealed | None = None

    def view(self) -> AgentVersionView:
        return view_of(
            self, AgentVersionView, **_config(self.config), keys=key_infos(self.key_hints)
        )


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    id: str
    tenant_id: str
    name: str
    description: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime

    def view(self) -> CampaignView:
        return view_of(self, CampaignView)


@dataclass(frozen=True, slots=True)
class LinkRecord:
    campaign_id: str
    agent_id: str
    weight: int
    overrides: CampaignOverrides
    created_at: dt.datetime
    updated_at: dt.datetime

    def view(self) -> CampaignAgentView:
        return view_of(self, CampaignAgentView)


@dataclass(frozen=True, slots=True)
class TrunkRecord:
    id: str
    tenant_id: str
    created_at: dt.datetime
    updated_at: dt.datetime

    def view(self) -> TrunkView:
        return view_of(self, TrunkView)


@dataclass(frozen=True, slots=True)
class NumberRecord:
    number: str
    trunk_id: str
    tenant_id: str
    campaign_id: str | None
    agent_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    def view(self) -> NumberView:
        return view_of(self, NumberView)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    tenant_id: str | None
    name: str
    scope: str
    last4: str
    created_at: dt.datetime
    revoked: bool = False

    def view(self) -> TokenView:
        return view_of(self, TokenView, tenant_id=self.tenant_id or "")


@dataclass(frozen=True, slots=True)
class RouteAgent:
    """What routing needs of an agent: no config, no keys. ``legacy_agent_name`` is
    None unless the name is on the tenant's operator-set list."""

    id: str
    tenant_id: str
    status: str
    legacy_agent_name: str | None
    legacy_percent: int


@dataclass(frozen=True, slots=True)
class RouteCampaign:
    id: str
    tenant_id: str
    status: str
    agents: list[tuple[RouteAgent, int]]
    """Linked (not deleted) agents with their weights."""
