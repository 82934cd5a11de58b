"""Shapes of config_sync's admin HTTP API (requests and responses).

Request bodies forbid unknown fields, nested ones included: a typo in an admin call is an
error, not a silently ignored setting. That is why requests name providers with the strict
`ProviderChoice`, while responses and bus messages use the lenient `ProviderSpec`.

Provider keys are write-only: requests carry them, responses only say which providers
have one and its last four characters (`KeyInfo`).

PATCH semantics: a field left out (or ``null``, for the original fields) keeps its value.
Fields that can be cleared (``legacy_agent_name``) take ``null`` to clear and are left
untouched only when absent; ``keys`` entries set to ``null`` delete that provider's key.
"""

from enum import StrEnum
from typing import Annotated, Any

import msgspec

from core_voice_contracts.ids import ID_PATTERN
from core_voice_contracts.runtime_config import (
    DEFAULT_GREETING,
    LOCAL,
    SCRIPTED,
    ProviderSpec,
)
from core_voice_contracts.tasks import DeadTask

AgentId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
CampaignId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
TenantId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
_NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL; refuse it for every backend
Text = Annotated[str, msgspec.Meta(max_length=20_000, pattern=_NO_NUL)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_NO_NUL)]
Description = Annotated[str, msgspec.Meta(max_length=2_000, pattern=_NO_NUL)]
ProviderName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_NO_NUL)]
ModelName = Annotated[str, msgspec.Meta(max_length=200, pattern=_NO_NUL)]
LegacyAgentName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
Weight = Annotated[int, msgspec.Meta(ge=0, le=10_000)]
Version = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
ApiKey = Annotated[str, msgspec.Meta(min_length=8, max_length=1024, pattern=r"^[\x21-\x7e]+$")]
"""A provider key: printable ASCII without spaces (what every provider issues)."""
PhoneNumber = Annotated[str, msgspec.Meta(pattern=r"^\+[1-9][0-9]{6,14}$")]
"""E.164, as LiveKit SIP reports it in ``sip.trunkPhoneNumber``: ``+15551230000``."""

E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 200


class AgentStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # routing refuses new rooms; running calls keep their config


class CampaignStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # routing through the campaign (or its numbers) finds no route


class TokenScope(StrEnum):
    ADMIN = "admin"  # read and change everything in the tenant, manage tokens
    READ = "read"  # read everything in the tenant except provider keys
    RUNTIME = "runtime"  # read runtime configs, keys included (the voice workers)
    OPERATOR = "operator"
    """An admin of its tenant who also runs the platform: assigns SIP trunks and legacy
    worker names to tenants, mints runtime and operator tokens. The bootstrap admin
    token is one; others are minted only by an operator."""


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every request body. Its repr (and str, and rich's) hides the values of
    fields that carry secrets (`SECRET_FIELDS`): a request logged or quoted in an error
    or a traceback must not show a provider key."""

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        shown: list[tuple[str, Any]] = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in SECRET_FIELDS and isinstance(value, dict):
                value = _Hidden(len(value))
            shown.append((name, value))
        return shown

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.__rich_repr__())
        return f"{type(self).__name__}({fields})"

    __str__ = __repr__


SECRET_FIELDS = frozenset({"keys"})
"""Request fields whose values are secrets (provider keys by provider)."""


class _Hidden:
    def __init__(self, count: int) -> None:
        self.count = count

    def __repr__(self) -> str:
        return f"<{self.count} hidden>"


# --- providers --------------------------------------------------------------------------


class ProviderChoice(_Request, frozen=True, kw_only=True):
    """A provider as a request names it (strict twin of `ProviderSpec`)."""

    provider: ProviderName
    model: ModelName = ""
    voice: ModelName = ""
    options: dict[str, Any] = msgspec.field(default_factory=dict)

    def spec(self) -> ProviderSpec:
        return ProviderSpec(
            provider=self.provider, model=self.model, voice=self.voice, options=self.options
        )


def default_llm_choice() -> ProviderChoice:
    return ProviderChoice(provider=SCRIPTED)


def default_stt_choice() -> ProviderChoice:
    return ProviderChoice(provider=LOCAL)


def default_tts_choice() -> ProviderChoice:
    return ProviderChoice(provider=LOCAL, voice="en-us")


class KeyInfo(msgspec.Struct, frozen=True, kw_only=True):
    """That a provider key is set, never the key: its last four characters only."""

    provider: str
    last4: str


# --- agents -----------------------------------------------------------------------------


class AgentCreate(_Request, frozen=True, kw_only=True):
    """``POST /api/v1/agents``: a new agent; ``id`` is generated when omitted."""

    name: Name
    id: AgentId | None = None
    instructions: Text = ""
    greeting: Text = DEFAULT_GREETING
    llm: ProviderChoice = msgspec.field(default_factory=default_llm_choice)
    stt: ProviderChoice = msgspec.field(default_factory=default_stt_choice)
    tts: ProviderChoice = msgspec.field(default_factory=default_tts_choice)
    status: AgentStatus = AgentStatus.ACTIVE
    legacy_agent_name: LegacyAgentName | None = None
    """During a migration: the agent name the old per-agent LiveKit worker registers."""
    legacy_percent: Percent = 0
    """Share of this agent's rooms still sent to the legacy worker (0 = all to the pool)."""
    keys: dict[ProviderName, ApiKey] = msgspec.field(default_factory=dict)
    """Provider API keys by provider name (write-only; encrypted at rest)."""


class AgentPatch(_Request, frozen=True, kw_only=True):
    """``PATCH /api/v1/agents/{id}``: only the fields given change.

    Config fields (name, instructions, greeting, llm, stt, tts, keys) make a new version;
    status and the legacy fields are routing attributes and change in place.
    """

    name: Name | None = None
    instructions: Text | None = None
    greeting: Text | None = None
    llm: ProviderChoice | None = None
    stt: ProviderChoice | None = None
    tts: ProviderChoice | None = None
    status: AgentStatus | None = None
    legacy_agent_name: LegacyAgentName | msgspec.UnsetType | None = msgspec.UNSET
    legacy_percent: Percent | None = None
    keys: dict[ProviderName, ApiKey | None] | None = None
    """Set (string) or delete (``null``) keys by provider; providers not named keep theirs."""


class AgentRollback(_Request, frozen=True, kw_only=True):
    """``POST /api/v1/agents/{id}/rollback``: a new version equal to ``version``.

    Keys stay as they are unless ``restore_keys``: a rollback must not silently bring
    back a key that was rotated out because it leaked.
    """

    version: Version
    restore_keys: bool = False


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
    legacy_agent_name: str | None = None
    legacy_percent: int = 0
    keys: list[KeyInfo] = msgspec.field(default_factory=list)


class AgentVersionView(msgspec.Struct, frozen=True, kw_only=True):
    """One immutable config version of an agent."""

    agent_id: str
    version: int
    name: str
    instructions: str
    greeting: str
    llm: ProviderSpec
    stt: ProviderSpec
    tts: ProviderSpec
    keys: list[KeyInfo]
    created_at: str
    author: str
    note: str = ""
    """Why the version exists when it is not a plain edit: ``rollback to 3``,
    ``campaign spring-sale`` (a campaign change that alters this agent's calls)."""


class AgentPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AgentView]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next page; ``null`` on the last page."""


class AgentVersionPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AgentVersionView]
    next_cursor: str | None = None


# --- campaigns ----------------------------------------------------------------------------


class ProviderOverride(_Request, frozen=True, kw_only=True, omit_defaults=True):
    """A campaign's change to one provider of an agent.

    Naming a different ``provider`` replaces the agent's choice (model, voice and options
    then come only from here). Otherwise ``model``/``voice`` replace the agent's when
    given and ``options`` are merged over the agent's, key by key.
    """

    provider: ProviderName | None = None
    model: ModelName | None = None
    voice: ModelName | None = None
    options: dict[str, Any] | None = None


class CampaignOverrides(_Request, frozen=True, kw_only=True, omit_defaults=True):
    """What a campaign changes in each linked agent's runtime config."""

    instructions: Text | None = None
    greeting: Text | None = None
    llm: ProviderOverride | None = None
    stt: ProviderOverride | None = None
    tts: ProviderOverride | None = None


class CampaignCreate(_Request, frozen=True, kw_only=True):
    """``POST /api/v1/campaigns``; ``id`` is generated when omitted."""

    name: Name
    id: CampaignId | None = None
    description: Description = ""
    status: CampaignStatus = CampaignStatus.ACTIVE


class CampaignPatch(_Request, frozen=True, kw_only=True):
    name: Name | None = None
    description: Description | None = None
    status: CampaignStatus | None = None


class CampaignView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    tenant_id: str
    name: str
    description: str
    status: str
    created_at: str
    updated_at: str


class CampaignPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[CampaignView]
    next_cursor: str | None = None


class CampaignAgentSet(_Request, frozen=True, kw_only=True):
    """``PUT /api/v1/campaigns/{id}/agents/{agent_id}``: link (or re-link) an agent.

    ``weight`` is the agent's share of the campaign's rooms (0 = linked but not routed).
    """

    weight: Weight = 1
    overrides: CampaignOverrides = msgspec.field(default_factory=CampaignOverrides)


class CampaignAgentView(msgspec.Struct, frozen=True, kw_only=True):
    campaign_id: str
    agent_id: str
    weight: int
    overrides: CampaignOverrides
    created_at: str
    updated_at: str


class CampaignAgentPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[CampaignAgentView]
    next_cursor: str | None = None


# --- SIP trunks and numbers ---------------------------------------------------------------


class TrunkSet(_Request, frozen=True, kw_only=True):
    """``PUT /api/v1/trunks/{trunk_id}`` (operators only): the LiveKit SIP inbound trunk
    (``sip.trunkID``, e.g. ``ST_...``) whose calls this tenant may route."""

    tenant_id: TenantId


class TrunkView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    tenant_id: str
    created_at: str
    updated_at: str


class TrunkPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TrunkView]
    next_cursor: str | None = None


class NumberSet(_Request, frozen=True, kw_only=True):
    """``PUT /api/v1/trunks/{trunk_id}/numbers/{number}``: route calls that arrive on
    this trunk (one assigned to the caller's tenant) for this dialed number.

    Exactly one of ``campaign_id`` and ``agent_id``.
    """

    campaign_id: CampaignId | None = None
    agent_id: AgentId | None = None


class NumberView(msgspec.Struct, frozen=True, kw_only=True):
    number: str
    trunk_id: str
    tenant_id: str
    campaign_id: str | None
    agent_id: str | None
    created_at: str
    updated_at: str


class NumberPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[NumberView]
    next_cursor: str | None = None


# --- legacy workers --------------------------------------------------------------------------


class LegacyAgentsSet(_Request, frozen=True, kw_only=True):
    """``PUT /api/v1/tenants/{tenant_id}/legacy-agents`` (operators only): the LiveKit
    agent names this tenant's agents may send rooms to (``legacy_agent_name``)."""

    names: Annotated[list[LegacyAgentName], msgspec.Meta(max_length=100)]


class LegacyAgentsView(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    names: list[str]


# --- tokens and identity -------------------------------------------------------------------


class TokenCreate(_Request, frozen=True, kw_only=True):
    """``POST /api/v1/tokens``: a new bearer token for the caller's tenant. Scopes
    ``runtime`` and ``operator`` only for an operator (a runtime token reads provider
    keys, which a tenant admin may only write)."""

    name: Name
    scope: TokenScope


class TokenView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    tenant_id: str
    name: str
    scope: str
    created_at: str
    last4: str


class TokenCreated(msgspec.Struct, frozen=True, kw_only=True):
    """The only time a token is shown: it is stored hashed and cannot be read back."""

    token: str
    info: TokenView

    def __repr__(self) -> str:
        return f"TokenCreated(info={self.info!r}, token=<hidden>)"

    __str__ = __repr__

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("info", self.info)]  # msgspec's own would show the token


class TokenPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TokenView]
    next_cursor: str | None = None


class WhoAmI(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v1/whoami``: the caller's token as config_sync sees it."""

    name: str
    scope: str
    tenant_id: str | None
    """``null`` for the platform-wide runtime token the worker pool uses."""


# --- errors and health ---------------------------------------------------------------------


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every 4xx/5xx body: a stable machine code and a human message."""

    error: str
    detail: str = ""


class HealthView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /healthz`` of a service: ``status`` is "ok" only if every check is "ok"."""

    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)
    refused: dict[str, int] = msgspec.field(default_factory=dict)
    """Bus messages refused since start, by ``<endpoint>/<reason>`` (malformed requests
    answered ``bad_request``, change events ignored): hostile or broken publishers."""
    dead_tasks: list[DeadTask] = msgspec.field(default_factory=list)
    """Background tasks that died (`tasks.TaskSet`): work the service no longer does."""
