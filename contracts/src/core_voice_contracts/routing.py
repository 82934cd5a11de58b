"""Routing a room to an agent: the ``voice.routing.resolve`` request/reply and the
deterministic choices both sides must agree on.

The dispatcher asks config_sync which agent serves a room (directly named, picked from
a campaign by weight, or mapped from a SIP caller's trunk and dialed number) and whether
the room goes to the shared pool or, during a gradual migration, to the agent's legacy
worker.
The reply never carries provider keys: the dispatcher has no use for them.

Choices are a pure function of the room key, so the same room always gets the same
answer, on any replica, after any restart or replay. The decoders are
`codec.decode_route_request` and `codec.decode_route_reply`.
"""

import hashlib
from collections.abc import Sequence
from enum import StrEnum

from core_voice_contracts.events import RpcMessage, tag


class Target(StrEnum):
    POOL = "pool"  # the shared Core Voice worker pool
    LEGACY = "legacy"  # the agent's own pre-migration worker


class RouteRequest(RpcMessage, frozen=True, kw_only=True, tag=tag("route.request")):
    """What the dispatcher knows about a room. ``room_key`` makes choices deterministic."""

    room_key: str
    agent_id: str | None = None
    campaign_id: str | None = None
    dialed_number: str | None = None
    trunk_id: str | None = None
    """SIP: the LiveKit inbound trunk the call came in on (``sip.trunkID``). A number
    routes only together with its trunk: trunks are assigned to tenants by an operator,
    so a tenant cannot claim calls to a number on another tenant's trunk."""


class RouteResolved(RpcMessage, frozen=True, kw_only=True, tag=tag("route.resolved")):
    agent_id: str
    tenant_id: str
    campaign_id: str | None = None
    target: Target = Target.POOL
    legacy_agent_name: str | None = None
    """Set when ``target`` is LEGACY: the agent name the legacy worker registers under."""
    via: str = "agent"
    """How the agent was found: ``agent``, ``campaign`` or ``dialed_number``."""


class RouteRejected(RpcMessage, frozen=True, kw_only=True, tag=tag("route.rejected")):
    reason: str
    """A `RejectReason` value (unknown_agent, disabled_agent, no_route, ...)."""
    detail: str = ""


class RouteError(RpcMessage, frozen=True, kw_only=True, tag=tag("route.error")):
    error: str
    retryable: bool = True


RouteReply = RouteResolved | RouteRejected | RouteError


def bucket(room_key: str, salt: str = "") -> float:
    """A stable number in [0, 1) for a room: SHA-256, not Python's per-process hash()."""
    digest = hashlib.sha256(f"{salt}\x00{room_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick_weighted(room_key: str, choices: Sequence[tuple[str, int]], salt: str = "") -> str | None:
    """Pick one id by weight, the same one for the same room every time.

    Choices are ordered by id first, so the database's row order cannot change the pick.
    Zero and negative weights never win; no positive weight means no pick.
    """
    ranked = sorted((cid, w) for cid, w in choices if w > 0)
    total = sum(w for _, w in ranked)
    if total == 0:
        return None
    point = bucket(room_key, salt) * total
    for cid, weight in ranked:
        if point < weight:
            return cid
        point -= weight
    return ranked[-1][0]


def goes_to_legacy(room_key: str, agent_id: str, legacy_percent: int) -> bool:
    """During a migration ``legacy_percent`` % of an agent's rooms stay on its legacy worker."""
    if legacy_percent <= 0:
        return False
    if legacy_percent >= 100:
        return True
    return bucket(room_key, salt=f"legacy:{agent_id}") * 100 < legacy_percent
