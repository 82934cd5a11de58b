"""The pools' live reports on core NATS: `WorkerStatus` heartbeats and `ConfigHeld`.

Plain subscriptions, not streams: these say what holds now, so nothing is replayed after
a restart; the fleet gauges are right again one heartbeat interval later. An undecodable
or invalid message (an id no pool or agent has) is counted as poison (stream
``workers``) and skipped.
"""

import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from core_voice_contracts import subjects
from core_voice_contracts.codec import decode_worker_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import ConfigHeld
from core_voice_contracts.ids import is_valid_id
from core_voice_telemetry.metrics import Metrics

log = logging.getLogger(__name__)

FEED = "workers"
"""The ``stream`` label of these reports in the telemetry metrics (no JetStream stream)."""
MAX_WORKER_ID = 253
"""Longest worker id kept (a DNS name, as a pod name is)."""


async def subscribe_workers(nc: Client, metrics: Metrics) -> list[Subscription]:
    async def on_report(msg: Msg) -> None:
        try:
            event = decode_worker_event(msg.data)
        except DecodeError:
            metrics.poison_messages.labels(FEED, "undecodable").inc()
            log.warning("worker report not understood", extra={"subject": msg.subject[:200]})
            return
        if len(event.worker_id) > MAX_WORKER_ID or (
            isinstance(event, ConfigHeld) and not is_valid_id(event.agent_id)
        ):
            # Held in memory until it expires: a megabyte-long id must not be.
            metrics.poison_messages.labels(FEED, "invalid").inc()
            log.warning("worker report not valid", extra={"subject": msg.subject[:200]})
            return
        try:
            metrics.observe_worker(event)
        except Exception:
            metrics.poison_messages.labels(FEED, "failed").inc()
            log.exception("worker report not applied", extra={"subject": msg.subject[:200]})

    subs = [
        await nc.subscribe(subjects.WORKER_STATUS, cb=on_report),
        await nc.subscribe(subjects.CONFIG_HELD, cb=on_report),
    ]
    metrics.feeds[FEED] = "ok"
    return subs
