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
    code = "agent_exists"
    status = 409

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent {_shown(agent_id)} already exists")
        self.agent_id = agent_id


class InvalidConfigError(ConfigSyncError):
    """An edit that parses but describes a config a worker could not run."""

    code = "invalid_config"
    status = 422

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


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
