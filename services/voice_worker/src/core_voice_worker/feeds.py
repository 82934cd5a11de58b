"""The pool's two feeds from NATS into its mirror.

- Job events (core subscriptions on ``voice.jobs.requested.*`` and
  ``voice.jobs.dispatched.*``): a job on its way makes the pool fetch, or confirm, its
  agent's config before LiveKit offers it.
- ``VOICE_CONFIG`` (ordered consumers from the latest message per subject): every
  agent's newest announced version and routing changes, pushed as they happen; and
  config_sync's core-NATS echo of each stored announcement (``voice.echo.config.>``),
  which reaches the pool at once when its ordered consumer stalls (its NATS node
  restarted or catching up: nats-py notices a silent consumer only after two missed
  5 s heartbeats).

On every (re)connect the config feed starts over from the latest message per subject,
so an edit made while the pool could not see the bus is caught within a round trip of
the reconnect; until that replay is done, the mirror counts as not live (stale).

Neither feed acknowledges anything (core subscriptions, ordered consumers), so a message
that is not understood, or names an agent or campaign by something that is no id, is
skipped and counted in ``bad_messages`` (``corevoice_worker_poison_messages_total``).
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager as ContextManager

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import Error as JetStreamError

from core_voice_contracts import codec, subjects
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import ConfigChanged, JobDispatched, JobRequested, RoutingChanged
from core_voice_contracts.ids import is_valid_id
from core_voice_contracts.tasks import TaskSet
from core_voice_contracts.tracing import (
    ATTR_AGENT_ID,
    ATTR_JOB_ID,
    Span,
    SpanKind,
    extract_headers,
    span,
    tracer,
)
from core_voice_worker.mirror import ConfigMirror

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

CONFIG_SUBJECTS = (subjects.CONFIG_CHANGED_ALL, subjects.ROUTING_CHANGED_ALL)


class PoolFeeds:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        mirror: ConfigMirror,
        *,
        agent_name: str,
        tasks: TaskSet | None = None,
    ) -> None:
        self._nc = nc
        self._tasks = tasks if tasks is not None else TaskSet()
        self._js = js
        self._mirror = mirror
        self._agent_name = agent_name
        self._job_subs: list[Subscription] = []
        self._config_subs: list[Subscription] = []
        self._pending: set[str] = set()
        self._restart: asyncio.Task[None] | None = None
        self.reconciles = 0
        self.echoes = 0
        """Announcements first heard from config_sync's core-NATS echo (newer than the
        feed had delivered): each is an edit a stalled feed would have delivered late."""
        self.bad_messages: Counter[tuple[str, str]] = Counter()
        """Messages skipped, by (feed, reason): ``jobs`` / ``config``, ``undecodable`` /
        ``invalid``."""
        self.reconnected_at: float | None = None
        """Wall-clock time of the last reconnect (operators compare it with edits)."""
        self.reconciled_at: float | None = None

    async def start(self) -> None:
        for subject in (subjects.JOBS_REQUESTED_ALL, subjects.JOBS_DISPATCHED_ALL):
            self._job_subs.append(await self._nc.subscribe(subject, cb=self._on_job))
        self._job_subs.append(await self._nc.subscribe(subjects.CONFIG_ECHO_ALL, cb=self._on_echo))
        await self._follow_config()

    async def stop(self) -> None:
        if self._restart is not None:
            self._restart.cancel()
            await asyncio.gather(self._restart, return_exceptions=True)
        for sub in [*self._job_subs, *self._config_subs]:
            with contextlib.suppress(NatsError, JetStreamError):
                await sub.unsubscribe()
        self._job_subs.clear()
        self._config_subs.clear()

    # --- connection events (plain callbacks from `bus.connect`) ----------------------

    def disconnected(self) -> None:
        self._mirror.set_live(False)

    def reconnected(self) -> None:
        self.reconnected_at = time.time()
        self._mirror.set_live(False)
        if self._restart is None or self._restart.done():
            self._restart = self._tasks.spawn(
                self._retry(self._follow_config), name="pool-feeds.reconcile"
            )

    # --- the config feed ------------------------------------------------------------

    async def _follow_config(self) -> None:
        """(Re)subscribe from the latest announcement per subject and replay it."""
        for sub in self._config_subs:
            with contextlib.suppress(NatsError, JetStreamError):
                await sub.unsubscribe()
        self._config_subs.clear()
        self._pending = set(CONFIG_SUBJECTS)
        for subject in CONFIG_SUBJECTS:
            sub = await self._js.subscribe(
                subject,
                cb=self._config_handler(subject),
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            )
            self._config_subs.append(sub)
            info = await sub.consumer_info()
            delivered = info.delivered.consumer_seq if info.delivered else 0
            if info.num_pending == 0 and not delivered:
                # Nothing to replay; otherwise the handler of the last message says so.
                self._caught_up(subject)

    def _config_handler(self, subject: str) -> Callable[[Msg], Awaitable[None]]:
        async def handle(msg: Msg) -> None:
            event = self._decode_config(msg)
            if event is not None:
                self._apply(event)
            if msg.metadata.num_pending == 0:
                self._caught_up(subject)

        return handle

    async def _on_echo(self, msg: Msg) -> None:
        """config_sync's core-NATS echo of a stored announcement: applied only if it is
        news (a newer version), so the stream's order decides everything else, e.g. a
        deletion and a re-creation of one agent id."""
        event = self._decode_config(msg)
        match event:
            case ConfigChanged(agent_id=agent_id, version=version) if (
                version > self._mirror.announced(agent_id)
            ):
                self.echoes += 1
                self._apply(event)
            case _:
                pass

    def _decode_config(self, msg: Msg) -> ConfigChanged | RoutingChanged | None:
        try:
            event = codec.decode_config_stream_event(msg.data)
        except DecodeError:
            self.bad_messages["config", "undecodable"] += 1
            log.warning("undecodable config event ignored", extra={"subject": msg.subject})
            return None
        match event:
            case ConfigChanged(agent_id=agent_id) | RoutingChanged(agent_id=str() as agent_id) if (
                agent_id and not is_valid_id(agent_id)
            ):
                # Would be a key of any size in the mirror's announced versions.
                self.bad_messages["config", "invalid"] += 1
                return None
        return event

    def _apply(self, event: ConfigChanged | RoutingChanged) -> None:
        match event:
            case ConfigChanged():
                self._mirror.announce(event)
            case RoutingChanged(agent_id=agent_id) if agent_id:
                self._mirror.routing_changed(agent_id)
            case RoutingChanged():
                pass

    def _caught_up(self, subject: str) -> None:
        if subject not in self._pending:
            return
        self._pending.discard(subject)
        if not self._pending:
            self.reconciles += 1
            self.reconciled_at = time.time()
            self._mirror.reconciled()
            log.info("config feed reconciled", extra={"reconciles": self.reconciles})

    # --- the job feed -----------------------------------------------------------------

    async def _on_job(self, msg: Msg) -> None:
        try:
            event = codec.decode_job_event(msg.data)
        except DecodeError:
            self.bad_messages["jobs", "undecodable"] += 1
            return
        campaign_id = getattr(event, "campaign_id", None)
        if campaign_id is not None and not is_valid_id(campaign_id):
            self.bad_messages["jobs", "invalid"] += 1  # a mirror key of any size
            return
        match event:
            case JobDispatched(agent_id=agent_id, campaign_id=campaign_id) if (
                event.worker_agent_name == self._agent_name
            ):
                # The routed agent: confirm what is held (or fetch it) before the offer.
                if is_valid_id(agent_id):
                    with _prefetch_span(msg, event):
                        self._mirror.prefetch(agent_id, campaign_id)
            case JobRequested(agent_id=agent_id, campaign_id=campaign_id):
                if is_valid_id(agent_id) and self._mirror.peek(agent_id, campaign_id) is None:
                    with _prefetch_span(msg, event):
                        self._mirror.prefetch(agent_id, campaign_id)
            case _:
                pass

    @staticmethod
    async def _retry(step: Callable[[], Awaitable[None]]) -> None:
        delay = 0.1
        while True:
            try:
                await step()
                return
            except (NatsError, JetStreamError, TimeoutError) as exc:
                log.warning("config feed restart failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


def _prefetch_span(msg: Msg, event: JobRequested | JobDispatched) -> ContextManager[Span]:
    """A ``prefetch`` span in the job's trace: the fetch it starts (a task, which copies
    the current context) asks config_sync with this context in its headers."""
    return span(
        _tracer,
        "prefetch",
        kind=SpanKind.CONSUMER,
        context=extract_headers(msg.headers),
        attributes={
            ATTR_JOB_ID: event.job_id,
            ATTR_AGENT_ID: event.agent_id,
            "corevoice.trigger": type(event).__name__,
        },
    )
