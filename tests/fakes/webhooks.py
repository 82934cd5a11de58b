"""Signed LiveKit webhooks, built the way livekit-server builds them.

For the webhook tests that need exact control (tampering, replay, oversize); the
happy path in the integration tests uses real webhooks from a real livekit-server.
"""

import base64
import hashlib
import json
import time
import uuid

from livekit.api import AccessToken


def room_started_body(room_name: str, room_sid: str, metadata: str = "") -> bytes:
    event = {
        "event": "room_started",
        "id": f"EV_{uuid.uuid4().hex[:12]}",
        "createdAt": str(int(time.time())),
        "room": {"sid": room_sid, "name": room_name, "metadata": metadata},
    }
    return json.dumps(event).encode()


def sign(body: bytes, api_key: str, api_secret: str) -> str:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = AccessToken(api_key, api_secret).with_sha256(digest).to_jwt()
    return f"Bearer {token}"
