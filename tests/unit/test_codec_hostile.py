"""Every contract decoder turns hostile bytes into `DecodeError`, never another exception.

msgspec raises `RecursionError` (not `msgspec.DecodeError`) for JSON nested deeper than
it can parse, and checks the type only after parsing, so a deep value in a field that
nobody reads (``{"type": ..., "x": [[[[...``) got past every ``except DecodeError``.
"""

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from core_voice_contracts import codec
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import JobRequested
from core_voice_contracts.room import decode_room_metadata

pytestmark = pytest.mark.unit

DEPTH = 100_000

DECODERS: dict[str, Callable[[bytes], Any]] = {
    name: getattr(codec, name) for name in codec.__all__ if name.startswith("decode_")
}

VALID_JOB = codec.encode(JobRequested(job_id="job-1", room_name="r", room_sid="RM_1", agent_id="a"))


def hostile_inputs() -> dict[str, bytes]:
    deep_list = b"[" * DEPTH
    deep_object = b'{"a":' * DEPTH
    # Deep nesting inside an unknown field of an otherwise valid message: msgspec must
    # parse it to skip it, so no type check stops it first.
    deep_field = VALID_JOB[:-1] + b',"x":' + b"[" * DEPTH + b"]" * DEPTH + b"}"
    return {
        "garbage": b"\x00\xff\xfe garbage",
        "empty": b"",
        "not utf-8": b'{"type": "\xff"}',
        "deep list": deep_list,
        "deep object": deep_object,
        "deep unknown field": deep_field,
        "one mebibyte": b'{"type":"' + b"x" * (1024 * 1024) + b'"}',
        "wrong types": b'{"type":"job.requested.v1","job_id":5,"room_name":[],"agent_id":{}}',
        "wrong tag": b'{"type":"nope"}',
        "array": b"[1,2,3]",
        "number": b"12345678901234567890123456789",
    }


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@pytest.mark.parametrize("case", sorted(hostile_inputs()))
def test_every_decoder_raises_decode_error_on_hostile_input(decoder: str, case: str) -> None:
    with pytest.raises(DecodeError) as info:
        DECODERS[decoder](hostile_inputs()[case])
    assert len(str(info.value)) < 2000  # the detail never carries the whole input


def test_deep_nesting_is_a_decode_error_that_says_so() -> None:
    deep = VALID_JOB[:-1] + b',"x":' + b"[" * DEPTH + b"]" * DEPTH + b"}"
    with pytest.raises(DecodeError, match="nested too deep") as info:
        codec.decode_job_event(deep)
    assert info.value.kind == "job event"
    # The same message without the hostile field still decodes.
    assert codec.decode_job_event(VALID_JOB) == msgspec.json.decode(VALID_JOB, type=JobRequested)


def test_room_metadata_nested_too_deep_is_a_decode_error() -> None:
    """The webhook's room metadata: intake catches `DecodeError` only."""
    for text in ("[" * DEPTH, '{"agent_id": "a", "x": ' + "[" * DEPTH, '{"agent_id": "\ud800"}'):
        with pytest.raises(DecodeError):
            decode_room_metadata(text)
