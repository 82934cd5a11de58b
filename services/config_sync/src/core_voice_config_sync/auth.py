"""Who is calling: bearer tokens resolved to a `Principal` with permissions and a tenant.

Two sources. The bootstrap tokens from the environment (``CONFIG_SYNC_ADMIN_TOKEN``:
admin of the default tenant, so a fresh stack works with no manual step;
``CONFIG_SYNC_RUNTIME_TOKEN``: runtime for every tenant, the shared worker pool's) are
compared in constant time and never stored. The admin one is an ``operator``: an admin
that may also do what spans tenants (trunks, legacy worker names, runtime tokens). Every
other token lives in ``api_tokens`` as its SHA-256, scoped (``admin``, ``read``,
``runtime``, ``operator``) and bound to a tenant.

Database look-ups are cached briefly so a request does not cost a query, and so that
known tokens keep working while the database is unreachable, but never for longer than
``max_stale_s`` (``CONFIG_SYNC_TOKEN_MAX_STALE_S``) after the database last vouched for
them: past that, a token is refused with 503 until the database answers again, so a
token revoked just before an outage cannot ride it out. A revocation through this
replica takes effect at once; on other replicas within ``TOKEN_CACHE_S`` (or
``max_stale_s``, if shorter).
"""

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pydantic import SecretStr

from core_voice_config_sync.errors import DatabaseUnavailableError
from core_voice_config_sync.records import TokenRecord
from core_voice_contracts.admin_api import TokenScope

TOKEN_PREFIX = "cvt_"  # noqa: S105 - a public marker, not a secret
TOKEN_CACHE_S = 30.0
MAX_STALE_S = 60.0
NEGATIVE_CACHE_S = 2.0
CACHE_SIZE = 10_000


class Scope(StrEnum):
    """Permissions a handler can require; a token's `TokenScope` grants a set of them."""

    AGENTS_READ = "agents:read"
    AGENTS_WRITE = "agents:write"
    RUNTIME_READ = "runtime:read"
    RUNTIME_KEYS = "runtime:keys"
    TOKENS = "tokens:manage"
    OPERATOR = "platform:operate"
    """Assign SIP trunks and legacy worker names to tenants; mint runtime tokens."""


GRANTS: dict[TokenScope, frozenset[Scope]] = {
    TokenScope.ADMIN: frozenset(
        {Scope.AGENTS_READ, Scope.AGENTS_WRITE, Scope.RUNTIME_READ, Scope.TOKENS}
    ),
    TokenScope.READ: frozenset({Scope.AGENTS_READ, Scope.RUNTIME_READ}),
    TokenScope.RUNTIME: frozenset({Scope.RUNTIME_READ, Scope.RUNTIME_KEYS}),
    TokenScope.OPERATOR: frozenset(
        {Scope.AGENTS_READ, Scope.AGENTS_WRITE, Scope.RUNTIME_READ, Scope.TOKENS, Scope.OPERATOR}
    ),
}
"""Provider keys reach only ``runtime`` tokens: an admin can write keys, never read them,
nor mint a runtime token to read them (only an operator can)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``tenant_id=None`` reaches every tenant (service tokens)."""

    name: str
    scope: TokenScope
    tenant_id: str | None

    @property
    def scopes(self) -> frozenset[Scope]:
        return GRANTS[self.scope]

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Principal | None:
        """The principal a bearer token stands for, or None if it stands for nobody."""
        ...


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """256 random bits, recognisable by its prefix (secret scanners can match it)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class StaticTokens:
    """The bootstrap admin token (an operator, whose own tenant is the default one) and
    the workers' runtime token."""

    def __init__(self, *, admin: SecretStr, runtime: SecretStr, default_tenant: str) -> None:
        self._tokens: list[tuple[bytes, Principal]] = [
            (
                admin.get_secret_value().encode(),
                Principal(name="admin", scope=TokenScope.OPERATOR, tenant_id=default_tenant),
            ),
            (
                runtime.get_secret_value().encode(),
                Principal(name="runtime", scope=TokenScope.RUNTIME, tenant_id=None),
            ),
        ]

    def __repr__(self) -> str:
        return f"StaticTokens(<{len(self._tokens)} hidden>)"

    async def authenticate(self, token: str) -> Principal | None:
        given = token.encode()
        found: Principal | None = None
        for secret, principal in self._tokens:
            # Compare against every token, in constant time, so timing reveals nothing.
            if hmac.compare_digest(given, secret) and found is None:
                found = principal
        return found


TokenLookup = Callable[[str], Awaitable[TokenRecord | None]]


class StoredTokens:
    """Tokens from ``api_tokens`` by hash, with the static ones tried first."""

    def __init__(
        self,
        static: StaticTokens,
        lookup: TokenLookup,
        *,
        max_stale_s: float = MAX_STALE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = static
        self._lookup = lookup
        self._clock = clock
        self._max_stale_s = max_stale_s
        self._ttl_s = min(TOKEN_CACHE_S, max_stale_s)
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        """Hash → (when the database last answered for it, its principal or None)."""

    def __repr__(self) -> str:
        return f"StoredTokens(<{len(self._cache)} cached>)"

    def forget(self, token_hash: str | None = None) -> None:
        """Drop cached look-ups (one hash, or all): called after a revocation."""
        if token_hash is None:
            self._cache.clear()
        else:
            self._cache.pop(token_hash, None)

    async def authenticate(self, token: str) -> Principal | None:
        static = await self._static.authenticate(token)
        if static is not None:
            return static
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = hash_token(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None:
            checked, known = cached
            if now - checked < (self._ttl_s if known is not None else NEGATIVE_CACHE_S):
                return known
        try:
            record = await self._lookup(digest)
        except DatabaseUnavailableError:
            if cached is not None:
                checked, known = cached
                if known is not None and now - checked <= self._max_stale_s:
                    return known  # vouched for a moment ago: serve through a short outage
            raise
        principal = (
            None
            if record is None or record.revoked
            else Principal(
                name=f"token:{record.name}",
                scope=TokenScope(record.scope),
                tenant_id=record.tenant_id,
            )
        )
        self._cache[digest] = (now, principal)
        self._cache.move_to_end(digest)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal
