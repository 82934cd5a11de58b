"""Connecting to NATS and publishing contract messages the same way everywhere."""

import logging
from collections.abc import Callable, Mapping

import msgspec
import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from core_voice_contracts.codec import encode
from core_voice_contracts.streams import ensure_streams

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"


async def connect(
    url: str,
    *,
    name: str,
    ensure: bool = True,
    on_disconnected: Callable[[], None] | None = None,
    on_reconnected: Callable[[], None] | None = None,
) -> tuple[Client, JetStreamContext]:
    """Connect with unlimited reconnects (a bus outage is waited out, not fatal).

    Core subscriptions miss whatever is published while the connection is down: a
    caller that keeps state derived from them clears it in ``on_disconnected`` /
    ``on_reconnected`` (plain functions, called on the client's loop; they must not block).
    """

    async def _disconnected() -> None:
        log.warning("nats disconnected", extra={"client": name})
        if on_disconnected is not None:
            on_disconnected()

    async def _reconnected() -> None:
        log.info("nats reconnected", extra={"client": name})
        if on_reconnected is not None:
            on_reconnected()

    async def _error(exc: Exception) -> None:
        log.warning("nats error", extra={"client": name, "error": type(exc).__name__})

    nc = await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        disconnected_cb=_disconnected,
        reconnected_cb=_reconnected,
        error_cb=_error,
    )
    js = nc.jetstream()
    if ensure:
        await ensure_streams(js)
    return nc, js


async def publish(
    js: JetStreamContext,
    subject: str,
    message: msgspec.Struct,
    *,
    msg_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> PubAck:
    """Publish to JetStream and wait for the stream's ack (the message is durable)."""
    hdrs = dict(headers or {})
    if msg_id is not None:
        hdrs[MSG_ID_HEADER] = msg_id
    return await js.publish(subject, encode(message), headers=hdrs or None, timeout=timeout)
