"""The LiveKit room metadata that names the agent for a call, and how to create the room.

Whatever creates the room (a backend, an outbound campaign, the synthetic caller)
writes this JSON; the dispatcher reads it from the ``room_started`` webhook.
"""

import msgspec

from core_voice_contracts.codec import Decoder


class RoomMetadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    agent_id: str | None = None
    campaign_id: str | None = None
    lead_id: str | None = None


HOLD_AGENT_NAME = "corevoice-hold"
"""The agent to name in the room's configuration (``RoomAgentDispatch(agent_name=...)``,
or a SIP dispatch rule's ``room_config``) of every room made for a call. No worker ever
registers under it, so LiveKit launches nothing for it (it skips names with no worker
without an RPC); what it prevents is LiveKit's default dispatch of a room created with no
agent (an empty agent name), whose job request waits 1 s for an unnamed worker that does
not exist while holding 2 of the 50 slots LiveKit 1.13.5 shares between every job
request: bursts of such rooms cap explicit dispatch at ~21 jobs/s. The dispatcher still
routes the room from its webhook and dispatches the pool (`docs/dispatcher.md`,
"Bursts")."""


def encode_room_metadata(meta: RoomMetadata) -> str:
    return msgspec.json.encode(meta).decode()


decode_room_metadata: Decoder[RoomMetadata] = Decoder("room metadata", RoomMetadata)
"""Takes the metadata text as LiveKit hands it over; raises `DecodeError` for anything
but a JSON object of this shape. Not in `codec`: it never travels on the bus."""


# --- the worker's participant in a call's room ------------------------------------------
# A worker joins each room as ``agent_identity(call_id)`` (the call id is LiveKit's job
# id) with these attributes, so anyone watching the room (the dispatcher, on
# ``participant_left``) can tell which call, agent and worker it was without asking.

AGENT_IDENTITY_PREFIX = "agent-"
ATTR_CALL_ID = "corevoice.call_id"
ATTR_JOB_ID = "corevoice.job_id"
ATTR_AGENT_ID = "corevoice.agent_id"
ATTR_TENANT_ID = "corevoice.tenant_id"
ATTR_CAMPAIGN_ID = "corevoice.campaign_id"
ATTR_WORKER_ID = "corevoice.worker_id"
ATTR_CONFIG_VERSION = "corevoice.config_version"


def agent_identity(call_id: str) -> str:
    return f"{AGENT_IDENTITY_PREFIX}{call_id}"


def call_id_of_agent(identity: str) -> str | None:
    """The call id of a worker's participant identity, or None for anyone else."""
    if identity.startswith(AGENT_IDENTITY_PREFIX) and len(identity) > len(AGENT_IDENTITY_PREFIX):
        return identity[len(AGENT_IDENTITY_PREFIX) :]
    return None
