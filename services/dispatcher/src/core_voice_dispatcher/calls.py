"""``CallFailed(worker_lost)`` for a call whose worker vanished, seen from outside.

A worker that dies with its calls (SIGKILL, OOM, a lost node) reports nothing; LiveKit
notices the dead connection (~20 s here) and posts ``participant_left`` for the call's
agent participant. The webhook endpoint then waits ``worker_lost_grace_s`` (so a worker
that ended the call normally has reported it) and publishes the `CallFailed` built from
the participant's attributes under the call's outcome message id
(`call_outcome_msg_id`): the first report of a call's end wins, and JetStream drops a
later one as a duplicate within ``VOICE_CALLS``' duplicate window (120 s). A duplicate
answer therefore means the worker had reported the end: counted ``ended_normally``.

Runs where webhooks arrive (``role`` ``all`` or ``ingest``). The check lives in memory:
a dispatcher stopped during a call's grace period does not report that call.
"""

import asyncio
import logging
from collections import Counter

import msgspec
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from core_voice_contracts import subjects
from core_voice_contracts.bus import publish
from core_voice_contracts.events import CallFailed, call_outcome_msg_id
from core_voice_contracts.tasks import TaskSet
from core_voice_dispatcher.webhook_plan import CheckCall

log = logging.getLogger(__name__)

PUBLISH_ATTEMPTS = 5


class WorkerLostReports:
    """Pending checks by call id: owned tasks, cancelled on shutdown."""

    def __init__(self, js: JetStreamContext, grace_s: float) -> None:
        self._js = js
        self.grace_s = grace_s
        self.tasks = TaskSet()
        self._pending: set[str] = set()
        """Call ids with a check in `tasks`."""
        self.counts: Counter[str] = Counter()
        """``worker_lost`` (reported), ``ended_normally`` (the worker had reported the
        end: a duplicate), ``not_stored`` (the bus kept failing), ``repeated`` (the same
        participant_left twice)."""

    def pending(self) -> int:
        return len(self._pending)

    def check(self, action: CheckCall) -> None:
        """Report ``action.call_id`` lost after the grace period, unless it ended."""
        if action.call_id in self._pending:
            self.counts["repeated"] += 1
            return
        self._pending.add(action.call_id)
        task = self.tasks.spawn(self._report(action), name=f"worker-lost-{action.call_id}")
        task.add_done_callback(lambda _: self._pending.discard(action.call_id))

    async def _report(self, action: CheckCall) -> None:
        await asyncio.sleep(self.grace_s)
        report = msgspec.structs.replace(
            action.report,
            detail=(
                f"the call's agent participant left the room ({action.disconnect_reason}) "
                f"and its worker reported no end of the call within {self.grace_s:g} s"
            ),
        )
        await self.report(report, disconnect_reason=action.disconnect_reason)

    async def report(self, report: CallFailed, **context: str) -> None:
        """Store ``report`` as the call's one terminal event unless it has one; retried
        while the bus is away, counted, logged (``context`` joins the log fields)."""
        fields = {
            "call_id": report.call_id,
            "job_id": report.job_id,
            "agent_id": report.agent_id,
            "worker_id": report.worker_id,
            **context,
        }
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                ack = await publish(
                    self._js,
                    subjects.call_failed(report.agent_id),
                    report,
                    msg_id=call_outcome_msg_id(report.call_id),
                )
                break
            except (NatsError, TimeoutError) as exc:
                if attempt == PUBLISH_ATTEMPTS:
                    self.counts["not_stored"] += 1
                    log.warning(
                        "call outcome not stored: bus unavailable",
                        extra=fields | {"error": type(exc).__name__},
                    )
                    return
                await asyncio.sleep(0.5 * 2**attempt)
        if ack.duplicate:
            self.counts["ended_normally"] += 1
            log.debug("call outcome already reported", extra=fields)
            return
        self.counts["worker_lost"] += 1
        log.warning("call worker lost", extra=fields)

    async def close(self) -> None:
        """Drop pending checks (documented: a stop during a grace period loses them)."""
        if self._pending:
            log.info(
                "worker-lost checks dropped at shutdown", extra={"pending": len(self._pending)}
            )
        await self.tasks.cancel_all()
