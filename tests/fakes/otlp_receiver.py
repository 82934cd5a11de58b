"""A real OTLP/HTTP trace receiver on loopback: what a collector, Jaeger or Tempo would get.

Services export to it with the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT=
receiver.url``); it decodes each ``POST /v1/traces`` body as the protobuf
``ExportTraceServiceRequest`` (gzip or not) and keeps the spans and the raw bytes, so a
test can check trace ids and parents and search everything exported for a secret.

    async with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        ...
        spans = await receiver.wait_for(lambda got: any(s.name == "call" for s in got))
"""

import asyncio
import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from core_voice_cli.procs import free_port

HOST = "127.0.0.1"
TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _value(value: AnyValue) -> object:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    scope: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    """``""`` for a root span."""
    start_ns: int
    end_ns: int
    attributes: dict[str, object] = field(default_factory=dict)
    resource: dict[str, object] = field(default_factory=dict)
    status_code: int = 0
    status_message: str = ""


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.bodies: list[bytes] = []
        """Every request body as sent (decompressed): for searching exported bytes."""
        self.requests = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL, for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``/v1/traces`` is appended)."""
        return f"http://{HOST}:{self.port}"

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post(TRACES_PATH, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, HOST, self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        if not request.content_type.startswith(PROTOBUF):
            return web.Response(status=415)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        received = []
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            service = str(resource.get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=service,
                            scope=scope_spans.scope.name,
                            name=s.name,
                            kind=KINDS.get(s.kind, str(s.kind)),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            resource=resource,
                            status_code=s.status.code,
                            status_message=s.status.message,
                        )
                    )
        async with self._changed:
            self.requests += 1
            self.bodies.append(body)
            self.spans.extend(received)
            self._changed.notify_all()
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF
        )

    async def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 20.0
    ) -> list[ReceivedSpan]:
        """The spans received, once ``done(spans)`` holds (TimeoutError after ``timeout``)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: done(self.spans))
            return list(self.spans)

    def exported_bytes(self) -> bytes:
        return b"".join(self.bodies)
