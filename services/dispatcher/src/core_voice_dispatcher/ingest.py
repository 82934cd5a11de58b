"""The webhook endpoint: verify, plan, store durably on JetStream, then answer.

The answer is sent only after JetStream acknowledged the event, so a 200 means the job
cannot be lost. Bad input is a 4xx with a fixed code; only a bus outage is a 5xx (503,
which LiveKit retries). A replayed or re-sent webhook answers 200 ``duplicate``: its job
is already stored and nothing happens twice.
"""

import logging
from collections import Counter
from collections.abc import Callable

from aiohttp import web
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from core_voice_contracts.bus import publish
from core_voice_contracts.events import JobRequested
from core_voice_dispatcher import intake
from core_voice_dispatcher.errors import WebhookRejectedError
from core_voice_dispatcher.trace import TRACEPARENT, trace_headers
from core_voice_dispatcher.webhook import WebhookVerifier

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook/livekit"
HEALTH_PATH = "/healthz"


class Ingest:
    """The endpoint's state: what it verifies with, where it stores, what it has counted."""

    def __init__(
        self,
        verifier: WebhookVerifier,
        js: JetStreamContext,
        *,
        on_stored: Callable[[JobRequested], None] | None = None,
    ) -> None:
        self.verifier = verifier
        self.js = js
        self.on_stored = on_stored
        """Told of each newly stored job (the local dispatcher prefetches its look-ups)."""
        self.counts: Counter[str] = Counter()

    async def handle_webhook(self, request: web.Request) -> web.Response:
        try:
            digest = self.verifier.check_token(request.headers.get("Authorization"))
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise WebhookRejectedError(413, "body_too_large") from None
            event = self.verifier.check_body(body, digest)
            action = intake.plan(event)
        except WebhookRejectedError as exc:
            self.counts[f"rejected_{exc.code}"] += 1
            log.warning("webhook rejected", extra={"code": exc.code, "status": exc.status})
            return _answer({"error": exc.code}, exc.status)

        if event.num_dropped:
            # LiveKit's webhook queue overflowed: those events are gone; make it visible.
            self.counts["livekit_dropped"] += event.num_dropped
            log.warning("livekit dropped webhooks", extra={"dropped": event.num_dropped})

        if isinstance(action, intake.Skip):
            self.counts[f"skipped_{action.reason}"] += 1
            if action.reason in intake.NOTED_EVENTS:
                log.info(
                    "webhook noted",
                    extra={
                        "event": event.event,
                        "room_sid": event.room.sid,
                        "webhook_id": event.id,
                    },
                )
                return _answer({"status": "noted", "event": event.event})
            return _answer({"status": "ignored", "event": event.event, "reason": action.reason})

        job_id = action.message.job_id
        try:
            ack = await publish(
                self.js,
                action.subject,
                action.message,
                msg_id=action.msg_id,
                headers=trace_headers({TRACEPARENT: request.headers.get(TRACEPARENT, "")}),
            )
        except (NatsError, TimeoutError) as exc:
            self.counts["bus_unavailable"] += 1
            log.warning(
                "webhook not stored: bus unavailable",
                extra={"job_id": job_id, "error": type(exc).__name__},
            )
            return _answer({"error": "bus_unavailable"}, 503)
        if ack.duplicate:
            self.counts["duplicate"] += 1
            log.info(
                "webhook duplicate dropped",
                extra={"job_id": job_id, "webhook_id": event.id, "event": event.event},
            )
            return _answer({"status": "duplicate", "job_id": job_id})
        self.counts["stored"] += 1
        if self.on_stored is not None and isinstance(action.message, JobRequested):
            self.on_stored(action.message)
        log.info(
            "webhook stored",
            extra={
                "job_id": job_id,
                "webhook_id": event.id,
                "event": event.event,
                "type": type(action.message).__name__,
                "seq": ack.seq,
            },
        )
        return _answer({"status": "accepted", "job_id": job_id})


def _answer(body: dict[str, str], status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def make_app(
    ingest: Ingest | None,
    *,
    max_body_bytes: int,
    health: Callable[[], dict[str, str]],
    details: Callable[[], dict[str, object]] | None = None,
) -> web.Application:
    """The HTTP app: the webhook endpoint (unless ``ingest`` is None) and ``/healthz``
    (its checks, the webhook counts and any ``details``)."""
    app = web.Application(client_max_size=max_body_bytes)
    if ingest is not None:
        app.router.add_post(WEBHOOK_PATH, ingest.handle_webhook)

    async def handle_health(request: web.Request) -> web.Response:
        checks = health()
        ok = all(v == "ok" for v in checks.values())
        body: dict[str, object] = {"status": "ok" if ok else "degraded", "checks": checks}
        if ingest is not None:
            body["webhooks"] = dict(ingest.counts)
        if details is not None:
            body |= details()
        return web.json_response(body, status=200 if ok else 503)

    app.router.add_get(HEALTH_PATH, handle_health)
    return app
