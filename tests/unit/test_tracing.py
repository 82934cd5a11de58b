"""Trace context in NATS headers and dispatch metadata; exporting only when configured."""

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core_voice_contracts.codec import decode_job_event, encode
from core_voice_contracts.events import JobRequested
from core_voice_contracts.tracing import (
    TRACEPARENT,
    SpanKind,
    build_tracing,
    context_from_traceparent,
    current_or,
    current_traceparent,
    exporter_choice,
    extract_headers,
    inject_headers,
    span,
    trace_id_of,
    traces_endpoint,
)
from tests.fakes.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.unit


class Memory:
    """Spans of a private provider (not the process's global one), flushed on reading."""

    def __init__(self) -> None:
        self._exporter = InMemorySpanExporter()
        self._setup = build_tracing("test", {}, exporter=self._exporter)
        self.tracer = self._setup.provider.get_tracer("test")

    def spans(self) -> tuple[ReadableSpan, ...]:
        assert self._setup.provider.force_flush(2000)
        return self._exporter.get_finished_spans()

    def named(self, name: str) -> ReadableSpan:
        return next(s for s in self.spans() if s.name == name)


@pytest.fixture
def memory() -> Memory:
    return Memory()


def test_nats_headers_carry_the_span_to_the_consumer(
    memory: Memory,
) -> None:
    tracer = memory.tracer
    with span(tracer, "publish JobRequested", kind=SpanKind.PRODUCER) as producer:
        headers = inject_headers({"Nats-Msg-Id": "job-1"})
        sent = producer.get_span_context()
    assert headers["Nats-Msg-Id"] == "job-1"
    assert headers[TRACEPARENT].startswith(f"00-{sent.trace_id:032x}-{sent.span_id:016x}-")
    assert sent.trace_flags.sampled
    assert trace_id_of(headers) == f"{sent.trace_id:032x}"

    # Another process: nothing current, the parent comes from the message only.
    with span(tracer, "dispatch", kind=SpanKind.CONSUMER, context=extract_headers(headers)):
        pass
    consumer = memory.named("dispatch")
    assert consumer.context is not None and consumer.parent is not None
    assert consumer.context.trace_id == sent.trace_id
    assert consumer.parent.span_id == sent.span_id
    assert consumer.kind == SpanKind.CONSUMER


@pytest.mark.parametrize("headers", [None, {}, {"traceparent": "garbage"}, {"other": "x"}])
def test_a_message_without_context_starts_a_new_trace(
    memory: Memory, headers: dict[str, str] | None
) -> None:
    tracer = memory.tracer
    assert trace_id_of(headers) is None
    with span(tracer, "dispatch", context=extract_headers(headers)):
        pass
    (root,) = memory.spans()
    assert root.parent is None


def test_dispatch_metadata_carries_the_trace_through_livekit(
    memory: Memory,
) -> None:
    tracer = memory.tracer
    with span(tracer, "dispatch") as dispatch:
        job = JobRequested(
            job_id="j1",
            room_name="r1",
            room_sid="RM_1",
            agent_id="a1",
            traceparent=current_traceparent(),
        )
    metadata = encode(job).decode()  # what CreateDispatch carries
    routed = decode_job_event(metadata.encode())
    assert isinstance(routed, JobRequested)
    with span(tracer, "call", context=context_from_traceparent(routed.traceparent)):
        pass
    call = memory.named("call")
    assert call.parent is not None
    assert call.parent.span_id == dispatch.get_span_context().span_id
    assert current_traceparent() == ""  # nothing current outside a span
    assert context_from_traceparent("") == extract_headers(None)


def test_current_or_prefers_the_current_span(
    memory: Memory,
) -> None:
    tracer = memory.tracer
    carried = extract_headers({TRACEPARENT: "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"})
    assert current_or(carried) is carried
    with span(tracer, "dispatch"):
        assert current_or(carried) is None


def test_a_failed_span_names_the_error_type_only(
    memory: Memory,
) -> None:
    tracer = memory.tracer
    with pytest.raises(RuntimeError), span(tracer, "call"):
        raise RuntimeError("provider said: invalid key sk-secret-canary")
    (failed,) = memory.spans()
    assert failed.status.description == "RuntimeError"
    assert not failed.events  # no exception event with the message or a stack
    assert "sk-secret-canary" not in repr(failed.to_json())


def test_empty_attributes_are_left_out(
    memory: Memory,
) -> None:
    tracer = memory.tracer
    with span(tracer, "x", attributes={"a": "1", "b": None, "c": ""}):
        pass
    (only,) = memory.spans()
    assert dict(only.attributes or {}) == {"a": "1"}


def test_exporter_choice_follows_the_standard_variables() -> None:
    assert exporter_choice({}) == "none"
    assert exporter_choice({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "otlp"
    assert exporter_choice({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/t"}) == "otlp"
    assert exporter_choice({"OTEL_TRACES_EXPORTER": "otlp"}) == "otlp"
    assert exporter_choice({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    both = {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert exporter_choice(both) == "none"
    assert traces_endpoint({}) == "http://localhost:4318/v1/traces"
    assert traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == (
        "http://c:4318/v1/traces"
    )
    signal = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:9/x",
    }
    assert traces_endpoint(signal) == "http://t:9/x"
    named = build_tracing("dispatcher", {"OTEL_SERVICE_NAME": "dispatcher-eu"})
    assert named.provider.resource.attributes["service.name"] == "dispatcher-eu"
    assert build_tracing("dispatcher", {}).provider.resource.attributes["service.name"] == (
        "dispatcher"
    )


def test_no_exporter_configured_means_no_export_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[str] = []

    def counting(name: str):  # type: ignore[no-untyped-def]
        def export(self: object, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            attempts.append(name)
            return SpanExportResult.SUCCESS

        return export

    monkeypatch.setattr(OTLPSpanExporter, "export", counting("otlp"))
    monkeypatch.setattr(ConsoleSpanExporter, "export", counting("console"))
    for env in ({}, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}):
        setup = build_tracing("dispatcher", env)
        assert setup.exporter == "none"
        tracer = setup.provider.get_tracer("t")
        with span(tracer, "webhook") as root:
            assert root.get_span_context().is_valid  # trace ids exist for timelines
            assert inject_headers()[TRACEPARENT]
        assert setup.provider.force_flush(2000)
        setup.provider.shutdown()
    assert attempts == []

    configured = build_tracing("dispatcher", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    with span(configured.provider.get_tracer("t"), "webhook"):
        pass
    configured.provider.force_flush(2000)
    configured.provider.shutdown()
    assert attempts == ["otlp"]


async def test_configured_spans_reach_an_otlp_receiver() -> None:
    async with OtlpReceiver() as receiver:
        setup = build_tracing("dispatcher", {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
        assert setup.endpoint == f"{receiver.url}/v1/traces"
        with span(setup.provider.get_tracer("t"), "webhook", kind=SpanKind.SERVER) as root:
            trace_id = f"{root.get_span_context().trace_id:032x}"
        # The exporter is synchronous (requests): flush it off the loop serving the receiver.
        assert await asyncio.to_thread(setup.provider.force_flush, 5000)
        (got,) = await receiver.wait_for(lambda spans: len(spans) == 1, timeout=5)
        setup.provider.shutdown()
    assert (got.service, got.name, got.kind, got.trace_id) == (
        "dispatcher",
        "webhook",
        "SERVER",
        trace_id,
    )


def test_an_unconfigured_service_says_nothing_about_tracing() -> None:
    """The embedded stack's default: spans made and ended, nothing printed or logged."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = (
        "import logging; logging.basicConfig(level=logging.DEBUG)\n"
        "from core_voice_contracts.tracing import configure_tracing, flush, span, tracer\n"
        "setup = configure_tracing('dispatcher')\n"
        "assert setup.exporter == 'none'\n"
        "with span(tracer('x'), 'webhook'): pass\n"
        "assert flush(2)\n"
        "setup.provider.shutdown()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
