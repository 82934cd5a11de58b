"""Keeps this replica's caches true to every replica's commits.

Listens to ``voice.config.changed.*`` and ``voice.config.routing.*`` (any replica's
outbox events, its own included): a `ConfigChanged` evicts this replica's older cached
config (a deletion leaves a tombstone), a `RoutingChanged` of an agent forgets it (its
status changed in place), and every event clears the routing answers.
"""

import logging
from collections import Counter

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from core_voice_config_sync.cache import RuntimeConfigCache
from core_voice_config_sync.metrics import ConfigSyncMetrics, ErrorType
from core_voice_config_sync.routing import RoutingService
from core_voice_contracts import codec, subjects
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import ChangeKind, ConfigChanged, RoutingChanged
from core_voice_contracts.ids import is_valid_id

log = logging.getLogger(__name__)


class CacheEvictor:
    def __init__(
        self,
        cache: RuntimeConfigCache,
        routing: RoutingService,
        *,
        refused: Counter[str],
        metrics: ConfigSyncMetrics,
    ) -> None:
        self._cache = cache
        self._routing = routing
        self.refused = refused
        """Change events ignored, by ``change/<reason>`` (reported by /healthz)."""
        self._metrics = metrics
        self._subscriptions: list[Subscription] = []

    async def start(self, nc: Client) -> None:
        for subject in (subjects.CONFIG_CHANGED_ALL, subjects.ROUTING_CHANGED_ALL):
            self._subscriptions.append(await nc.subscribe(subject, cb=self._on_change))

    async def stop(self) -> None:
        for sub in self._subscriptions:
            await sub.unsubscribe()
        self._subscriptions.clear()

    async def _on_change(self, msg: Msg) -> None:
        self._routing.invalidate()  # whatever it says, even unreadable: something changed
        try:
            event = codec.decode_config_stream_event(msg.data)
        except DecodeError:
            self.refused["change/undecodable"] += 1
            self._metrics.error(ErrorType.DECODE)
            log.warning("undecodable config event ignored", extra={"subject": msg.subject})
            return
        if event.agent_id is not None and not is_valid_id(event.agent_id):
            self.refused["change/invalid"] += 1  # would be a cache key of any size
            self._metrics.error(ErrorType.DECODE)
            return
        match event:
            case ConfigChanged(agent_id=agent_id, version=version, kind=ChangeKind.DELETED):
                self._cache.tombstone(agent_id, version)
            case ConfigChanged(agent_id=agent_id, version=version):
                self._cache.evict_older(agent_id, version)
            case RoutingChanged(agent_id=agent_id) if agent_id:
                # Status changes in place (no new version): re-read it on the next ask.
                self._cache.forget(agent_id)
            case _:
                pass
