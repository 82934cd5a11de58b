"""OpenTelemetry for every service: one trace per call, carried across NATS and LiveKit.

W3C trace context travels in the ``traceparent`` NATS header of every event and, for the
hop through LiveKit, in `JobRequested.traceparent` of the dispatch metadata. So one trace
runs webhook -> ``JobRequested`` -> dispatch -> the worker's call (a span per turn) ->
``CallEnded`` -> telemetry (docs/tracing.md).

Configured by the standard ``OTEL_*`` variables. An SDK tracer provider is always
installed, so trace ids exist (call timelines show them) even with export off; an OTLP
exporter is attached only when an endpoint or exporter is named. The embedded stack names
none: it exports nothing and says nothing about exporting.

Spans carry ids only (`ATTR_*`): never transcripts, prompts, keys or tokens. Exceptions
mark a span failed with their type name alone (`span`): an error's text may quote a key.

    configure_tracing("dispatcher")
    with span(tracer(__name__), "publish JobRequested", kind=SpanKind.PRODUCER):
        await publish(js, subject, event, headers=inject_headers())
"""

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import PROCESS_PID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# The standard variables read here (the SDK and the OTLP exporter read the rest:
# OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*, OTEL_EXPORTER_OTLP_(TRACES_)HEADERS/TIMEOUT/...).
ENV_SDK_DISABLED = "OTEL_SDK_DISABLED"
ENV_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
DEFAULT_ENDPOINT = "http://localhost:4318"

# Span attributes: ids only.
ATTR_AGENT_ID = "corevoice.agent_id"
ATTR_TENANT_ID = "corevoice.tenant_id"
ATTR_CAMPAIGN_ID = "corevoice.campaign_id"
ATTR_CALL_ID = "corevoice.call_id"
ATTR_JOB_ID = "corevoice.job_id"
ATTR_ROOM = "corevoice.room"
ATTR_WORKER_ID = "corevoice.worker_id"
ATTR_DISPATCH_ID = "corevoice.dispatch_id"
ATTR_CONFIG_VERSION = "corevoice.config_version"
ATTR_OUTCOME = "corevoice.outcome"
ATTR_EVENT = "corevoice.event"
"""A webhook's event name, or a bus event's type name."""
ATTR_SUBJECT = "messaging.destination.name"
ATTR_MESSAGING_SYSTEM = "messaging.system"

_propagator = TraceContextTextMapPropagator()


@dataclass(frozen=True)
class TracingSetup:
    """What `configure_tracing` installed (for logs and tests)."""

    provider: TracerProvider
    exporter: str
    """``none``, ``otlp`` or ``console``."""
    endpoint: str | None = None
    """The OTLP/HTTP traces URL, when exporting with OTLP."""


_installed: TracingSetup | None = None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def traces_endpoint(env: Mapping[str, str]) -> str:
    """The OTLP/HTTP traces URL the standard variables name (the signal one wins)."""
    if url := env.get(ENV_TRACES_ENDPOINT, "").strip():
        return url
    base = env.get(ENV_ENDPOINT, "").strip() or DEFAULT_ENDPOINT
    return base.rstrip("/") + "/v1/traces"


def exporter_choice(env: Mapping[str, str]) -> str:
    """``otlp`` when an endpoint or ``OTEL_TRACES_EXPORTER=otlp`` is set, ``console`` when
    asked for, else ``none``: unlike the SDK's own default (otlp to localhost), nothing
    configured means nothing exported, so a stack without a collector stays quiet."""
    named = [e.strip().lower() for e in env.get(ENV_TRACES_EXPORTER, "").split(",") if e.strip()]
    if "none" in named:
        return "none"
    if "console" in named:
        return "console"
    if "otlp" in named or env.get(ENV_ENDPOINT, "").strip() or env.get(ENV_TRACES_ENDPOINT, ""):
        return "otlp"
    return "none"


def build_tracing(
    service_name: str,
    env: Mapping[str, str] | None = None,
    *,
    exporter: SpanExporter | None = None,
) -> TracingSetup:
    """A tracer provider for ``service_name`` (``OTEL_SERVICE_NAME`` overrides it) with the
    exporter the variables ask for, or ``exporter`` (tests). Not installed globally."""
    env = os.environ if env is None else env
    name = env.get(ENV_SERVICE_NAME, "").strip() or service_name
    # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES; the explicit name wins. The pid
    # tells a worker's pool from its job processes.
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: name, PROCESS_PID: os.getpid()})
    )
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return TracingSetup(provider, type(exporter).__name__)
    choice = exporter_choice(env)
    if choice == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        return TracingSetup(provider, choice)
    if choice == "none":
        return TracingSetup(provider, choice)
    protocol = env.get(ENV_TRACES_PROTOCOL) or env.get(ENV_PROTOCOL) or "http/protobuf"
    if protocol != "http/protobuf":
        log.warning(
            "otlp protocol not supported: exporting with http/protobuf",
            extra={"protocol": protocol},
        )
    # Imported only when exporting: it pulls in requests and protobuf.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    endpoint = traces_endpoint(env)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return TracingSetup(provider, choice, endpoint)


def configure_tracing(service_name: str, *, exporter: SpanExporter | None = None) -> TracingSetup:
    """Install this process's tracer provider, once (a second call returns the first).

    With ``OTEL_SDK_DISABLED=true`` the provider makes no spans at all, so no trace
    context is passed on either (call timelines then show no trace id)."""
    global _installed  # noqa: PLW0603
    if _installed is not None:
        return _installed
    setup = build_tracing(service_name, exporter=exporter)
    trace.set_tracer_provider(setup.provider)
    _installed = setup
    if setup.exporter != "none":
        log.info(
            "tracing exports spans",
            extra={"exporter": setup.exporter, "endpoint": setup.endpoint},
        )
    return setup


def flush(timeout_s: float = 5.0) -> bool:
    """Export what this process's spans are waiting on (a job process, before it ends)."""
    if _installed is None or _truthy(os.environ.get(ENV_SDK_DISABLED)):
        return True
    return _installed.provider.force_flush(int(timeout_s * 1000))


def tracer(name: str) -> Tracer:
    return trace.get_tracer(name)


# --- carrying the context ----------------------------------------------------------------


def inject_headers(
    headers: Mapping[str, str] | None = None, context: Context | None = None
) -> dict[str, str]:
    """``headers`` plus the W3C trace context of ``context`` (default: the current one)."""
    out = dict(headers or {})
    _propagator.inject(out, context=context)
    return out


def extract_headers(headers: Mapping[str, str] | None) -> Context:
    """The trace context a message's headers carry (an empty context if none)."""
    if not headers:
        return Context()
    carrier = {k.lower(): v for k, v in headers.items() if k.lower() in (TRACEPARENT, TRACESTATE)}
    return _propagator.extract(carrier, context=Context())


def current_traceparent(context: Context | None = None) -> str:
    """The ``traceparent`` of ``context`` (default: the current span), or ``""``."""
    return inject_headers(context=context).get(TRACEPARENT, "")


def context_from_traceparent(traceparent: str | None) -> Context:
    return extract_headers({TRACEPARENT: traceparent} if traceparent else None)


def trace_id_of(headers: Mapping[str, str] | None) -> str | None:
    """The 32-hex trace id a message's headers carry, if any (call timelines)."""
    ctx = trace.get_current_span(extract_headers(headers)).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def current_or(context: Context) -> Context | None:
    """None (the current span is the parent) if a span is current, else ``context``: for
    code that runs both inside a traced handler and from a background task."""
    return None if trace.get_current_span().get_span_context().is_valid else context


# --- making spans ---------------------------------------------------------------------


@contextmanager
def span(
    tracer_: Tracer,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    context: Context | None = None,
    attributes: Mapping[str, AttributeValue | None] | None = None,
) -> Iterator[Span]:
    """A current span under ``context`` (default: the current span). An exception marks
    it failed with its type name only, and is not recorded: its text may quote a secret."""
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None and v != ""}
    with tracer_.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def fail(current: Span, reason: str) -> None:
    """Mark ``current`` failed with a fixed reason code (never free text)."""
    current.set_status(Status(StatusCode.ERROR, reason))


__all__ = [
    "ATTR_AGENT_ID",
    "ATTR_CALL_ID",
    "ATTR_CAMPAIGN_ID",
    "ATTR_CONFIG_VERSION",
    "ATTR_DISPATCH_ID",
    "ATTR_EVENT",
    "ATTR_JOB_ID",
    "ATTR_MESSAGING_SYSTEM",
    "ATTR_OUTCOME",
    "ATTR_ROOM",
    "ATTR_SUBJECT",
    "ATTR_TENANT_ID",
    "ATTR_WORKER_ID",
    "DEFAULT_ENDPOINT",
    "ENV_ENDPOINT",
    "ENV_PROTOCOL",
    "ENV_SDK_DISABLED",
    "ENV_SERVICE_NAME",
    "ENV_TRACES_ENDPOINT",
    "ENV_TRACES_EXPORTER",
    "ENV_TRACES_PROTOCOL",
    "TRACEPARENT",
    "TRACESTATE",
    "Span",
    "SpanKind",
    "TracingSetup",
    "build_tracing",
    "configure_tracing",
    "context_from_traceparent",
    "current_or",
    "current_traceparent",
    "exporter_choice",
    "extract_headers",
    "fail",
    "flush",
    "inject_headers",
    "span",
    "trace_id_of",
    "tracer",
    "traces_endpoint",
]
