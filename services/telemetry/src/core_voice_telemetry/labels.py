"""The cardinality guard: which tenant, agent, campaign and config version become labels.

Any room can name any agent id, so an id seen on the bus is labelled only once it was
*routed*: announced by config_sync (a `ConfigChanged` that is not a deletion) or
dispatched/started (`JobDispatched`, `CallStarted`). At most ``max_agents`` agents and
``max_campaigns`` campaigns get their own label; everything else is folded into
``other`` (and counted in ``corevoice_telemetry_label_overflow_total{label}``). A tenant
is labelled only as the tenant of a labelled agent, so tenants are bounded by agents.
Config versions keep each agent's newest ``max_versions``; older ones read ``older``.
"""

from collections.abc import Callable

from core_voice_contracts.ids import is_valid_id

OTHER = "other"
"""The agent / campaign label of everything not labelled on its own."""
UNKNOWN = "unknown"
"""The tenant label when the tenant is not known (or belongs to no labelled agent)."""
NONE = "none"
"""The campaign label of a job or call without a campaign."""
OLDER = "older"
"""The config_version label of versions older than an agent's newest few."""


class LabelGuard:
    """Bounded label sets, learned from the events. ``overflow(label)`` is called each
    time a value is folded because its set is full (label: agent, campaign,
    config_version) or because its agent was never routed (label: unrouted)."""

    def __init__(
        self,
        *,
        max_agents: int = 1000,
        max_campaigns: int = 1000,
        max_versions: int = 3,
        overflow: Callable[[str], None] = lambda label: None,
        retire_version: Callable[[str, str], None] = lambda agent, version: None,
    ) -> None:
        self.max_agents = max_agents
        self.max_campaigns = max_campaigns
        self.max_versions = max_versions
        self._overflow = overflow
        self._retire_version = retire_version
        self._tenant_of: dict[str, str] = {}
        """Labelled agent -> its tenant ("unknown" until one is seen)."""
        self._tenants: dict[str, int] = {}
        """Tenant -> how many labelled agents it has."""
        self._campaigns: set[str] = set()
        self._versions: dict[str, list[int]] = {}
        """Labelled agent -> its newest versions, ascending."""

    # --- learning ------------------------------------------------------------------------

    def route(self, agent_id: str, tenant_id: str = "", campaign_id: str | None = None) -> None:
        """``agent_id`` (and ``campaign_id``) was routed: give it a label if there is room."""
        if is_valid_id(agent_id):
            if agent_id not in self._tenant_of and len(self._tenant_of) < self.max_agents:
                self._tenant_of[agent_id] = UNKNOWN
                self._count_tenant(UNKNOWN, 1)
            if agent_id in self._tenant_of and is_valid_id(tenant_id):
                old = self._tenant_of[agent_id]
                if old != tenant_id:
                    self._count_tenant(old, -1)
                    self._count_tenant(tenant_id, 1)
                    self._tenant_of[agent_id] = tenant_id
        if (
            campaign_id
            and campaign_id not in self._campaigns
            and is_valid_id(campaign_id)
            and len(self._campaigns) < self.max_campaigns
        ):
            self._campaigns.add(campaign_id)

    def _count_tenant(self, tenant: str, delta: int) -> None:
        count = self._tenants.get(tenant, 0) + delta
        if count > 0:
            self._tenants[tenant] = count
        else:
            self._tenants.pop(tenant, None)

    def routed(self, agent_id: str) -> bool:
        return agent_id in self._tenant_of

    # --- labels ---------------------------------------------------------------------------

    def agent(self, agent_id: str, *, count: bool = True) -> str:
        if agent_id in self._tenant_of:
            return agent_id
        if count:
            self._overflow("agent" if len(self._tenant_of) >= self.max_agents else "unrouted")
        return OTHER

    def tenant(self, agent_id: str, tenant_id: str = "") -> str:
        """The tenant label of an event of ``agent_id`` (``tenant_id`` if it says one)."""
        known = self._tenant_of.get(agent_id)
        if known is not None and known != UNKNOWN:
            return known
        if tenant_id in self._tenants:  # the tenant of some labelled agent
            return tenant_id
        return UNKNOWN

    def campaign(self, campaign_id: str | None, *, count: bool = True) -> str:
        if not campaign_id:
            return NONE
        if campaign_id in self._campaigns:
            return campaign_id
        if count and len(self._campaigns) >= self.max_campaigns:
            self._overflow("campaign")
        return OTHER

    def version(self, agent_label: str, version: int) -> str:
        """The config_version label; a newer version retires the agent's oldest kept one
        (``retire_version`` drops its series, so an agent holds at most
        ``max_versions`` + ``older`` however often it is edited)."""
        if agent_label == OTHER:
            return OTHER
        if version <= 0:  # failed before any config was in hand
            return NONE
        kept = self._versions.setdefault(agent_label, [])
        if version in kept:
            return str(version)
        if len(kept) >= self.max_versions and version < kept[0]:
            self._overflow("config_version")
            return OLDER
        kept.append(version)
        kept.sort()
        while len(kept) > self.max_versions:
            self._retire_version(agent_label, str(kept.pop(0)))
        return str(version)

    @property
    def agents(self) -> int:
        return len(self._tenant_of)
