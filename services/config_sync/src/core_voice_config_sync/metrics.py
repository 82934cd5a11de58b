"""config_sync's own Prometheus metrics, served at ``GET /metrics`` on its HTTP port.

Names and labels are the dashboard contract (docs/metrics.md). Every label value is a
route template or a fixed code, never an id, a path or free text, so the series stay
bounded however many agents exist or whatever paths a client tries. Each running app
has its own `CollectorRegistry`, so several apps can live in one process (tests).
"""

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

METRICS_PATH: Final = "/metrics"
UNMATCHED: Final = "unmatched"
"""The route label of a request no route matched (404, 405): never the raw path."""

_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_PUBLISH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ErrorType:
    """`corevoice_config_sync_errors_total` ``type`` values (a fixed set)."""

    DATABASE_UNAVAILABLE: Final = "database_unavailable"
    KEYS_UNAVAILABLE: Final = "keys_unavailable"
    VERSION_UNAVAILABLE: Final = "version_unavailable"
    DECODE: Final = "decode"
    """A bus request or change event that is not what it should be."""
    PUBLISH_FAILED: Final = "publish_failed"
    """The outbox relay could not get an event into JetStream (retried)."""
    OUTBOX_UNDECODABLE: Final = "outbox_undecodable"
    RELAY_FAILED: Final = "relay_failed"
    INTERNAL: Final = "internal"
    """An unexpected exception (an HTTP 500, a bus request answered ``internal``)."""


class ConfigSyncMetrics:
    """The metric objects, registered in ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.http_requests = Counter(
            "corevoice_config_sync_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "corevoice_config_sync_http_request_seconds",
            "HTTP request latency (first byte in to last byte out) by route template.",
            ["route", "method"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.config_get_seconds = Histogram(
            "corevoice_config_sync_config_get_seconds",
            "Runtime-config reads (voice.config.get and the HTTP endpoint) by outcome.",
            ["outcome"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.cache_requests = Counter(
            "corevoice_config_sync_cache_requests",
            "Runtime-config cache look-ups: hit (answered from memory) or miss (read).",
            ["result"],
            registry=r,
        )
        self.errors = Counter(
            "corevoice_config_sync_errors",
            "Errors by type (a fixed set of codes: docs/metrics.md).",
            ["type"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "corevoice_config_sync_outbox_pending",
            "Outbox events committed but not yet in JetStream, as of the relay's last pass.",
            registry=r,
        )
        self.outbox_publish_seconds = Histogram(
            "corevoice_config_sync_outbox_publish_seconds",
            "Commit (the event's time) to JetStream's acknowledgement.",
            buckets=_PUBLISH_BUCKETS,
            registry=r,
        )
        self.routing_resolve_seconds = Histogram(
            "corevoice_config_sync_routing_resolve_seconds",
            "voice.routing.resolve answers by outcome (resolved, rejected, error).",
            ["outcome"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        for result in ("hit", "miss"):
            self.cache_requests.labels(result)

    def error(self, type_: str) -> None:
        self.errors.labels(type_).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class MetricsMiddleware:
    """Outermost ASGI layer: serves ``GET /metrics`` (no auth, before any routing) and
    counts every other request by the route template the app matched.

    The app (Litestar) writes the matched template into the shared ``scope`` as
    ``path_template``; a request it could not route has none and is ``unmatched``.
    """

    def __init__(self, app: ASGIApp, metrics: ConfigSyncMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET")).upper()
        if scope.get("path") == METRICS_PATH and method in ("GET", "HEAD"):
            await self._serve_metrics(send, head=method == "HEAD")
            return
        started = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            template = scope.get("path_template")
            route = template if isinstance(template, str) and template else UNMATCHED
            label = method if method in _METHODS else "OTHER"
            self.metrics.http_requests.labels(route, label, str(status)).inc()
            self.metrics.http_seconds.labels(route, label).observe(time.perf_counter() - started)

    async def _serve_metrics(self, send: Send, *, head: bool) -> None:
        body = self.metrics.exposition()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE_LATEST.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if head else body})


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
