"""Encoding, and the one typed decoder every message family uses.

A `Decoder` per family, built once and reused (msgspec's advice: a decoder caches its
type), turns bytes into that family's tagged union and anything else into our
`DecodeError` with the kind, so a consumer can term a poison message instead of
crashing on it. That includes what msgspec raises besides its own DecodeError
(`errors.DECODE_FAILURES`): JSON nested too deep to parse (`RecursionError`, even in a
field nobody reads: ``{"x": [[[...``) and invalid UTF-8 in a tag (`UnicodeDecodeError`),
which no caller expects.

Every bus family's decoder is here (``decode_<family>``); the two that never touch the
bus live beside their types: `room.decode_room_metadata`, `pool_link.decode_body`.

>>> from core_voice_contracts.events import JobExpired
>>> decode_job_event(encode(JobExpired(job_id="j", room_name="r", agent_id="a"))).job_id
'j'
"""

from collections.abc import Callable
from types import UnionType
from typing import Any, Generic, TypeVar, overload

import msgspec

from core_voice_contracts.errors import DECODE_FAILURES, DecodeError
from core_voice_contracts.events import (
    CallEvent,
    ConfigEvent,
    ConfigGetReply,
    ConfigGetRequest,
    ConfigStreamEvent,
    JobEvent,
    WorkerEvent,
)
from core_voice_contracts.routing import RouteReply, RouteRequest
from core_voice_contracts.runtime_config import RuntimeConfig

__all__ = [
    "Decoder",
    "decode_call_event",
    "decode_config_event",
    "decode_config_reply",
    "decode_config_request",
    "decode_config_stream_event",
    "decode_job_event",
    "decode_route_reply",
    "decode_route_request",
    "decode_runtime_config",
    "decode_worker_event",
    "encode",
]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


class Decoder(Generic[T]):
    """Decodes one message family (a Struct or a tagged union of them) into ``T``.

    ``kind`` names the family in `DecodeError` (``cannot decode job event: ...``).
    ``msgpack=True`` for the pool link's frames; JSON otherwise, from bytes or text. For a
    union, name ``T`` in the annotation: ``Decoder[JobEvent]``.
    """

    __slots__ = ("_decode", "kind")

    @overload
    def __init__(self, kind: str, type_: type[T], *, msgpack: bool = False) -> None: ...
    @overload
    def __init__(self, kind: str, type_: UnionType, *, msgpack: bool = False) -> None: ...
    def __init__(self, kind: str, type_: object, *, msgpack: bool = False) -> None:
        self.kind = kind
        # msgspec types a decoder of a union as Decoder[Any]: T is pinned by the caller.
        backend: Any = msgspec.msgpack.Decoder(type_) if msgpack else msgspec.json.Decoder(type_)
        self._decode: Callable[[bytes | str], T] = backend.decode

    def __call__(self, data: bytes | str) -> T:
        """Raises `DecodeError` for anything but a ``T``."""
        try:
            return self._decode(data)
        except DECODE_FAILURES as exc:
            raise DecodeError.of(self.kind, exc) from None


decode_job_event: Decoder[JobEvent] = Decoder("job event", JobEvent)
decode_call_event: Decoder[CallEvent] = Decoder("call event", CallEvent)
decode_config_event: Decoder[ConfigEvent] = Decoder("config event", ConfigEvent)
decode_config_stream_event: Decoder[ConfigStreamEvent] = Decoder(
    "config stream event", ConfigStreamEvent
)
"""Any ``VOICE_CONFIG`` message: for readers of both families (the outbox relay)."""
decode_config_request: Decoder[ConfigGetRequest] = Decoder("config request", ConfigGetRequest)
decode_config_reply: Decoder[ConfigGetReply] = Decoder("config reply", ConfigGetReply)
decode_route_request: Decoder[RouteRequest] = Decoder("route request", RouteRequest)
decode_route_reply: Decoder[RouteReply] = Decoder("route reply", RouteReply)
decode_runtime_config: Decoder[RuntimeConfig] = Decoder("runtime config", RuntimeConfig)
decode_worker_event: Decoder[WorkerEvent] = Decoder("worker event", WorkerEvent)
