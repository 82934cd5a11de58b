"""Signed LiveKit webhooks, built the way livekit-server builds them.

For the webhook tests that need exact control (tampering, replay, staleness, SIP callers,
bulk load); the happy path in the integration tests uses real webhooks from a real
livekit-server. Bodies are protobuf-JSON like LiveKit's (camelCase, int64 as strings).
"""

import base64
import datetime as dt
import hashlib
import json
import time
import uuid
from typing import Any

from livekit.api import AccessToken

DIALED_NUMBER = "sip.trunkPhoneNumber"


def event_id() -> str:
    return f"EV_{uuid.uuid4().hex[:12]}"


def _event(kind: str, created_at: float | None, id_: str | None, **fields: Any) -> bytes:
    event: dict[str, Any] = {
        "event": kind,
        "id": id_ or event_id(),
        "createdAt": str(int(time.time() if created_at is None else created_at)),
        **fields,
    }
    return json.dumps(event).encode()


def _room(name: str, sid: str, metadata: str) -> dict[str, Any]:
    return {"sid": sid, "name": name, "metadata": metadata}


def room_started_body(
    room_name: str,
    room_sid: str,
    metadata: str = "",
    *,
    created_at: float | None = None,
    id_: str | None = None,
) -> bytes:
    return _event("room_started", created_at, id_, room=_room(room_name, room_sid, metadata))


def room_finished_body(room_name: str, room_sid: str, metadata: str = "") -> bytes:
    return _event("room_finished", None, None, room=_room(room_name, room_sid, metadata))


def participant_body(
    kind: str,
    room_name: str,
    room_sid: str,
    identity: str,
    *,
    metadata: str = "",
    participant_kind: str = "SIP",
    attributes: dict[str, str] | None = None,
    created_at: float | None = None,
) -> bytes:
    """``participant_joined`` / ``participant_left`` of a (by default SIP) participant."""
    participant = {
        "sid": f"PA_{uuid.uuid4().hex[:12]}",
        "identity": identity,
        "kind": participant_kind,
        "attributes": attributes or {},
    }
    return _event(
        kind,
        created_at,
        None,
        room=_room(room_name, room_sid, metadata),
        participant=participant,
    )


def sip_joined_body(
    room_name: str, room_sid: str, identity: str, dialed: str, *, metadata: str = ""
) -> bytes:
    return participant_body(
        "participant_joined",
        room_name,
        room_sid,
        identity,
        metadata=metadata,
        attributes={DIALED_NUMBER: dialed, "sip.phoneNumber": "+15550000000"},
    )


def sign(
    body: bytes, api_key: str, api_secret: str, *, valid_for: dt.timedelta | None = None
) -> str:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = AccessToken(api_key, api_secret).with_sha256(digest)
    if valid_for is not None:
        token = token.with_ttl(valid_for)
    return f"Bearer {token.to_jwt()}"
