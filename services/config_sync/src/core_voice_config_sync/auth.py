"""Who is calling: bearer tokens resolved to a `Principal` with scopes and a tenant.

Today there are two static tokens from the settings (admin and runtime). Scoped,
per-tenant tokens stored hashed in ``api_tokens`` will be another `Authenticator`;
nothing that consumes a `Principal` has to change for that.
"""

import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pydantic import SecretStr


class Scope(StrEnum):
    AGENTS_READ = "agents:read"
    AGENTS_WRITE = "agents:write"
    RUNTIME_READ = "runtime:read"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``tenant_id=None`` reaches every tenant (service tokens)."""

    name: str
    scopes: frozenset[Scope]
    tenant_id: str | None

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Principal | None:
        """The principal a bearer token stands for, or None if it stands for nobody."""
        ...


class StaticTokens:
    """The admin token (everything in the default tenant) and the workers' runtime token."""

    def __init__(self, *, admin: SecretStr, runtime: SecretStr, default_tenant: str) -> None:
        self._tokens: list[tuple[bytes, Principal]] = [
            (
                admin.get_secret_value().encode(),
                Principal(
                    name="admin",
                    scopes=frozenset(Scope),
                    tenant_id=default_tenant,
                ),
            ),
            (
                runtime.get_secret_value().encode(),
                Principal(name="runtime", scopes=frozenset({Scope.RUNTIME_READ}), tenant_id=None),
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
