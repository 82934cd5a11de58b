"""Creating a LiveKit room for one call, the way every room Core Voice makes is created."""

from livekit import api

from core_voice_contracts.room import HOLD_AGENT_NAME


def call_room(name: str, metadata: str) -> api.CreateRoomRequest:
    """The room's metadata names the agent (the dispatcher routes it from the webhook);
    its configuration names `HOLD_AGENT_NAME`, so LiveKit makes no default dispatch whose
    wasted job request would slow every dispatch of a burst (`docs/dispatcher.md`,
    "Bursts")."""
    return api.CreateRoomRequest(
        name=name, metadata=metadata, agents=[api.RoomAgentDispatch(agent_name=HOLD_AGENT_NAME)]
    )
