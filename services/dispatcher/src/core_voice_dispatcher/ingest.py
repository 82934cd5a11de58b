"""The webhook endpoint: verify, route, store durably on JetStream, then answer.

The answer is sent only after JetStream acknowledged the event, so a 200 means the job
cannot be lost. Bad input is a 4xx; a bus outage is a 503 (LiveKit retries).
"""

import logging

from aiohttp import web
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from core_voice_contracts.bus import publish
from core_voice_dispatcher.errors import WebhookRejectedError
from core_voice_dispatcher.routing import route_room_started
from core_voice_dispatcher.webhook import WebhookVerifier

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook/livekit"

_verifier_key = web.AppKey("verifier", WebhookVerifier)
_js_key = web.AppKey("js", JetStreamContext)


def _error(status: int, code: str) -> web.Response:
    return web.json_response({"error": code}, status=status)


async def handle_webhook(request: web.Request) -> web.Response:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "body_too_large")
    try:
        event = request.app[_verifier_key].verify(body, request.headers.get("Authorization"))
    except WebhookRejectedError as exc:
        log.warning("webhook rejected", extra={"code": exc.code, "status": exc.status})
        return _error(exc.status, exc.code)
    if event.event != "room_started":
        return web.json_response({"status": "ignored", "event": event.event})
    routed = route_room_started(event)
    try:
        await publish(request.app[_js_key], routed.subject, routed.message, msg_id=routed.msg_id)
    except (NatsError, TimeoutError):
        log.warning("webhook not stored: bus unavailable", extra={"job_id": routed.message.job_id})
        return _error(503, "bus_unavailable")
    log.info(
        "webhook stored",
        extra={"job_id": routed.message.job_id, "type": type(routed.message).__name__},
    )
    return web.json_response({"status": "accepted", "job_id": routed.message.job_id})


async def handle_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(
    verifier: WebhookVerifier, js: JetStreamContext, max_body_bytes: int
) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes)
    app[_verifier_key] = verifier
    app[_js_key] = js
    app.router.add_post(WEBHOOK_PATH, handle_webhook)
    app.router.add_get("/healthz", handle_health)
    return app
