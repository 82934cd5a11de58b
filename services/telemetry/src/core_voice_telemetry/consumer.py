"""Durable stream consumers feeding `Metrics`.

Durable, so a telemetry restart resumes where it stopped instead of missing events;
undecodable messages are counted and terminated, never retried forever.
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
from core_voice_telemetry.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feed:
    stream: str
    subject: str
    suffix: str
    apply: Callable[[Metrics, bytes], None]


def _jobs(metrics: Metrics, data: bytes) -> None:
    metrics.observe_job(decode_job_event(data))


def _calls(metrics: Metrics, data: bytes) -> None:
    metrics.observe_call(decode_call_event(data))


def _config(metrics: Metrics, data: bytes) -> None:
    metrics.observe_config(decode_config_event(data))


FEEDS = (
    Feed(streams.VOICE_JOBS, subjects.JOBS_ALL, "jobs", _jobs),
    Feed(streams.VOICE_CALLS, subjects.CALLS_ALL, "calls", _calls),
    Feed(streams.VOICE_CONFIG, subjects.CONFIG_CHANGED_ALL, "config", _config),
)


async def consume(
    js: JetStreamContext, metrics: Metrics, feed: Feed, prefix: str, stop: asyncio.Event
) -> None:
    durable = f"{prefix}-{feed.suffix}"
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=feed.subject,
        max_ack_pending=10_000,
    )
    sub = await js.pull_subscribe(feed.subject, durable=durable, stream=feed.stream, config=config)
    while not stop.is_set():
        try:
            msgs = await sub.fetch(batch=200, timeout=1.0)
        except TimeoutError:
            continue
        except NatsError:
            await asyncio.sleep(0.5)
            continue
        for msg in msgs:
            await _apply(metrics, feed, msg)
    with contextlib.suppress(NatsError):
        await sub.unsubscribe()


async def _apply(metrics: Metrics, feed: Feed, msg: Msg) -> None:
    try:
        feed.apply(metrics, msg.data)
    except DecodeError:
        metrics.invalid_events.labels(feed.stream).inc()
        log.warning("undecodable event", extra={"stream": feed.stream, "subject": msg.subject})
        await msg.term()
        return
    await msg.ack()
