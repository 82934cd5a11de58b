"""API tokens: minted here, shown once, stored as SHA-256, revoked by id.

Through the API a tenant admin mints ``admin`` and ``read`` tokens of its tenant; only an
operator mints ``runtime`` (they read provider keys, which admins may only write) and
``operator`` tokens. The operator commands (``token create``) mint any.
"""

import sqlalchemy as sa

from core_voice_config_sync.auth import Principal, Scope, StoredTokens, hash_token, new_token
from core_voice_config_sync.db import Database
from core_voice_config_sync.errors import ForbiddenError, InvalidConfigError, TokenNotFoundError
from core_voice_config_sync.models import ApiToken, Tenant, utcnow
from core_voice_config_sync.persistence import keyset_page, new_id
from core_voice_config_sync.records import TokenRecord
from core_voice_contracts.admin_api import TokenScope


def token_record(row: ApiToken) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        scope=row.scope,
        last4=row.last4,
        created_at=row.created_at,
        revoked=row.revoked_at is not None,
    )


class TokenRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, *, tenant_id: str | None, name: str, scope: TokenScope
    ) -> tuple[str, TokenRecord]:
        """Mint a token; the plain text is returned here and nowhere else, ever.

        ``tenant_id=None`` (every tenant) is allowed for ``runtime`` tokens only.
        """
        if tenant_id is None and scope != TokenScope.RUNTIME:
            raise InvalidConfigError("tenant_id", "only runtime tokens may span tenants")
        token = new_token()
        row = ApiToken(
            id=new_id("tok"),
            tenant_id=tenant_id,
            name=name,
            scope=scope.value,
            token_hash=hash_token(token),
            last4=token[-4:],
            created_at=utcnow(),
        )
        async with self.db.write() as session:
            if tenant_id is not None and await session.get(Tenant, tenant_id) is None:
                raise InvalidConfigError("tenant_id", "no such tenant")
            session.add(row)
        return token, token_record(row)

    async def by_hash(self, token_hash: str) -> TokenRecord | None:
        async with self.db.read() as session:
            row = await session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == token_hash))
        return None if row is None else token_record(row)

    async def page(
        self, tenant_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[TokenRecord], str | None]:
        query = sa.select(ApiToken).where(
            ApiToken.tenant_id == tenant_id, ApiToken.revoked_at.is_(None)
        )
        async with self.db.read() as session:
            return await keyset_page(
                session, query, ApiToken.id, token_record, limit=limit, cursor=cursor
            )

    async def revoke(self, token_id: str, *, tenant_id: str) -> str:
        """Revoke; return the token's hash (to drop it from the authenticator's cache)."""
        async with self.db.write() as session:
            row = await session.scalar(
                sa.select(ApiToken).where(
                    ApiToken.id == token_id,
                    ApiToken.tenant_id == tenant_id,
                    ApiToken.revoked_at.is_(None),
                )
            )
            if row is None:
                raise TokenNotFoundError(token_id)
            row.revoked_at = utcnow()
            return row.token_hash


OPERATOR_MINTED = frozenset({TokenScope.RUNTIME, TokenScope.OPERATOR})
"""Scopes only an operator may mint through the API."""


class TokenService:
    def __init__(self, repository: TokenRepository, authenticator: StoredTokens) -> None:
        self.repository = repository
        self._authenticator = authenticator

    async def create(
        self, principal: Principal, *, tenant_id: str, name: str, scope: TokenScope
    ) -> tuple[str, TokenRecord]:
        """A token in the caller's tenant; 403 for a scope the caller may not hand out."""
        if scope in OPERATOR_MINTED and not principal.can(Scope.OPERATOR):
            raise ForbiddenError(f"only an operator may mint {scope.value!r} tokens")
        return await self.repository.create(tenant_id=tenant_id, name=name, scope=scope)

    async def revoke(self, token_id: str, *, tenant_id: str) -> None:
        digest = await self.repository.revoke(token_id, tenant_id=tenant_id)
        self._authenticator.forget(digest)
