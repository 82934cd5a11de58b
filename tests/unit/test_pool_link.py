"""The pool's local link: frames, bad input, and keys kept out of reprs."""

import msgspec
import pytest

from core_voice_contracts import room
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import CallFailed, call_outcome_msg_id, call_started_msg_id
from core_voice_contracts.pool_link import (
    HEADER,
    MAX_FRAME_BYTES,
    LinkConfig,
    LinkGetConfig,
    LinkPublish,
    decode_body,
    encode_frame,
)
from core_voice_contracts.runtime_config import ProviderKeys, RuntimeConfig

pytestmark = pytest.mark.unit

KEY = "sk-link-canary-0a1b2c"


def body(frame: bytes) -> bytes:
    (size,) = HEADER.unpack(frame[: HEADER.size])
    assert size == len(frame) - HEADER.size
    return frame[HEADER.size :]


def test_messages_round_trip_through_frames() -> None:
    config = RuntimeConfig(
        agent_id="a1", tenant_id="t1", version=3, keys=ProviderKeys(values={"openai": KEY})
    )
    for message in (
        LinkGetConfig(req=1, call_id="AJ_1", job_id="j", room_name="r", agent_id="a1"),
        LinkConfig(req=1, config=config, stale=True),
        LinkPublish(
            req=2,
            event=CallFailed(call_id="AJ_1", job_id="j", room_name="r", agent_id="a1", error="x"),
        ),
    ):
        assert decode_body(body(encode_frame(message))) == message


def test_a_config_on_the_link_never_shows_its_keys() -> None:
    config = RuntimeConfig(
        agent_id="a1", tenant_id="t1", version=1, keys=ProviderKeys(values={"openai": KEY})
    )
    message = LinkConfig(req=1, config=config)
    assert KEY not in repr(message) and KEY not in str(message)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgspec.msgpack.encode({"type": "nope"}),
        msgspec.msgpack.encode({"type": "get_config", "req": "one"}),
        b"\x91" * 100_000 + b"\xc0",  # deeply nested arrays
    ],
)
def test_garbage_is_a_decode_error_never_a_crash(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_body(data)


def test_a_frame_over_the_limit_is_refused() -> None:
    config = RuntimeConfig(
        agent_id="a1", tenant_id="t1", version=1, instructions="x" * (MAX_FRAME_BYTES + 1)
    )
    with pytest.raises(ValueError, match="over"):
        encode_frame(LinkConfig(req=1, config=config))


def test_call_ids_ride_in_the_agent_identity_and_msg_ids() -> None:
    identity = room.agent_identity("AJ_xyz")
    assert room.call_id_of_agent(identity) == "AJ_xyz"
    assert room.call_id_of_agent("synthetic-caller") is None
    assert room.call_id_of_agent(room.AGENT_IDENTITY_PREFIX) is None
    assert call_outcome_msg_id("AJ_xyz") != call_started_msg_id("AJ_xyz")
