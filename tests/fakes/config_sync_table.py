"""config_sync's answers to ``voice.config.get`` as an in-process table, for unit tests of
the worker's config mirror and pool."""

import asyncio

from core_voice_contracts.events import (
    ConfigFound,
    ConfigGetError,
    ConfigGetReply,
    ConfigNotFound,
)
from core_voice_contracts.runtime_config import RuntimeConfig


class ConfigSyncTable:
    """Answers like config_sync would from what the test put in ``configs``."""

    def __init__(self) -> None:
        self.configs: dict[str, RuntimeConfig] = {}
        self.down = False
        self.disabled: set[str] = set()
        self.asked: list[tuple[str, str | None, int]] = []
        self.gate: asyncio.Event | None = None

    def put(self, agent_id: str, version: int, instructions: str = "") -> None:
        self.configs[agent_id] = RuntimeConfig(
            agent_id=agent_id, tenant_id="t1", version=version, instructions=instructions
        )

    async def __call__(self, agent_id: str, campaign_id: str | None, min_v: int) -> ConfigGetReply:
        self.asked.append((agent_id, campaign_id, min_v))
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            return ConfigGetError(error="config_sync_unavailable")
        if agent_id in self.disabled:
            return ConfigNotFound(agent_id=agent_id, reason="disabled_agent")
        config = self.configs.get(agent_id)
        if config is None:
            return ConfigNotFound(agent_id=agent_id)
        if config.version < min_v:
            return ConfigGetError(error="version_unavailable")
        return ConfigFound(config=config)
