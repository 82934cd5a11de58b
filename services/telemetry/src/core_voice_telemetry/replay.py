"""Rebuilding telemetry's state at start, before the durable consumers resume.

The durable consumers resume after the last event they acknowledged, so a restarted
telemetry would otherwise forget what it learned from earlier events: which agents were
routed (and their tenants) and which calls are in progress. So, first:

- ``VOICE_CONFIG`` (it keeps the latest `ConfigChanged` per agent) is read whole: every
  existing agent is routed again, with its tenant;
- ``VOICE_CALLS`` is read back ``lookback_s`` (longer than the longest call): routed
  agents, and the active-call set, by idempotent operations keyed by call id.

Both with ordered (ephemeral) consumers that count nothing: the durable consumers do the
counting, and re-applying an event to the state they share is harmless.
"""

import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from core_voice_contracts import streams, subjects
from core_voice_contracts.codec import decode_call_event, decode_config_event
from core_voice_contracts.errors import DecodeError
from core_voice_telemetry.metrics import Metrics

log = logging.getLogger(__name__)

IDLE_S = 2.0
"""No message for this long ends a replay (a safety net: it normally ends on the last)."""


async def replay_state(js: JetStreamContext, metrics: Metrics, lookback_s: float) -> None:
    """Learn routed agents from ``VOICE_CONFIG`` and active calls from ``VOICE_CALLS``."""
    configs = await _replay(
        js,
        streams.VOICE_CONFIG,
        subjects.CONFIG_CHANGED_ALL,
        lambda data: metrics.learn_config(decode_config_event(data)),
        ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=lookback_s)
    calls = await _replay(
        js,
        streams.VOICE_CALLS,
        subjects.CALLS_ALL,
        lambda data: metrics.learn_call(decode_call_event(data)),
        ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since),
    )
    log.info(
        "telemetry state replayed",
        extra={
            "config_events": configs,
            "call_events": calls,
            "agents": metrics.guard.agents,
            "active_calls": len(metrics.active),
        },
    )


async def _replay(
    js: JetStreamContext,
    stream: str,
    subject: str,
    apply: Callable[[bytes], None],
    config: ConsumerConfig,
) -> int:
    """Apply every message of ``subject`` that ``config`` selects, up to the stream's
    last message at the start; returns how many were read."""
    last = (await js.stream_info(stream)).state.last_seq
    if not last:
        return 0
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
    read = 0
    try:
        info = await sub.consumer_info()
        delivered = info.delivered.stream_seq if info.delivered else 0
        if not info.num_pending and not delivered and not sub.pending_msgs:
            return 0  # nothing in the range
        while True:
            try:
                msg = await sub.next_msg(timeout=IDLE_S)
            except TimeoutError:
                break
            read += 1
            # A poison message: the durable consumer terminates and counts it.
            with contextlib.suppress(DecodeError, ValueError):
                apply(msg.data)
            meta = msg.metadata
            if not meta.num_pending or meta.sequence.stream >= last:
                break
    finally:
        try:
            await sub.unsubscribe()
        except (NatsError, TimeoutError):
            log.warning("replay consumer not removed", extra={"stream": stream})
    return read
