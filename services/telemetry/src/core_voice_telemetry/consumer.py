"""Durable stream consumers feeding `Metrics`.

Durable, so a telemetry restart resumes where it stopped instead of missing events
(counters restart at zero, as Prometheus expects of a restarted process; state such as
the calls in progress is rebuilt first by `replay`).
A poison message never stops a feed: an undecodable one (garbage, JSON nested too deep,
wrong types) or one whose agent id is no id is terminated at once; one whose handling
fails otherwise is retried and terminated on its ``MAX_DELIVER``-th delivery. Each is
counted in ``corevoice_telemetry_poison_messages_total{stream,reason}``. A feed's task
that fails anyway is restarted (`run_feed`); /healthz shows each feed's state.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from core_voice_contracts import streams, subjects
from core_voice_contracts.codec import decode_call_event, decode_config_event, decode_job_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.ids import is_valid_id
from core_voice_contracts.tracing import ATTR_SUBJECT, SpanKind, extract_headers, span, tracer
from core_voice_telemetry.metrics import Metrics

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

MAX_DELIVER = 5
"""Deliveries of one message before it is given up on (terminated and counted)."""
RETRY_S = 1.0
"""Delay before a message whose handling failed is delivered again."""
RESTART_S = 1.0
"""Delay before a feed whose task failed starts again."""


class InvalidEventError(ValueError):
    """A decodable event that must not become metrics (its agent id is no id: a label
    value of any length and content, one per message, would grow /metrics forever)."""


def _label_id(agent_id: str) -> str:
    if agent_id != subjects.UNROUTED and not is_valid_id(agent_id):
        raise InvalidEventError("agent_id is not an id")
    return agent_id


@dataclass(frozen=True)
class Feed:
    stream: str
    subject: str
    suffix: str
    apply: Callable[[Metrics, bytes], None]

    def durable(self, prefix: str) -> str:
        return f"{prefix}-{self.suffix}"


def _jobs(metrics: Metrics, data: bytes) -> None:
    event = decode_job_event(data)
    _label_id(event.agent_id)
    metrics.observe_job(event)


def _calls(metrics: Metrics, data: bytes) -> None:
    event = decode_call_event(data)
    _label_id(event.agent_id)
    metrics.observe_call(event)


def _config(metrics: Metrics, data: bytes) -> None:
    event = decode_config_event(data)
    _label_id(event.agent_id)
    metrics.observe_config(event)


FEEDS = (
    Feed(streams.VOICE_JOBS, subjects.JOBS_ALL, "jobs", _jobs),
    Feed(streams.VOICE_CALLS, subjects.CALLS_ALL, "calls", _calls),
    Feed(streams.VOICE_CONFIG, subjects.CONFIG_CHANGED_ALL, "config", _config),
)


async def run_feed(
    js: JetStreamContext,
    metrics: Metrics,
    feed: Feed,
    prefix: str,
    stop: asyncio.Event,
    *,
    states: dict[str, str],
) -> None:
    """`consume` one feed until ``stop``, restarting it if it fails; ``states[suffix]``
    says ``ok``, ``restarting`` or ``stopped`` (for /healthz and ``feed_up``)."""

    def state(value: str) -> None:
        states[feed.suffix] = value
        metrics.feeds[feed.stream] = value

    while not stop.is_set():
        state("ok")
        try:
            await consume(js, metrics, feed, prefix, stop)
        except Exception as exc:
            state("restarting")
            metrics.feed_restarts.labels(feed.stream).inc()
            log.exception(
                "event feed failed", extra={"stream": feed.stream, "error": type(exc).__name__}
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=RESTART_S)
    state("stopped")


async def consume(
    js: JetStreamContext, metrics: Metrics, feed: Feed, prefix: str, stop: asyncio.Event
) -> None:
    durable = feed.durable(prefix)
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=feed.subject,
        max_ack_pending=10_000,
        max_deliver=MAX_DELIVER,
    )
    sub = await js.pull_subscribe(feed.subject, durable=durable, stream=feed.stream, config=config)
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch=200, timeout=1.0)
            except TimeoutError:
                continue
            except NatsError:
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                try:
                    await _apply(metrics, feed, msg)
                except (NatsError, TimeoutError):
                    # The ack did not reach the server: the message comes again.
                    log.warning("event not acknowledged", extra={"stream": feed.stream})
    finally:
        with contextlib.suppress(NatsError, TimeoutError):
            await sub.unsubscribe()


async def poll_pending(
    js: JetStreamContext, metrics: Metrics, prefix: str, stop: asyncio.Event, interval_s: float
) -> None:
    """Every ``interval_s``: each durable consumer's backlog (pending + unacknowledged)
    into ``corevoice_telemetry_consumer_pending``; a growing one means telemetry lags.
    Also counts the job requests that waited too long for their job's next event."""
    while not stop.is_set():
        metrics.count_overdue()
        for feed in FEEDS:
            try:
                info = await js.consumer_info(feed.stream, feed.durable(prefix))
            except (NatsError, TimeoutError):
                continue  # not created yet, or NATS away: keep the last figure
            backlog = (info.num_pending or 0) + (info.num_ack_pending or 0)
            metrics.consumer_pending.labels(feed.stream).set(backlog)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


async def _apply(metrics: Metrics, feed: Feed, msg: Msg) -> None:
    try:
        with span(  # in the event's trace: the publisher's span is its parent
            _tracer,
            "apply",
            kind=SpanKind.CONSUMER,
            context=extract_headers(msg.headers),
            attributes={ATTR_SUBJECT: msg.subject[:200]},
        ):
            feed.apply(metrics, msg.data)
    except (DecodeError, InvalidEventError) as exc:
        reason = "undecodable" if isinstance(exc, DecodeError) else "invalid"
        await _poison(metrics, feed, msg, reason)
        return
    except Exception:
        delivered = msg.metadata.num_delivered
        log.exception("event not applied", extra={"stream": feed.stream, "delivered": delivered})
        if delivered >= MAX_DELIVER:
            await _poison(metrics, feed, msg, "failed")
        else:
            await msg.nak(delay=RETRY_S)
        return
    await msg.ack()


async def _poison(metrics: Metrics, feed: Feed, msg: Msg, reason: str) -> None:
    metrics.poison_messages.labels(feed.stream, reason).inc()
    log.warning(
        "poison event terminated",
        extra={"stream": feed.stream, "subject": msg.subject[:200], "reason": reason},
    )
    await msg.term()
