"""Client side of the request/reply services: one function per service, so every caller
handles failure alike (transport failures become a typed, retryable error reply). Each
request carries the caller's trace context in its headers.

Requests are hedged: a request with no answer after ``hedge_after`` seconds is sent once
more. A queue group hands each request to one replica; a replica killed while holding one
(SIGKILL, a lost node) never answers it, and the server has already dropped its
subscription, so the second copy reaches a live one. Without it, that request waited the
whole timeout (2 s): an edit went live 1.3 s late in the cluster tests while a config_sync
replica died. Both services are reads, so a request answered twice costs only the work.
"""

import asyncio
from collections.abc import Callable
from typing import TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError, TimeoutError

from core_voice_contracts import subjects
from core_voice_contracts.codec import Decoder, decode_config_reply, decode_route_reply, encode
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import ConfigGetError, ConfigGetReply, ConfigGetRequest, RpcMessage
from core_voice_contracts.routing import RouteError, RouteReply, RouteRequest
from core_voice_contracts.tracing import inject_headers

R = TypeVar("R")

HEDGE_AFTER_S = 0.3
"""Well above a healthy answer (p99 < 5 ms, tens of ms under load), well below the
2 s timeout."""


async def request_hedged(
    nc: Client,
    subject: str,
    payload: bytes,
    *,
    timeout: float,
    hedge_after: float | None = HEDGE_AFTER_S,
    headers: dict[str, str] | None = None,
) -> Msg:
    """The first answer to ``payload`` on ``subject``, asked again once after
    ``hedge_after`` s without one (``None``: asked once). Raises as `Client.request`
    does, with the first copy's error when neither copy was answered."""
    first: asyncio.Future[Msg] = asyncio.ensure_future(
        nc.request(subject, payload, timeout=timeout, headers=headers)
    )
    if hedge_after is None or hedge_after >= timeout:
        return await first
    finished, _ = await asyncio.wait({first}, timeout=hedge_after)
    if finished:
        return first.result()
    second: asyncio.Future[Msg] = asyncio.ensure_future(
        nc.request(subject, payload, timeout=timeout - hedge_after, headers=headers)
    )
    pending: set[asyncio.Future[Msg]] = {first, second}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for copy in done:
                if copy.exception() is None:
                    return copy.result()
        second.exception()  # retrieved: the first copy's error is the one raised
        return first.result()
    finally:
        for copy in pending:
            copy.cancel()


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
        msg = await request_hedged(
            nc, subject, encode(request), timeout=timeout, headers=inject_headers()
        )
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
