"""config_sync's request/reply endpoints on NATS: one micro service (``config-sync``),
visible to ``nats micro ls/info/stats``:

- endpoint ``get`` on ``voice.config.get``: runtime configs for the voice workers;
- endpoint ``resolve`` on ``voice.routing.resolve``: room routing for the dispatcher.

Replicas share the default micro queue group, so each request is answered once. Every
request gets a typed reply: a malformed one is answered with a non-retryable
``bad_request`` error, an internal failure with a retryable error; an endpoint never
raises. What keeps the answers fresh is `cache_evictor`.
"""

import logging
import time
from collections import Counter

import msgspec
from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, Service, ServiceConfig

from core_voice_config_sync import __version__
from core_voice_config_sync.agents import AgentService
from core_voice_config_sync.metrics import ConfigSyncMetrics, ErrorType
from core_voice_config_sync.routing import RoutingService
from core_voice_contracts import codec, subjects
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import ConfigFound, ConfigGetError, ConfigGetReply, ConfigNotFound
from core_voice_contracts.routing import RouteError, RouteReply
from core_voice_contracts.tracing import ATTR_OUTCOME, SpanKind, extract_headers, span, tracer

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

SERVICE_NAME = "config-sync"
ENDPOINT_NAME = "get"
RESOLVE_ENDPOINT_NAME = "resolve"
MAX_FIELD_CHARS = 1024
"""Longest string a request may carry in any field (ids, room keys, numbers): a longer
one is ``bad_request``, so a hostile request can neither put keys of any size in the
caches nor be echoed into a reply over the bus's payload limit."""


_GET_OUTCOMES: dict[type, str] = {ConfigFound: "found", ConfigNotFound: "not_found"}
_COUNTED_GET_ERRORS = frozenset(
    {ErrorType.DATABASE_UNAVAILABLE, ErrorType.KEYS_UNAVAILABLE, ErrorType.VERSION_UNAVAILABLE}
)
"""`ConfigGetError` codes that are config_sync's own failures (``bad_request`` is the
caller's, ``internal`` is counted where it is caught)."""


def _oversized(request: msgspec.Struct) -> bool:
    return any(
        isinstance(value, str) and len(value) > MAX_FIELD_CHARS
        for value in msgspec.structs.astuple(request)
    )


class BusEndpoints:
    """Answers ``voice.config.get`` (from the agents) and ``voice.routing.resolve``
    (from routing)."""

    def __init__(
        self,
        nc: Client,
        agents: AgentService,
        routing: RoutingService,
        refused: Counter[str],
        metrics: ConfigSyncMetrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else ConfigSyncMetrics()
        self._nc = nc
        self._agents = agents
        self._routing = routing
        self._service: Service | None = None
        self.refused = refused
        """Requests answered ``bad_request``, by ``<endpoint>/<reason>`` (shared with
        `CacheEvictor`, reported by /healthz)."""

    async def start(self) -> None:
        self._service = await add_service(
            self._nc,
            ServiceConfig(
                name=SERVICE_NAME,
                version=__version__,
                description="Core Voice agent runtime configs",
            ),
        )
        await self._service.add_endpoint(
            EndpointConfig(name=ENDPOINT_NAME, subject=subjects.CONFIG_GET, handler=self._handle)
        )
        await self._service.add_endpoint(
            EndpointConfig(
                name=RESOLVE_ENDPOINT_NAME,
                subject=subjects.ROUTING_RESOLVE,
                handler=self._handle_resolve,
            )
        )

    async def stop(self) -> None:
        if self._service is not None:
            await self._service.stop()
            self._service = None

    async def _handle(self, request: Request) -> None:
        with span(
            _tracer, "config.get", kind=SpanKind.SERVER, context=extract_headers(request.headers)
        ) as current:
            reply = await self.answer(request.data)
            current.set_attribute(ATTR_OUTCOME, type(reply).__name__)
            await request.respond(codec.encode(reply))

    async def answer(self, data: bytes) -> ConfigGetReply:
        started = time.perf_counter()
        reply = await self._answer(data)
        outcome = _GET_OUTCOMES.get(type(reply), "error")
        self._metrics.config_get_seconds.labels(outcome).observe(time.perf_counter() - started)
        if isinstance(reply, ConfigGetError) and reply.error in _COUNTED_GET_ERRORS:
            self._metrics.error(reply.error)
        return reply

    async def _answer(self, data: bytes) -> ConfigGetReply:
        try:
            query = codec.decode_config_request(data)
        except DecodeError:
            self.refused["get/undecodable"] += 1
            self._metrics.error(ErrorType.DECODE)
            return ConfigGetError(error="bad_request", retryable=False)
        if _oversized(query):
            self.refused["get/oversized"] += 1
            self._metrics.error(ErrorType.DECODE)
            return ConfigGetError(error="bad_request", retryable=False)
        try:
            return await self._agents.resolve(query)
        except Exception:
            log.exception("config get failed", extra={"agent_id": query.agent_id})
            self._metrics.error(ErrorType.INTERNAL)
            return ConfigGetError(error="internal", retryable=True)

    async def _handle_resolve(self, request: Request) -> None:
        with span(
            _tracer,
            "routing.resolve",
            kind=SpanKind.SERVER,
            context=extract_headers(request.headers),
        ) as current:
            reply = await self.route(request.data)
            current.set_attribute(ATTR_OUTCOME, type(reply).__name__)
            await request.respond(codec.encode(reply))

    async def route(self, data: bytes) -> RouteReply:
        try:
            query = codec.decode_route_request(data)
        except DecodeError:
            self.refused["resolve/undecodable"] += 1
            self._metrics.error(ErrorType.DECODE)
            return RouteError(error="bad_request", retryable=False)
        if _oversized(query):
            self.refused["resolve/oversized"] += 1
            self._metrics.error(ErrorType.DECODE)
            return RouteError(error="bad_request", retryable=False)
        try:
            return await self._routing.resolve(query)
        except Exception:
            log.exception("route resolve failed", extra={"room_key": query.room_key[:200]})
            self._metrics.error(ErrorType.INTERNAL)
            return RouteError(error="internal", retryable=True)
