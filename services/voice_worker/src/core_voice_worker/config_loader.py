"""Loading an agent's runtime config for a call."""

import logging

from nats.aio.client import Client

from core_voice_contracts.events import ConfigFound, ConfigGetError, ConfigNotFound
from core_voice_contracts.rpc import get_runtime_config
from core_voice_contracts.runtime_config import RuntimeConfig
from core_voice_worker.errors import ConfigUnavailableError

log = logging.getLogger(__name__)


async def load_runtime_config(
    nc: Client, agent_id: str, campaign_id: str | None, timeout: float
) -> RuntimeConfig:
    reply = await get_runtime_config(nc, agent_id, campaign_id=campaign_id, timeout=timeout)
    match reply:
        case ConfigFound(config=config):
            return config
        case ConfigNotFound(reason=reason):
            raise ConfigUnavailableError(f"agent {agent_id}: {reason}")
        case ConfigGetError(error=error):
            raise ConfigUnavailableError(f"agent {agent_id}: {error}")
