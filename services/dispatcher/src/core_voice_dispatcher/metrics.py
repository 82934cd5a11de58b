"""The dispatcher's own Prometheus metrics, served at ``GET /metrics`` on its webhook port.

Names and labels are the dashboard contract (docs/metrics.md). Label values are fixed
codes and LiveKit's own event names (anything else is ``other``), never ids: a signed
webhook may name any event, and a room id must never become a series. Each dispatcher
has its own `CollectorRegistry`, so tests can run several in one process.
"""

import asyncio
import logging
from typing import Final

from aiohttp import web
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)

METRICS_PATH: Final = "/metrics"
UNKNOWN_EVENT: Final = "unknown"
"""The event label of a webhook refused before its body was verified and read."""
OTHER_EVENT: Final = "other"
LIVEKIT_EVENTS: Final = frozenset(
    {
        "room_started",
        "room_finished",
        "participant_joined",
        "participant_left",
        "participant_connection_aborted",
        "track_published",
        "track_unpublished",
        "egress_started",
        "egress_updated",
        "egress_ended",
        "ingress_started",
        "ingress_ended",
    }
)
"""LiveKit's webhook event names (livekit/protocol webhook.go)."""

_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ErrorType:
    """`corevoice_dispatcher_errors_total` ``type`` values (a fixed set)."""

    BUS_UNAVAILABLE: Final = "bus_unavailable"
    """A webhook or a job outcome could not be stored on JetStream, or a redelivered job's
    acceptance could not be looked up in it (retried)."""
    LIVEKIT: Final = "livekit"
    """A LiveKit API call failed (the job is retried)."""
    CONFIG_SYNC: Final = "config_sync"
    """config_sync could not route a job (unreachable or failing: retried)."""
    POISON: Final = "poison"
    """A bus message no delivery can settle (terminated or skipped)."""
    CONSUMER_INFO: Final = "consumer_info"
    """The durable consumer's backlog could not be read (the gauge keeps its value)."""


class DispatcherMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.webhooks = Counter(
            "corevoice_dispatcher_webhooks",
            "Webhooks by LiveKit event and outcome (accepted, duplicate, noted, ignored, "
            "bus_unavailable, or the rejection code).",
            ["event", "outcome"],
            registry=r,
        )
        self.webhook_seconds = Histogram(
            "corevoice_dispatcher_webhook_seconds",
            "Webhook receipt to its job stored on JetStream (accepted webhooks).",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.dispatch_seconds = Histogram(
            "corevoice_dispatcher_dispatch_seconds",
            "LiveKit CreateDispatch latency by outcome (ok, error).",
            ["outcome"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.jobs = Counter(
            "corevoice_dispatcher_jobs",
            "Job outcomes published (dispatched, expired, rejected) and retries.",
            ["outcome"],
            registry=r,
        )
        self.consumer_pending = Gauge(
            "corevoice_dispatcher_consumer_pending",
            "Jobs the durable consumer has not settled: not yet delivered plus delivered "
            "and unacknowledged (including jobs waiting for worker capacity).",
            ["consumer"],
            registry=r,
        )
        self.capacity_waiting = Gauge(
            "corevoice_dispatcher_capacity_waiting",
            "Dispatched jobs being watched until a worker takes them.",
            registry=r,
        )
        self.errors = Counter(
            "corevoice_dispatcher_errors",
            "Errors by type (a fixed set of codes: docs/metrics.md).",
            ["type"],
            registry=r,
        )

    def webhook(self, event: str, outcome: str) -> None:
        label = event if event in LIVEKIT_EVENTS or event == UNKNOWN_EVENT else OTHER_EVENT
        self.webhooks.labels(label, outcome).inc()

    def error(self, type_: str) -> None:
        self.errors.labels(type_).inc()

    async def handle(self, _: web.Request) -> web.Response:
        """``GET /metrics``: Prometheus text, no auth (bind the port accordingly)."""
        return web.Response(
            body=generate_latest(self.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
        )

    async def follow_consumer(
        self, js: JetStreamContext, stream: str, consumer: str, interval_s: float
    ) -> None:
        """Read the durable consumer's backlog every ``interval_s`` until cancelled: the
        consumer lag the dashboards and the consumer-lag alert watch."""
        gauge = self.consumer_pending.labels(consumer)
        while True:
            try:
                info = await js.consumer_info(stream, consumer)
            except (NatsError, TimeoutError):
                self.error(ErrorType.CONSUMER_INFO)
            else:
                gauge.set((info.num_pending or 0) + (info.num_ack_pending or 0))
            await asyncio.sleep(interval_s)


def outcome_error_type(error: str) -> str:
    """The error type of a retried job's error word (``livekit_*``, the stream look-up of
    `served`, or config_sync's)."""
    if error.startswith("livekit_"):
        return ErrorType.LIVEKIT
    if error.startswith("accepted_"):  # the served look-up: unreadable, or not there yet
        return ErrorType.BUS_UNAVAILABLE
    return ErrorType.CONFIG_SYNC
