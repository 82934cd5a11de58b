"""Encoding and typed decoding of every contract message.

One reusable decoder per subject family (the routing pair lives beside its types in
`routing` and is re-exported here, so every decoder is reachable from one module);
decode failures raise `DecodeError` with the
kind, so a consumer can term a poison message instead of crashing on it. That includes
what msgspec raises besides its own DecodeError (`errors.DECODE_FAILURES`): JSON nested
too deep to parse (`RecursionError`, even in a field nobody reads: ``{"x": [[[...``) and
invalid UTF-8 in a tag (`UnicodeDecodeError`), which no caller expects.
"""

from typing import Any

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
from core_voice_contracts.routing import decode_route_reply, decode_route_request
from core_voice_contracts.runtime_config import RuntimeConfig

__all__ = [
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

_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


class _Decoder:
    def __init__(self, kind: str, type_: Any) -> None:
        self.kind = kind
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(type_)

    def __call__(self, data: bytes) -> Any:
        try:
            return self._decoder.decode(data)
        except DECODE_FAILURES as exc:
            raise DecodeError.of(self.kind, exc) from None


_jobs = _Decoder("job event", JobEvent)
_calls = _Decoder("call event", CallEvent)
_config = _Decoder("config event", ConfigEvent)
_config_stream = _Decoder("config stream event", ConfigStreamEvent)
_get_request = _Decoder("config request", ConfigGetRequest)
_get_reply = _Decoder("config reply", ConfigGetReply)
_runtime = _Decoder("runtime config", RuntimeConfig)
_workers = _Decoder("worker event", WorkerEvent)


def decode_job_event(data: bytes) -> JobEvent:
    result: JobEvent = _jobs(data)
    return result


def decode_call_event(data: bytes) -> CallEvent:
    result: CallEvent = _calls(data)
    return result


def decode_config_event(data: bytes) -> ConfigEvent:
    result: ConfigEvent = _config(data)
    return result


def decode_config_stream_event(data: bytes) -> ConfigStreamEvent:
    """Any ``VOICE_CONFIG`` message: for readers of both families (the outbox relay)."""
    result: ConfigStreamEvent = _config_stream(data)
    return result


def decode_config_request(data: bytes) -> ConfigGetRequest:
    result: ConfigGetRequest = _get_request(data)
    return result


def decode_config_reply(data: bytes) -> ConfigGetReply:
    result: ConfigGetReply = _get_reply(data)
    return result


def decode_runtime_config(data: bytes) -> RuntimeConfig:
    result: RuntimeConfig = _runtime(data)
    return result


def decode_worker_event(data: bytes) -> WorkerEvent:
    result: WorkerEvent = _workers(data)
    return result
