"""Client side of the request/reply services: one function per service, so every caller
handles failure alike (transport failures become a typed, retryable error reply). Each
request carries the caller's trace context in its headers."""

from collections.abc import Callable
from typing import TypeVar

from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError

from core_voice_contracts import subjects
from core_voice_contracts.codec import Decoder, decode_config_reply, decode_route_reply, encode
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import ConfigGetError, ConfigGetReply, ConfigGetRequest, RpcMessage
from core_voice_contracts.routing import RouteError, RouteReply, RouteRequest
from core_voice_contracts.tracing import inject_headers

R = TypeVar("R")


async def _ask(
    nc: Client,
    subject: str,
    request: RpcMessage,
    decode: Decoder[R],
    failed: Callable[[str], R],
    *,
    service: str,
    timeout: float,
) -> R:
    """``decode``'s reply, or ``failed(<service>_unavailable | <service>_timeout |
    bad_reply)`` when there is none to decode."""
    try:
        msg = await nc.request(subject, encode(request), timeout=timeout, headers=inject_headers())
    except NoRespondersError:
        return failed(f"{service}_unavailable")
    except TimeoutError:
        return failed(f"{service}_timeout")
    try:
        return decode(msg.data)
    except DecodeError:
        return failed("bad_reply")


def _config_failed(error: str) -> ConfigGetReply:
    return ConfigGetError(error=error, retryable=True)


def _route_failed(error: str) -> RouteReply:
    return RouteError(error=error, retryable=True)


async def get_runtime_config(
    nc: Client,
    agent_id: str,
    *,
    campaign_id: str | None = None,
    min_version: int = 0,
    timeout: float = 2.0,
) -> ConfigGetReply:
    """Ask config_sync for a runtime config. Transport failures become `ConfigGetError`:
    ``config_sync_unavailable`` (no responder), ``config_sync_timeout``, ``bad_reply``."""
    request = ConfigGetRequest(agent_id=agent_id, campaign_id=campaign_id, min_version=min_version)
    return await _ask(
        nc,
        subjects.CONFIG_GET,
        request,
        decode_config_reply,
        _config_failed,
        service="config_sync",
        timeout=timeout,
    )


async def resolve_route(nc: Client, request: RouteRequest, *, timeout: float = 2.0) -> RouteReply:
    """Ask config_sync which agent and target serve a room (``voice.routing.resolve``).

    The reply never carries provider keys. Transport failures become a retryable
    `RouteError`: ``routing_unavailable`` (no responder), ``routing_timeout``, ``bad_reply``.
    """
    return await _ask(
        nc,
        subjects.ROUTING_RESOLVE,
        request,
        decode_route_reply,
        _route_failed,
        service="routing",
        timeout=timeout,
    )
