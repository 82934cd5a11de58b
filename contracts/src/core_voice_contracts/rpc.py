"""Client side of ``voice.config.get``: one function so every caller handles failure alike."""

from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError

from core_voice_contracts import subjects
from core_voice_contracts.codec import decode_config_reply, encode
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import ConfigGetError, ConfigGetReply, ConfigGetRequest


async def get_runtime_config(
    nc: Client,
    agent_id: str,
    *,
    campaign_id: str | None = None,
    min_version: int = 0,
    timeout: float = 2.0,
) -> ConfigGetReply:
    """Ask config_sync for a runtime config. Transport failures become `ConfigGetError`."""
    request = ConfigGetRequest(agent_id=agent_id, campaign_id=campaign_id, min_version=min_version)
    try:
        msg = await nc.request(subjects.CONFIG_GET, encode(request), timeout=timeout)
    except NoRespondersError:
        return ConfigGetError(error="config_sync_unavailable", retryable=True)
    except TimeoutError:
        return ConfigGetError(error="config_sync_timeout", retryable=True)
    try:
        return decode_config_reply(msg.data)
    except DecodeError:
        return ConfigGetError(error="bad_reply", retryable=True)
