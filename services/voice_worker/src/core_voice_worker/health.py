"""The pool's HTTP endpoints: liveness, readiness, status, metrics, and a mirror probe.

- ``/healthz``: the process answers and none of the pool's tasks died (Kubernetes
  liveness); a dead one is named in ``dead_tasks`` (absent while all is well).
- ``/readyz``: 200 only while the pool can take calls: registered with LiveKit, NATS
  connected, the config feed live, and not draining (readiness turns false on SIGTERM).
- ``/status``: JSON for operators and tests: capacity, active and peak calls, the
  mirror, the event queue.
- ``/metrics``: Prometheus text: gauges read from the pool's state at scrape time, plus
  the histograms and error counts of `metrics.PoolMetrics`.
- ``/mirror/wait?agent_id=A&version=V[&campaign_id=C][&timeout=S]``: answers once the
  mirror holds version V or newer of the agent, with the wall-clock time it arrived
  (how the edit-to-live benchmark times every pool process without polling them).
"""

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from core_voice_worker.pool import PoolRuntime

MAX_WAIT_S = 30.0


class PoolCollector(Collector):
    """Prometheus families computed from the runtime on each scrape."""

    def __init__(self, runtime: "PoolRuntime") -> None:
        self._runtime = runtime

    def collect(self) -> "Iterator[Metric]":
        rt = self._runtime
        labels = ["worker_id"]
        worker = [rt.settings.worker_id]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric(worker, value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=labels)
            family.add_metric(worker, value)
            return family

        stats = rt.mirror.stats
        yield gauge("corevoice_worker_capacity", "Calls this worker holds at most.", rt.capacity)
        yield gauge("corevoice_worker_active_calls", "Calls running now.", rt.active_calls())
        yield gauge(
            "corevoice_worker_utilisation",
            "Active calls over capacity (0..1): the metric to autoscale the pool on.",
            rt.utilisation(),
        )
        yield gauge("corevoice_worker_draining", "1 while draining after SIGTERM.", rt.draining())
        yield gauge("corevoice_worker_configs", "Configs held in the mirror.", len(rt.mirror))
        yield gauge(
            "corevoice_worker_config_stale",
            "Configs held that config_sync could not confirm (served as last known good).",
            rt.mirror.stale_count(),
        )
        yield counter(
            "corevoice_worker_config_lookups_hit",
            "Call starts answered from the mirror.",
            stats.hits,
        )
        yield counter(
            "corevoice_worker_config_lookups_miss",
            "Call starts that had to wait for config_sync.",
            stats.misses,
        )
        yield counter(
            "corevoice_worker_config_refused",
            "Call starts refused a config (unknown, disabled, deleted, unavailable).",
            stats.refused,
        )
        yield counter(
            "corevoice_worker_config_stale_served",
            "Call starts on a stale (last known good) config.",
            stats.stale_served,
        )
        yield counter(
            "corevoice_worker_config_fetch_errors",
            "config_sync requests that failed (down, frozen, database unavailable).",
            stats.fetch_errors,
        )
        yield counter(
            "corevoice_worker_calls_lost",
            "Calls whose job process ended without reporting their end.",
            rt.status()["lost_calls"],
        )
        yield gauge(
            "corevoice_worker_call_events_queued",
            "Call events waiting for NATS.",
            rt.status()["events"]["queued"],
        )
        poison = CounterMetricFamily(
            "corevoice_worker_poison_messages",
            "Feed messages skipped as not understood (undecodable, or no id where one goes).",
            labels=["worker_id", "feed", "reason"],
        )
        for (feed, reason), count in sorted(rt.bad_messages().items()):
            poison.add_metric([rt.settings.worker_id, feed, reason], count)
        yield poison
        errors = CounterMetricFamily(
            "corevoice_worker_errors",
            "Errors by type (a fixed set of codes: docs/metrics.md).",
            labels=["worker_id", "type"],
        )
        for type_, count in rt.error_counts().items():
            errors.add_metric([rt.settings.worker_id, type_], count)
        yield errors


class HealthServer:
    def __init__(self, runtime: "PoolRuntime", host: str, port: int) -> None:
        self._runtime = runtime
        self._host = host
        self._port = port
        self._registry: CollectorRegistry = runtime.metrics.registry
        self._registry.register(PoolCollector(runtime))
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.get("/status", self._status),
                web.get("/metrics", self._metrics),
                web.get("/mirror/wait", self._mirror_wait),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # aiohttp keeps the bound socket here; it is the real port
        if server is not None and server.sockets:  # type: ignore[attr-defined]
            self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        dead = self._runtime.tasks.dead
        if not dead:
            return web.json_response({"ok": True})
        return web.json_response({"ok": False, "dead_tasks": msgspec.to_builtins(dead)}, status=503)

    async def _readyz(self, _: web.Request) -> web.Response:
        problems = self._runtime.not_ready()
        return web.json_response(
            {"ready": not problems, "problems": problems}, status=503 if problems else 200
        )

    async def _status(self, _: web.Request) -> web.Response:
        return web.json_response(self._runtime.status())

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), content_type="text/plain", charset="utf-8"
        )

    async def _mirror_wait(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            agent_id = query["agent_id"]
            version = int(query["version"])
            timeout = min(float(query.get("timeout", "10")), MAX_WAIT_S)
        except (KeyError, ValueError):
            return web.json_response({"error": "agent_id and version are required"}, status=400)
        campaign_id = query.get("campaign_id") or None
        deadline = time.monotonic() + timeout
        while True:
            entry = self._runtime.mirror.peek(agent_id, campaign_id)
            if entry is not None and entry.config.version >= version:
                body: dict[str, Any] = {"version": entry.config.version, "held_at": entry.held_at}
                return web.json_response(body)
            left = deadline - time.monotonic()
            if left <= 0:
                return web.json_response(
                    {"error": "not held", "version": entry.config.version if entry else None},
                    status=408,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runtime.mirror.changed(), left)
