"""The voice worker pool's local channel to its own job processes.

A job (one call) runs in a process (or thread) of its own; the pool process holds the one
NATS connection and the mirror of runtime configs. A job asks the pool for its config
over a Unix socket instead of asking config_sync, is pushed newer versions while it
runs, and hands its call events to the pool, which publishes them.

Frames are a 4-byte big-endian length followed by a msgpack-encoded `LinkMessage`. The
socket lives in a directory only the pool's user can enter: `LinkConfig` carries the
agent's provider keys, which never travel on a stream.

The link's tags carry no version (unlike `events.tag`): both ends are one install (the job
processes are the pool's own children, started from its code), so a link never joins two
versions and a version would have nothing to tell apart. The call events a `LinkPublish`
carries keep their versioned tags: the pool publishes them as they are.
"""

import struct

import msgspec

from core_voice_contracts.codec import Decoder
from core_voice_contracts.events import CallEnded, CallEvent, CallFailed, CallStarted, TurnLatency
from core_voice_contracts.runtime_config import RuntimeConfig

MAX_FRAME_BYTES = 1 << 20
HEADER = struct.Struct(">I")


class _Link(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


# --- job -> pool ---------------------------------------------------------------------


class LinkGetConfig(_Link, frozen=True, kw_only=True, tag="get_config"):
    """The config a call should start on; also subscribes this connection to newer
    versions of (agent, campaign) until it closes."""

    req: int
    call_id: str
    job_id: str
    room_name: str
    agent_id: str
    campaign_id: str | None = None


class LinkPublish(_Link, frozen=True, kw_only=True, tag="publish"):
    """A call event for the pool to publish (it retries until NATS stores it)."""

    req: int
    event: CallStarted | CallEnded | CallFailed
    traceparent: str = ""
    """W3C trace context the pool publishes ``event`` in: the call's, so the event's
    ``traceparent`` header and its consumers' spans join the call's trace."""


class LinkTurn(_Link, frozen=True, kw_only=True, tag="turn"):
    """A turn's latencies, sent as the turn ends (no answer): the pool's
    ``corevoice_worker_turn_latency_seconds`` shows a long call's turns while it runs."""

    call_id: str
    turn: TurnLatency


class LinkGreeting(_Link, frozen=True, kw_only=True, tag="greeting"):
    """The call's greeting latency (call asked to greet -> first agent audio), sent once,
    no answer."""

    call_id: str
    latency_s: float


# --- pool -> job ---------------------------------------------------------------------


class LinkConfig(_Link, frozen=True, kw_only=True, tag="config"):
    """The answer to `LinkGetConfig`. ``stale``: the pool could not confirm it with
    config_sync and serves its last known good version."""

    req: int
    config: RuntimeConfig
    stale: bool = False


class LinkRefused(_Link, frozen=True, kw_only=True, tag="refused"):
    """No config the call may start on; ``error`` is a `CallFailure` code."""

    req: int
    error: str
    detail: str = ""
    retryable: bool = False


class LinkAccepted(_Link, frozen=True, kw_only=True, tag="accepted"):
    """The pool holds the event of `LinkPublish` ``req`` and will publish it."""

    req: int


class LinkConfigUpdate(_Link, frozen=True, kw_only=True, tag="config_update"):
    """Pushed: a newer version of the watched (agent, campaign)."""

    config: RuntimeConfig
    stale: bool = False


class LinkAgentGone(_Link, frozen=True, kw_only=True, tag="agent_gone"):
    """Pushed: the watched agent was disabled or deleted (``reason`` is a `CallFailure`)."""

    agent_id: str
    reason: str


LinkMessage = (
    LinkGetConfig
    | LinkPublish
    | LinkTurn
    | LinkGreeting
    | LinkConfig
    | LinkRefused
    | LinkAccepted
    | LinkConfigUpdate
    | LinkAgentGone
)

_encoder = msgspec.msgpack.Encoder()


def encode_frame(message: LinkMessage) -> bytes:
    body = _encoder.encode(message)
    if len(body) > MAX_FRAME_BYTES:
        raise ValueError(f"link frame of {len(body)} bytes is over {MAX_FRAME_BYTES}")
    return HEADER.pack(len(body)) + body


decode_body: Decoder[LinkMessage] = Decoder("pool link message", LinkMessage, msgpack=True)
"""A frame's body (after `HEADER`); raises `DecodeError` for anything but a `LinkMessage`."""


__all__ = [
    "HEADER",
    "MAX_FRAME_BYTES",
    "CallEvent",
    "LinkAccepted",
    "LinkAgentGone",
    "LinkConfig",
    "LinkConfigUpdate",
    "LinkGetConfig",
    "LinkGreeting",
    "LinkMessage",
    "LinkPublish",
    "LinkRefused",
    "LinkTurn",
    "decode_body",
    "encode_frame",
]
