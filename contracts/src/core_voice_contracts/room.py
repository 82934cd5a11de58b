"""The LiveKit room metadata that names the agent for a call.

Whatever creates the room (a backend, an outbound campaign, the synthetic caller)
writes this JSON; the dispatcher reads it from the ``room_started`` webhook.
"""

import msgspec


class RoomMetadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    agent_id: str | None = None
    campaign_id: str | None = None
    lead_id: str | None = None


_decoder = msgspec.json.Decoder(RoomMetadata)


def encode_room_metadata(meta: RoomMetadata) -> str:
    return msgspec.json.encode(meta).decode()


def decode_room_metadata(text: str) -> RoomMetadata:
    """Raises ``msgspec.DecodeError`` for anything but a JSON object of this shape."""
    return _decoder.decode(text)
