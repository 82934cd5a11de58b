"""The webhook endpoint (HTTP): verify (`webhook_verifier`), plan (`webhook_plan`), store
durably on JetStream, then answer.

The answer is sent only after JetStream acknowledged the event, so a 2xx means the job
cannot be lost. Bad input is a 4xx with a fixed code; only a bus outage is a 5xx (503,
which LiveKit retries). A replayed or re-sent webhook answers 204 ``duplicate``: its job
is already stored and nothing happens twice.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from aiohttp import web
from livekit.protocol.webhook import WebhookEvent
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from core_voice_contracts.bus import publish
from core_voice_contracts.events import JobRequested
from core_voice_contracts.ids import is_token
from core_voice_contracts.tracing import (
    ATTR_AGENT_ID,
    ATTR_EVENT,
    ATTR_JOB_ID,
    ATTR_OUTCOME,
    ATTR_ROOM,
    ATTR_SUBJECT,
    SpanKind,
    extract_headers,
    inject_headers,
    span,
    tracer,
)
from core_voice_contracts.webhooks import (
    EVENT_HEADER,
    JOB_ID_HEADER,
    OUTCOME_HEADER,
    REASON_HEADER,
)
from core_voice_dispatcher import webhook_plan
from core_voice_dispatcher.calls import WorkerLostReports
from core_voice_dispatcher.errors import WebhookRejectedError
from core_voice_dispatcher.metrics import UNKNOWN_EVENT, DispatcherMetrics, ErrorType
from core_voice_dispatcher.webhook_verifier import WebhookVerifier

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

WEBHOOK_PATH = "/webhook/livekit"
HEALTH_PATH = "/healthz"


class Prefetcher(Protocol):
    """Starts a job's look-ups while it is being stored, for its delivery to use.

    Nothing is dispatched from here: only the durable consumer does that, once the job is
    stored and delivered. A prefetch whose job was not stored (a duplicate, a bus
    failure) is dropped at once.
    """

    def prefetch(self, job: JobRequested) -> bool:
        """Start ``job``'s look-ups; False if none were started (e.g. already running)."""
        ...

    def drop(self, job_id: str) -> None: ...


class WebhookEndpoint:
    """The endpoint's state: what it verifies with, where it stores, what it has counted."""

    def __init__(
        self,
        verifier: WebhookVerifier,
        js: JetStreamContext,
        *,
        prefetcher: Prefetcher | None = None,
        calls: WorkerLostReports | None = None,
        metrics: DispatcherMetrics | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else DispatcherMetrics()
        self.verifier = verifier
        self.js = js
        self._prefetcher = prefetcher
        """The local dispatcher's prefetches, told of each job as it is stored (`Prefetcher`)."""
        self.calls = calls
        """Where a call's agent leaving the room is checked (`calls`)."""
        self.counts: Counter[str] = Counter()

    async def handle_webhook(self, request: web.Request) -> web.Response:
        """One ``webhook`` span (SERVER), continuing LiveKit's ``traceparent`` if it sent one."""
        with span(
            _tracer, "webhook", kind=SpanKind.SERVER, context=extract_headers(request.headers)
        ) as current:
            response = await self._handle_webhook(request)
            current.set_attribute(ATTR_OUTCOME, response.headers.get(OUTCOME_HEADER, "refused"))
            return response

    async def _handle_webhook(self, request: web.Request) -> web.Response:
        received = time.perf_counter()
        try:
            digest = self.verifier.check_token(request.headers.get("Authorization"))
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise WebhookRejectedError(413, "body_too_large") from None
            event = self.verifier.check_body(body, digest)
            action = webhook_plan.plan(event)
        except WebhookRejectedError as exc:
            self.counts[f"rejected_{exc.code}"] += 1
            self.metrics.webhook(UNKNOWN_EVENT, exc.code)
            log.warning("webhook rejected", extra={"code": exc.code, "status": exc.status})
            return _refused(exc.code, exc.status)

        if event.num_dropped:
            # LiveKit's webhook queue overflowed: those events are gone; make it visible.
            self.counts["livekit_dropped"] += event.num_dropped
            log.warning("livekit dropped webhooks", extra={"dropped": event.num_dropped})

        if isinstance(action, webhook_plan.CheckCall):
            self.counts["agent_left"] += 1
            self.metrics.webhook(event.event, "noted")
            if self.calls is not None:
                self.calls.check(action)
            return _noted(event, call_id=action.call_id)

        if isinstance(action, webhook_plan.Skip):
            self.counts[f"skipped_{action.reason}"] += 1
            noted = action.reason in webhook_plan.NOTED_EVENTS
            self.metrics.webhook(event.event, "noted" if noted else "ignored")
            if noted:
                return _noted(event)
            return _done("ignored", event=event.event, reason=action.reason)

        job_id = action.message.job_id
        store = asyncio.ensure_future(self._store(action, event.event))
        prefetched_by: Prefetcher | None = None
        if self._prefetcher is not None and isinstance(action.message, JobRequested):
            # One turn of the loop first: the publish queues its bytes and wakes the NATS
            # writer ahead of the look-ups' own work, so they never delay the store.
            await asyncio.sleep(0)
            if self._prefetcher.prefetch(action.message):
                prefetched_by = self._prefetcher
        try:
            ack = await store
        except (NatsError, TimeoutError) as exc:
            if prefetched_by is not None:
                prefetched_by.drop(job_id)
            self.counts["bus_unavailable"] += 1
            self.metrics.webhook(event.event, "bus_unavailable")
            self.metrics.error(ErrorType.BUS_UNAVAILABLE)
            log.warning(
                "webhook not stored: bus unavailable",
                extra={"job_id": job_id, "error": type(exc).__name__},
            )
            return _refused("bus_unavailable", 503)
        if ack.duplicate:
            if prefetched_by is not None:  # stored before: its own delivery decides it
                prefetched_by.drop(job_id)
            self.counts["duplicate"] += 1
            self.metrics.webhook(event.event, "duplicate")
            log.info(
                "webhook duplicate dropped",
                extra={"job_id": job_id, "webhook_id": event.id, "event": event.event},
            )
            return _done("duplicate", job_id=job_id)
        self.counts["stored"] += 1
        self.metrics.webhook(event.event, "accepted")
        self.metrics.webhook_seconds.observe(time.perf_counter() - received)
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
        return _done("accepted", job_id=job_id)

    async def _store(self, action: webhook_plan.Store, event_name: str) -> PubAck:
        """Publish the job under a ``publish <Type>`` span (PRODUCER), its context in the
        message's headers: the dispatch and every later event continue this trace."""
        message = action.message
        with span(
            _tracer,
            f"publish {type(message).__name__}",
            kind=SpanKind.PRODUCER,
            attributes={
                ATTR_SUBJECT: action.subject,
                ATTR_AGENT_ID: message.agent_id,
                ATTR_JOB_ID: message.job_id,
                ATTR_ROOM: message.room_name,
                ATTR_EVENT: event_name,
            },
        ):
            return await publish(
                self.js, action.subject, message, msg_id=action.msg_id, headers=inject_headers()
            )


def _done(outcome: str, *, job_id: str = "", event: str = "", reason: str = "") -> web.Response:
    """204 with the outcome in headers, no body (see `core_voice_contracts.webhooks`:
    a body cost every webhook a new connection; p99 webhook arrival 8.5 -> 4.1 ms).

    A value that is not a plain token (a signed webhook's event name may hold anything,
    CR and LF included) is left out: aiohttp refuses such a header only once the handler
    has returned, by dropping the connection without an answer."""
    headers = {
        OUTCOME_HEADER: outcome,
        JOB_ID_HEADER: job_id,
        EVENT_HEADER: event,
        REASON_HEADER: reason,
    }
    return web.Response(status=204, headers={k: v for k, v in headers.items() if is_token(v)})


def _noted(event: WebhookEvent, **fields: str) -> web.Response:
    """Logged and answered 204 ``noted``: an event that stores no job."""
    extra = {"event": event.event, "room_sid": event.room.sid, "webhook_id": event.id}
    log.info("webhook noted", extra=extra | fields)
    return _done("noted", event=event.event)


def _refused(code: str, status: int) -> web.Response:
    return web.json_response({"error": code}, status=status)


def make_app(
    endpoint: WebhookEndpoint | None,
    *,
    max_body_bytes: int,
    health: Callable[[], dict[str, str]],
    details: Callable[[], dict[str, object]] | None = None,
) -> web.Application:
    """The HTTP app: the webhook endpoint (unless ``endpoint`` is None) and ``/healthz``
    (its checks, the webhook counts and any ``details``)."""
    app = web.Application(client_max_size=max_body_bytes)
    if endpoint is not None:
        app.router.add_post(WEBHOOK_PATH, endpoint.handle_webhook)

    async def handle_health(request: web.Request) -> web.Response:
        checks = health()
        ok = all(v == "ok" for v in checks.values())
        body: dict[str, object] = {"status": "ok" if ok else "degraded", "checks": checks}
        if endpoint is not None:
            body["webhooks"] = dict(endpoint.counts)
        if details is not None:
            body |= details()
        return web.json_response(body, status=200 if ok else 503)

    app.router.add_get(HEALTH_PATH, handle_health)
    return app
