"""What the repositories return: plain values detached from any session, and how the
API shows them. Records hold provider keys only sealed (`Sealed`) or as hints; opened
keys exist only in runtime configs (`ProviderKeys`, which never shows them)."""

import datetime as dt
from dataclasses import dataclass, field

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


def iso(value: dt.datetime) -> str:
    return value.isoformat()


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
        c = self.config
        return AgentView(
            id=self.id,
            tenant_id=self.tenant_id,
            name=c.name,
            status=self.status,
            version=self.version,
            instructions=c.instructions,
            greeting=c.greeting,
            llm=c.llm,
            stt=c.stt,
            tts=c.tts,
            created_at=iso(self.created_at),
            updated_at=iso(self.updated_at),
            legacy_agent_name=self.legacy_agent_name,
            legacy_percent=self.legacy_percent,
            keys=key_infos(self.key_hints),
        )

    def runtime(self, keys: ProviderKeys) -> RuntimeConfig:
        """The agent's own runtime config (no campaign, defaults not yet filled)."""
        c = self.config
        return RuntimeConfig(
            agent_id=self.id,
            tenant_id=self.tenant_id,
            version=self.version,
            name=c.name,
            instructions=c.instructions,
            greeting=c.greeting,
            llm=c.llm,
            stt=c.stt,
            tts=c.tts,
            keys=keys,
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
        c = self.config
        return AgentVersionView(
            agent_id=self.agent_id,
            version=self.version,
            name=c.name,
            instructions=c.instructions,
            greeting=c.greeting,
            llm=c.llm,
            stt=c.stt,
            tts=c.tts,
            keys=key_infos(self.key_hints),
            created_at=iso(self.created_at),
            author=self.author,
            note=self.note,
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
        return CampaignView(
            id=self.id,
            tenant_id=self.tenant_id,
            name=self.name,
            description=self.description,
            status=self.status,
            created_at=iso(self.created_at),
            updated_at=iso(self.updated_at),
        )


@dataclass(frozen=True, slots=True)
class LinkRecord:
    campaign_id: str
    agent_id: str
    weight: int
    overrides: CampaignOverrides
    created_at: dt.datetime
    updated_at: dt.datetime

    def view(self) -> CampaignAgentView:
        return CampaignAgentView(
            campaign_id=self.campaign_id,
            agent_id=self.agent_id,
            weight=self.weight,
            overrides=self.overrides,
            created_at=iso(self.created_at),
            updated_at=iso(self.updated_at),
        )


@dataclass(frozen=True, slots=True)
class TrunkRecord:
    id: str
    tenant_id: str
    created_at: dt.datetime
    updated_at: dt.datetime

    def view(self) -> TrunkView:
        return TrunkView(
            id=self.id,
            tenant_id=self.tenant_id,
            created_at=iso(self.created_at),
            updated_at=iso(self.updated_at),
        )


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
        return NumberView(
            number=self.number,
            trunk_id=self.trunk_id,
            tenant_id=self.tenant_id,
            campaign_id=self.campaign_id,
            agent_id=self.agent_id,
            created_at=iso(self.created_at),
            updated_at=iso(self.updated_at),
        )


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
        return TokenView(
            id=self.id,
            tenant_id=self.tenant_id or "",
            name=self.name,
            scope=self.scope,
            created_at=iso(self.created_at),
            last4=self.last4,
        )


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
