"""config_sync's errors: each carries a stable ``code`` and the HTTP status it maps to.

Messages name ids and fields, never tokens, keys or config contents.
"""


class ConfigSyncError(Exception):
    """Base class. ``retryable`` tells a caller whether trying again can help."""

    code = "config_sync_error"
    status = 500
    retryable = False

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail


class SettingsError(ConfigSyncError):
    """The environment does not describe a runnable service."""

    code = "invalid_settings"


def _shown(value: str) -> str:
    """A caller-supplied id, shortened so an error body never echoes a huge input."""
    return repr(value if len(value) <= 64 else value[:61] + "...")


class AgentNotFoundError(ConfigSyncError):
    code = "agent_not_found"
    status = 404

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"no agent {_shown(agent_id)}")
        self.agent_id = agent_id


class AgentExistsError(ConfigSyncError):
    """The same answer whichever tenant holds the id (or held it: ids of deleted agents
    stay reserved), so it tells nothing about other tenants."""

    code = "agent_exists"
    status = 409

    def __init__(self, agent_id: str) -> None:
        super().__init__(
            f"agent id {_shown(agent_id)} is not available (ids are global; omit id to get "
            "a generated one)"
        )
        self.agent_id = agent_id


class InvalidConfigError(ConfigSyncError):
    """An edit that parses but describes a config a worker could not run.

    Carries every problem found, each naming its field (``llm.model``), so one answer
    lists all there is to fix. ``field`` is the first one.
    """

    code = "invalid_config"
    status = 422

    def __init__(self, field: str, detail: str, *more: tuple[str, str]) -> None:
        self.problems = [(field, detail), *more]
        super().__init__("; ".join(f"{f}: {d}" for f, d in self.problems))
        self.field = field

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> "InvalidConfigError":
        first, *rest = problems
        return cls(first[0], first[1], *rest)


class EmptyPatchError(ConfigSyncError):
    code = "empty_patch"
    status = 422

    def __init__(self) -> None:
        super().__init__("the patch names no field to change")


class ConcurrentEditError(ConfigSyncError):
    """Another edit of the same agent committed first, every time we retried."""

    code = "concurrent_edit"
    status = 409
    retryable = True

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent {_shown(agent_id)} changed concurrently; retry")
        self.agent_id = agent_id


class ForbiddenError(ConfigSyncError):
    """A valid token that lacks what this action needs."""

    code = "forbidden"
    status = 403


class CampaignNotFoundError(ConfigSyncError):
    code = "campaign_not_found"
    status = 404

    def __init__(self, campaign_id: str) -> None:
        super().__init__(f"no campaign {_shown(campaign_id)}")
        self.campaign_id = campaign_id


class CampaignExistsError(ConfigSyncError):
    """Like `AgentExistsError`: the same answer whichever tenant holds the id."""

    code = "campaign_exists"
    status = 409

    def __init__(self, campaign_id: str) -> None:
        super().__init__(
            f"campaign id {_shown(campaign_id)} is not available (ids are global; omit id "
            "to get a generated one)"
        )
        self.campaign_id = campaign_id


class LinkNotFoundError(ConfigSyncError):
    code = "link_not_found"
    status = 404

    def __init__(self, campaign_id: str, agent_id: str) -> None:
        super().__init__(f"agent {_shown(agent_id)} is not in campaign {_shown(campaign_id)}")


class VersionNotFoundError(ConfigSyncError):
    code = "version_not_found"
    status = 404

    def __init__(self, agent_id: str, version: int) -> None:
        super().__init__(f"agent {_shown(agent_id)} has no version {version}")


class NumberNotFoundError(ConfigSyncError):
    code = "number_not_found"
    status = 404

    def __init__(self, number: str) -> None:
        super().__init__(f"no mapping for {_shown(number)}")


class NumberTakenError(ConfigSyncError):
    """A concurrent first mapping of the same trunk and number won. Numbers live on
    trunks, and a trunk belongs to one tenant, so this never concerns another tenant."""

    code = "number_taken"
    status = 409
    retryable = True

    def __init__(self, number: str) -> None:
        super().__init__(f"{_shown(number)} was mapped concurrently; retry")


class TrunkNotFoundError(ConfigSyncError):
    """Unknown, or assigned to another tenant: the same answer, so trunks of other
    tenants cannot be discovered."""

    code = "trunk_not_found"
    status = 404

    def __init__(self, trunk_id: str) -> None:
        super().__init__(f"no trunk {_shown(trunk_id)} assigned to this tenant")


class TenantNotFoundError(ConfigSyncError):
    code = "tenant_not_found"
    status = 404

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"no tenant {_shown(tenant_id)}")


class InUseError(ConfigSyncError):
    """Deleting something that routing still depends on."""

    code = "in_use"
    status = 409


class TokenNotFoundError(ConfigSyncError):
    code = "token_not_found"
    status = 404

    def __init__(self, token_id: str) -> None:
        super().__init__(f"no token {_shown(token_id)}")


class DatabaseUnavailableError(ConfigSyncError):
    """The database did not answer. Writes fail with this (503); reads fall back to the
    cache where they can."""

    code = "database_unavailable"
    status = 503
    retryable = True

    def __init__(self) -> None:
        super().__init__("the database is unavailable; retry shortly (nothing was changed)")


class KeysUnavailableError(ConfigSyncError):
    """Provider keys cannot be sealed or opened: no or wrong master key configured."""

    code = "keys_unavailable"
    status = 503

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class StaleReadError(ConfigSyncError):
    """Every read of an agent was overtaken by a change announced meanwhile (retry)."""

    code = "version_unavailable"
    status = 503
    retryable = True

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent {_shown(agent_id)} changed while it was read; retry")
        self.agent_id = agent_id


class BadCursorError(ConfigSyncError):
    code = "bad_cursor"
    status = 400

    def __init__(self) -> None:
        super().__init__("cursor is not one this API returned")
