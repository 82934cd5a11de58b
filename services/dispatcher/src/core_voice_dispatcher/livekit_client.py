"""The dispatcher's LiveKit API client: livekit-api's services, with their tokens reused.

livekit-api signs a new JWT for every call; on this path that is ~40% of a call's CPU
(0.39 -> 0.24 ms per ListRooms measured here), and the dispatcher makes four calls per
job on the critical path of every room (two of them ListRooms, which concurrent jobs
share: `RoomListing`). Tokens carry the same least-privilege grants
livekit-api asks for (``room_list``; ``room_admin`` for one room), so one room's token
serves its ListDispatch, ListParticipants, CreateDispatch and DeleteDispatch.
"""

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import aiohttp
from livekit import api
from livekit.api._service import Service
from livekit.api.access_token import SIPGrants
from livekit.api.agent_dispatch_service import AgentDispatchService
from livekit.api.room_service import RoomService
from livekit.protocol.agent_dispatch import AgentDispatch, CreateAgentDispatchRequest
from livekit.protocol.models import Room

from core_voice_dispatcher import hs256
from core_voice_dispatcher.metrics import DispatcherMetrics

TOKEN_TTL_S = 600.0
"""Lifetime of a signed token; one is reused for at most half of it, so a token in use
always has minutes left (LiveKit's clock may differ from ours)."""
MAX_TOKENS = 4096
"""Tokens kept (one per recent room, plus the listing one); the oldest go first."""

LIVEKIT_ERRORS = (api.TwirpError, aiohttp.ClientError, TimeoutError)
"""What a LiveKit API call raises when LiveKit refuses, fails or does not answer."""


def livekit_error(exc: BaseException) -> str:
    """One of `LIVEKIT_ERRORS` as a short error word for logs and outcome details."""
    if isinstance(exc, api.TwirpError):
        return f"livekit_{exc.code}"
    return f"livekit_{type(exc).__name__}"


_GrantKey = tuple[bool | None, bool | None, bool | None, str]


class TokenCache:
    """Signed API tokens by grant, reused while fresh. Never shows a token in its repr."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        ttl_s: float = TOKEN_TTL_S,
        max_tokens: int = MAX_TOKENS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = api_key
        self._api_secret = api_secret
        self._ttl_s = ttl_s
        self._max = max_tokens
        self._clock = clock
        self._tokens: OrderedDict[_GrantKey, tuple[float, str]] = OrderedDict()
        self.signed = 0
        """Tokens signed so far (for tests and curiosity)."""

    def __repr__(self) -> str:
        return f"TokenCache(api_key={self._api_key!r}, tokens={len(self._tokens)})"

    def __len__(self) -> int:
        return len(self._tokens)

    def token(self, grants: api.VideoGrants) -> str:
        """A token with exactly ``grants``; cached if they are a room or listing grant."""
        key = _key(grants)
        if key is None:
            return self._sign(grants)
        now = self._clock()
        cached = self._tokens.get(key)
        if cached is not None and now - cached[0] < self._ttl_s / 2:
            self._tokens.move_to_end(key)
            return cached[1]
        token = self._sign(grants)
        self._tokens[key] = (now, token)
        self._tokens.move_to_end(key)
        while len(self._tokens) > self._max:
            self._tokens.popitem(last=False)
        return token

    def _sign(self, grants: api.VideoGrants) -> str:
        """livekit-api's claims (`AccessToken.to_jwt`), signed by `hs256`."""
        self.signed += 1
        token = api.AccessToken(self._api_key, self._api_secret).with_grants(grants)
        now = time.time()
        claims = token.claims.asdict() | {
            "sub": token.identity,
            "iss": self._api_key,
            "nbf": int(now),
            "exp": int(now + self._ttl_s),
        }
        return hs256.sign(claims, self._api_secret.encode())


def _key(grants: api.VideoGrants) -> _GrantKey | None:
    """The grants livekit-api's room and dispatch calls use, or None for anything else."""
    plain = api.VideoGrants(
        room_list=grants.room_list,
        room_admin=grants.room_admin,
        room_create=grants.room_create,
        room=grants.room,
    )
    if plain != grants:
        return None
    return (grants.room_list, grants.room_admin, grants.room_create, grants.room)


class _CachedAuth(Service):
    """Overrides livekit-api's per-call signing with a `TokenCache` look-up."""

    tokens: TokenCache

    def _auth_header(
        self, grants: api.VideoGrants | None, sip: SIPGrants | None = None
    ) -> dict[str, str]:
        if grants is None or sip is not None:
            return super()._auth_header(grants, sip)
        return {"authorization": f"Bearer {self.tokens.token(grants)}"}


class RoomApi(_CachedAuth, RoomService):
    """livekit-api's RoomService with cached tokens."""


class DispatchApi(_CachedAuth, AgentDispatchService):
    """livekit-api's AgentDispatchService with cached tokens; CreateDispatch is timed
    (``corevoice_dispatcher_dispatch_seconds``), whoever calls it (a job, a re-offer)."""

    metrics: DispatcherMetrics

    async def create_dispatch(self, req: CreateAgentDispatchRequest) -> AgentDispatch:
        started = time.perf_counter()
        outcome = "error"
        try:
            created = await super().create_dispatch(req)
            outcome = "ok"
            return created
        finally:
            self.metrics.dispatch_seconds.labels(outcome).observe(time.perf_counter() - started)


class RoomListing:
    """Look-ups of rooms by name that share ListRooms calls.

    Every job asks LiveKit whether its room is still open, before its dispatch and right
    after it, and the capacity watch asks again for each waiting job every second: in a
    burst that was most of the dispatcher's LiveKit calls, and of its CPU. ListRooms takes
    a list of names, so look-ups share calls: at most `max_in_flight` calls are out at
    once; names asked meanwhile wait and go together in the next call (at most
    `max_batch`). A lone look-up goes out at once, so a quiet dispatcher waits no longer.
    """

    def __init__(
        self,
        list_rooms: Callable[[list[str]], Awaitable[list[Room]]],
        *,
        max_in_flight: int = 2,
        max_batch: int = 100,
    ) -> None:
        self._list = list_rooms
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._waiting: dict[str, list[asyncio.Future[list[Room]]]] = {}
        self._calls: set[asyncio.Task[None]] = set()
        self._closed = False
        self.calls = 0
        """ListRooms calls made (for /healthz and tests)."""
        self.looked_up = 0
        """Names asked for: ``looked_up / calls`` is the batching achieved."""

    async def rooms(self, name: str) -> list[Room]:
        """The open rooms named ``name`` (none or one). Raises what ListRooms raised."""
        if self._closed:
            raise aiohttp.ClientConnectionError("LiveKit client closed")
        waiter: asyncio.Future[list[Room]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(name, []).append(waiter)
        self.looked_up += 1
        self._start()
        return await waiter

    def _start(self) -> None:
        while not self._closed and self._waiting and len(self._calls) < self._max_in_flight:
            names = list(itertools.islice(self._waiting, self._max_batch))
            batch = {n: self._waiting.pop(n) for n in names}
            call = asyncio.get_running_loop().create_task(self._call(batch), name="list-rooms")
            self._calls.add(call)
            call.add_done_callback(self._ended)

    def _ended(self, call: "asyncio.Task[None]") -> None:
        self._calls.discard(call)
        self._start()

    async def _call(self, batch: dict[str, list[asyncio.Future[list[Room]]]]) -> None:
        self.calls += 1
        try:
            listed = await self._list(list(batch))
        except asyncio.CancelledError:
            _fail(batch, aiohttp.ClientConnectionError("LiveKit client closed"))
            raise
        except Exception as exc:
            _fail(batch, exc)
            return
        found: dict[str, list[Room]] = {}
        for room in listed:
            found.setdefault(room.name, []).append(room)
        for name, waiters in batch.items():
            for waiter in waiters:
                if not waiter.done():  # done: its caller gave up (a timeout)
                    waiter.set_result(found.get(name, []))

    async def aclose(self) -> None:
        self._closed = True
        for call in list(self._calls):
            call.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        _fail(self._waiting, aiohttp.ClientConnectionError("LiveKit client closed"))
        self._waiting = {}


def _fail(batch: dict[str, list[asyncio.Future[list[Room]]]], exc: Exception) -> None:
    for waiters in batch.values():
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)


class LiveKitClient:
    """The two LiveKit services the dispatcher calls, on one HTTP session."""

    def __init__(
        self,
        url: str,
        api_key: str,
        api_secret: str,
        *,
        timeout: aiohttp.ClientTimeout,
        metrics: DispatcherMetrics | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else DispatcherMetrics()
        self.tokens = TokenCache(api_key, api_secret)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self.room = RoomApi(self._session, url, api_key, api_secret)
        self.room.tokens = self.tokens
        self.agent_dispatch = DispatchApi(self._session, url, api_key, api_secret)
        self.agent_dispatch.tokens = self.tokens
        self.agent_dispatch.metrics = self.metrics
        self.room_listing = RoomListing(self._list_rooms)

    async def _list_rooms(self, names: list[str]) -> list[Room]:
        listed = await self.room.list_rooms(api.ListRoomsRequest(names=names))
        return list(listed.rooms)

    def __repr__(self) -> str:
        return f"LiveKitClient({self.tokens!r})"

    async def live_room(self, name: str, sid: str) -> Room | None:
        """The room ``name`` if it is open and is the room ``sid`` (a reused name is another
        room); any room of that name when ``sid`` is empty."""
        for room in await self.room_listing.rooms(name):
            if not sid or room.sid == sid:
                return room
        return None

    async def aclose(self) -> None:
        await self.room_listing.aclose()
        await self._session.close()
