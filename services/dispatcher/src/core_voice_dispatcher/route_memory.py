"""The last routing answers config_sync gave: what a job is dispatched with while
config_sync cannot be asked (down, frozen, or failing with a retryable error).

Remembered per agent id, campaign id and SIP trunk + dialed number (the key of the
request, in config_sync's own order: agent, else campaign, else number), least recently used
dropped past ``size``, unused once ``max_age_s`` passed since config_sync last gave it.
Only `RouteResolved` is remembered; a `RouteRejected` forgets the key (and, for a named
agent, that agent everywhere), so an unknown or disabled agent is never dispatched from
memory.

One key can have several answers: a campaign picks one of its agents per room, and an
agent in a gradual migration sends a share of its rooms to its legacy worker. The
dispatcher does not know the weights (config_sync's reply does not carry them), so it
remembers each distinct answer with how often config_sync gave it, and picks among them
per room with `routing.pick_weighted` on those counts: the same room gets the same answer
from the same memory, and the spread follows what config_sync did recently, not exactly
the configured weights. An agent's answer is remembered without the campaign of the
request; the job's own campaign is put back when it is used.

Change events on ``VOICE_CONFIG`` (`follow_config_events`) keep the memory from outliving
what it remembers. The dispatcher cannot tell a prompt edit from a status change (one
admin edit can do both and announce only a new version), so:

- `ConfigChanged` for an agent (kind updated, deleted, campaign): that agent is
  forgotten everywhere (its own key, and campaigns and numbers that routed to it); for
  kind ``campaign`` the campaign is forgotten too. The next room of the agent asks
  config_sync again and is remembered again. Kind ``created`` forgets nothing: anything
  remembered of the agent was learned after it was created (a deletion before it comes
  first on the stream and was applied first). It can arrive after the agent's first
  room was routed and remembered (the outbox publishes after the commit); forgetting then
  left a just-created agent with nothing to fall back on (a CI failure).
- `RoutingChanged`: the named agent, campaign or number is forgotten (a campaign also
  from the numbers that routed through it). Every other answer of that tenant is kept as
  a fallback but marked unconfirmed: it is logged so when used, and its spread is
  learned afresh from config_sync's next answer.

The memory is only ever read when config_sync cannot be asked; while it answers, every
job is routed by config_sync and the memory is only written.
"""

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from core_voice_contracts import subjects
from core_voice_contracts.codec import decode_config_stream_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import ChangeKind, ConfigChanged, ConfigStreamEvent, RoutingChanged
from core_voice_contracts.routing import RouteRequest, RouteResolved, pick_weighted
from core_voice_contracts.streams import VOICE_CONFIG

log = logging.getLogger(__name__)

MAX_CHOICES = 64
"""Distinct answers kept per key (a campaign's agents x pool/legacy); the rarest go."""
MAX_HITS = 10_000
"""Counts are halved past this, so the spread follows recent answers."""

Key = tuple[str, str]
"""``("agent", id)``, ``("campaign", id)`` or ``("number", "<trunk id> <e164>")``."""


def number_key(trunk_id: str | None, number: str) -> Key:
    """A number is routed with its trunk (the same number on two trunks is two routes)."""
    return ("number", f"{trunk_id or ''} {number}")


def memory_key(request: RouteRequest) -> Key | None:
    """Which remembered answer serves ``request``: config_sync's own precedence."""
    if request.agent_id is not None:
        return ("agent", request.agent_id)
    if request.campaign_id is not None:
        return ("campaign", request.campaign_id)
    if request.dialed_number is not None:
        return number_key(request.trunk_id, request.dialed_number)
    return None


@dataclass(slots=True)
class _Choice:
    answer: RouteResolved
    hits: int = 1


@dataclass(slots=True)
class _Entry:
    tenant_id: str
    confirmed_at: float
    confirmed: bool = True
    choices: dict[str, _Choice] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recalled:
    """A remembered answer for one room."""

    answer: RouteResolved
    key: Key
    age_s: float
    """Since config_sync last gave an answer for this key."""
    confirmed: bool
    """False if a routing change of the tenant came since (kept as a fallback)."""


def _label(answer: RouteResolved) -> str:
    return f"{answer.agent_id}\x00{answer.target.value}\x00{answer.legacy_agent_name or ''}"


class RouteMemory:
    """Bounded, in-process; see the module docstring for what is kept and forgotten."""

    def __init__(
        self, size: int, max_age_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.max_age_s = max_age_s
        self._clock = clock
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._by_agent: dict[str, set[Key]] = {}
        self._by_campaign: dict[str, set[Key]] = {}
        self._by_tenant: dict[str, set[Key]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    # --- writing -------------------------------------------------------------------------

    def remember(self, request: RouteRequest, answer: RouteResolved) -> None:
        """Config_sync answered ``request`` with ``answer``: keep it (counted)."""
        key = memory_key(request)
        if key is None or self.size <= 0:
            return
        if key[0] == "agent":
            answer = msgspec.structs.replace(answer, campaign_id=None)
        now = self._clock()
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._unindex(key, entry)
        if entry is None or not entry.confirmed or now - entry.confirmed_at > self.max_age_s:
            entry = _Entry(tenant_id=answer.tenant_id, confirmed_at=now)
        label = _label(answer)
        choice = entry.choices.get(label)
        if choice is None:
            if len(entry.choices) >= MAX_CHOICES:
                rarest = min(entry.choices, key=lambda k: entry.choices[k].hits)
                del entry.choices[rarest]
            entry.choices[label] = _Choice(answer)
        else:
            choice.answer = answer
            choice.hits += 1
            if choice.hits > MAX_HITS:
                for each in entry.choices.values():
                    each.hits = max(1, each.hits // 2)
        entry.tenant_id = answer.tenant_id
        entry.confirmed_at = now
        entry.confirmed = True
        self._entries[key] = entry
        self._index(key, entry)
        while len(self._entries) > self.size:
            old_key, old = self._entries.popitem(last=False)
            self._unindex(old_key, old)

    def rejected(self, request: RouteRequest) -> None:
        """Config_sync refused ``request``: forget its key, and a named agent everywhere."""
        key = memory_key(request)
        if key is not None:
            self._drop(key)
        if request.agent_id is not None:
            self.forget_agent(request.agent_id)

    def apply(self, event: ConfigStreamEvent) -> None:
        """A change event from ``VOICE_CONFIG`` (rules in the module docstring)."""
        match event:
            case ConfigChanged(kind=ChangeKind.CREATED):
                pass  # nothing learned before it can be of this agent (rules above)
            case ConfigChanged(agent_id=agent_id, kind=kind, campaign_id=campaign_id):
                self.forget_agent(agent_id)
                if kind == ChangeKind.CAMPAIGN and campaign_id is not None:
                    self.forget_campaign(campaign_id)
            case RoutingChanged(
                tenant_id=tenant_id,
                agent_id=agent_id,
                campaign_id=campaign_id,
                number=number,
                trunk_id=trunk_id,
            ):
                if agent_id is not None:
                    self.forget_agent(agent_id)
                if campaign_id is not None:
                    self.forget_campaign(campaign_id)
                if number is not None:
                    self._drop(number_key(trunk_id, number))
                self.unconfirm_tenant(tenant_id)

    def forget_agent(self, agent_id: str) -> None:
        self._forget_where(self._by_agent.get(agent_id, set()), lambda a: a.agent_id == agent_id)

    def forget_campaign(self, campaign_id: str) -> None:
        self._drop(("campaign", campaign_id))
        self._forget_where(
            self._by_campaign.get(campaign_id, set()), lambda a: a.campaign_id == campaign_id
        )

    def unconfirm_tenant(self, tenant_id: str) -> None:
        for key in self._by_tenant.get(tenant_id, set()):
            self._entries[key].confirmed = False

    def clear(self) -> None:
        self._entries.clear()
        self._by_agent.clear()
        self._by_campaign.clear()
        self._by_tenant.clear()

    # --- reading -------------------------------------------------------------------------

    def recall(self, request: RouteRequest) -> Recalled | None:
        """The remembered answer for ``request``'s room, if there is a usable one."""
        key = memory_key(request)
        if key is None:
            return None
        entry = self._entries.get(key)
        if entry is None or not entry.choices:
            return None
        age = self._clock() - entry.confirmed_at
        if age > self.max_age_s:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        weights = [(label, choice.hits) for label, choice in entry.choices.items()]
        picked = pick_weighted(request.room_key, weights, salt=f"memory:{key[0]}:{key[1]}")
        assert picked is not None  # every choice has at least one hit
        answer = entry.choices[picked].answer
        if key[0] == "agent":
            answer = msgspec.structs.replace(answer, campaign_id=request.campaign_id)
        return Recalled(answer=answer, key=key, age_s=age, confirmed=entry.confirmed)

    # --- indexes -------------------------------------------------------------------------

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._unindex(key, entry)

    def _forget_where(self, keys: set[Key], matches: Callable[[RouteResolved], bool]) -> None:
        for key in list(keys):
            entry = self._entries[key]
            self._unindex(key, entry)
            entry.choices = {k: c for k, c in entry.choices.items() if not matches(c.answer)}
            if entry.choices:
                self._index(key, entry)
            else:
                del self._entries[key]

    def _index(self, key: Key, entry: _Entry) -> None:
        self._by_tenant.setdefault(entry.tenant_id, set()).add(key)
        for choice in entry.choices.values():
            self._by_agent.setdefault(choice.answer.agent_id, set()).add(key)
            if choice.answer.campaign_id is not None:
                self._by_campaign.setdefault(choice.answer.campaign_id, set()).add(key)

    def _unindex(self, key: Key, entry: _Entry) -> None:
        _discard(self._by_tenant, entry.tenant_id, key)
        for choice in entry.choices.values():
            _discard(self._by_agent, choice.answer.agent_id, key)
            if choice.answer.campaign_id is not None:
                _discard(self._by_campaign, choice.answer.campaign_id, key)


def _discard(index: dict[str, set[Key]], name: str, key: Key) -> None:
    keys = index.get(name)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[name]


async def follow_config_events(
    js: JetStreamContext, memory: RouteMemory, poison: Counter[str] | None = None
) -> list[JetStreamContext.PushSubscription]:
    """Apply every new ``VOICE_CONFIG`` event to ``memory`` as it is stored.

    Ordered consumers from the stream (not plain subscriptions): after a NATS disconnect
    they resume from the last event seen, so a deletion announced meanwhile still arrives.
    An event not understood is counted in ``poison`` and skipped (an ordered consumer
    acknowledges nothing: there is nothing to terminate).
    """

    async def on_event(msg: Msg) -> None:
        try:
            event = decode_config_stream_event(msg.data)
        except DecodeError:
            if poison is not None:
                poison[f"{VOICE_CONFIG}/undecodable"] += 1
            log.warning("config event not understood", extra={"subject": msg.subject})
            return
        memory.apply(event)

    return [
        await js.subscribe(
            subject,
            stream=VOICE_CONFIG,
            cb=on_event,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        for subject in (subjects.CONFIG_CHANGED_ALL, subjects.ROUTING_CHANGED_ALL)
    ]
