"""Client side of the request/reply services: one function per service, so every caller
handles failure alike (transport failures become a typed, retryable error reply). Each
request carries the caller's trace context in its headers."""

from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError

from core_voice_contracts import subjects
from core_voice_contracts.codec import decode_config_reply, encode
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import ConfigGetError, ConfigGetReply, ConfigGetRequest
from core_voice_contracts.routing import RouteError, RouteReply, RouteRequest, decode_route_reply
from core_voice_contracts.tracing import inject_headers


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
        msg = await nc.request(
            subjects.CONFIG_GET, encode(request), timeout=timeout, headers=inject_headers()
        )
    except NoRespondersError:
        return ConfigGetError(error="config_sync_unavailable", retryable=True)
    except TimeoutError:
        return ConfigGetError(error="config_sync_timeout", retryable=True)
    try:
        return decode_config_reply(msg.data)
    except DecodeError:
        return ConfigGetError(error="bad_reply", retryable=True)


async def resolve_route(nc: Client, request: RouteRequest, *, timeout: float = 2.0) -> RouteReply:
    """Ask config_sync which agent and target serve a room (``voice.routing.resolve``).

    The reply never carries provider keys. Transport failures become a retryable
    `RouteError`: ``routing_unavailable`` (no responder), ``routing_timeout``, ``bad_reply``.
    """
    try:
        msg = await nc.request(
            subjects.ROUTING_RESOLVE, encode(request), timeout=timeout, headers=inject_headers()
        )
    except NoRespondersError:
        return RouteError(error="routing_unavailable", retryable=True)
    except TimeoutError:
        return RouteError(error="routing_timeout", retryable=True)
    try:
        return decode_route_reply(msg.data)
    except DecodeError:
        return RouteError(error="bad_reply", retryable=True)
