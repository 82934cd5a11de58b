"""What only an operator decides, because it spans tenants: which SIP trunks carry a
tenant's calls, and which legacy LiveKit workers a tenant's agents may send rooms to.

Tenants cannot assign these to themselves: a number routes only on its trunk, and a
trunk is assigned here, so no tenant can claim another's number; a legacy worker name
is allowed here, so no tenant can send its callers to another's worker. Each change
announces a `RoutingChanged` and is followed by ``on_commit`` (routing answers cleared).
"""

from collections.abc import Callable

import sqlalchemy as sa

from core_voice_config_sync.auth import Principal, Scope
from core_voice_config_sync.db import Database
from core_voice_config_sync.errors import (
    InUseError,
    InvalidConfigError,
    TenantNotFoundError,
    TrunkNotFoundError,
)
from core_voice_config_sync.models import PhoneNumber, SipTrunk, Tenant, TenantLegacyAgent, utcnow
from core_voice_config_sync.outbox import routing_outbox_row
from core_voice_config_sync.persistence import keyset_page, legacy_names, record_of
from core_voice_config_sync.records import TrunkRecord
from core_voice_contracts.admin_api import LegacyAgentsSet, LegacyAgentsView, TrunkPage, TrunkView
from core_voice_contracts.ids import is_valid_id


def trunk_record(row: SipTrunk) -> TrunkRecord:
    return record_of(row, TrunkRecord)


class OperatorRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def set_trunk(self, trunk_id: str, tenant_id: str) -> TrunkRecord:
        """Assign the trunk; moving it to another tenant is refused while its tenant has
        numbers on it (``delete_trunk`` removes them)."""
        async with self.db.write() as session:
            if await session.get(Tenant, tenant_id) is None:
                raise InvalidConfigError("tenant_id", "no such tenant")
            row = (
                await session.execute(
                    sa.select(SipTrunk).where(SipTrunk.id == trunk_id).with_for_update()
                )
            ).scalar_one_or_none()
            now = utcnow()
            if row is None:
                row = SipTrunk(id=trunk_id, tenant_id=tenant_id, created_at=now, updated_at=now)
                session.add(row)
                session.add(routing_outbox_row(tenant_id, trunk_id=trunk_id))
            elif row.tenant_id != tenant_id:
                mapped = await session.scalar(
                    sa.select(sa.func.count()).where(PhoneNumber.trunk_id == trunk_id)
                )
                if mapped:
                    raise InUseError(
                        f"trunk {trunk_id!r} still has {mapped} number(s) of tenant "
                        f"{row.tenant_id!r}; DELETE /api/v1/trunks/{trunk_id} first"
                    )
                session.add(routing_outbox_row(row.tenant_id, trunk_id=trunk_id))
                row.tenant_id, row.updated_at = tenant_id, now
                session.add(routing_outbox_row(tenant_id, trunk_id=trunk_id))
            await session.flush()
            return trunk_record(row)

    async def delete_trunk(self, trunk_id: str) -> None:
        """Unassign the trunk and remove every number mapped on it."""
        async with self.db.write() as session:
            row = (
                await session.execute(
                    sa.select(SipTrunk).where(SipTrunk.id == trunk_id).with_for_update()
                )
            ).scalar_one_or_none()
            if row is None:
                raise TrunkNotFoundError(trunk_id)
            await session.execute(sa.delete(PhoneNumber).where(PhoneNumber.trunk_id == trunk_id))
            await session.delete(row)
            session.add(routing_outbox_row(row.tenant_id, trunk_id=trunk_id))

    async def trunk(self, trunk_id: str, *, tenant_id: str | None) -> TrunkRecord:
        query = sa.select(SipTrunk).where(SipTrunk.id == trunk_id)
        if tenant_id is not None:
            query = query.where(SipTrunk.tenant_id == tenant_id)
        async with self.db.read() as session:
            row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise TrunkNotFoundError(trunk_id)
        return trunk_record(row)

    async def trunks(
        self, *, tenant_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[TrunkRecord], str | None]:
        query = sa.select(SipTrunk)
        if tenant_id is not None:
            query = query.where(SipTrunk.tenant_id == tenant_id)
        async with self.db.read() as session:
            return await keyset_page(
                session, query, SipTrunk.id, trunk_record, limit=limit, cursor=cursor
            )

    async def legacy_names(self, tenant_id: str) -> list[str]:
        async with self.db.read() as session:
            if await session.get(Tenant, tenant_id) is None:
                raise TenantNotFoundError(tenant_id)
            return await legacy_names(session, tenant_id)

    async def set_legacy_names(self, tenant_id: str, names: list[str]) -> list[str]:
        """Replace the tenant's list. An agent whose name is taken off keeps it stored,
        but routing sends its rooms to the pool from then on."""
        wanted = sorted(set(names))
        async with self.db.write() as session:
            tenant = (
                await session.execute(
                    sa.select(Tenant).where(Tenant.id == tenant_id).with_for_update()
                )
            ).scalar_one_or_none()
            if tenant is None:
                raise TenantNotFoundError(tenant_id)
            if await legacy_names(session, tenant_id) != wanted:
                await session.execute(
                    sa.delete(TenantLegacyAgent).where(TenantLegacyAgent.tenant_id == tenant_id)
                )
                session.add_all(TenantLegacyAgent(tenant_id=tenant_id, name=n) for n in wanted)
                session.add(routing_outbox_row(tenant_id))
        return wanted


class OperatorService:
    """The operator endpoints' logic; reads of trunks are open to the trunk's tenant."""

    def __init__(self, repository: OperatorRepository, *, on_commit: Callable[[], None]) -> None:
        self._repo = repository
        self._on_commit = on_commit

    @staticmethod
    def _scope(principal: Principal) -> str | None:
        """Operators see every tenant's trunks; anyone else only their tenant's."""
        return None if principal.can(Scope.OPERATOR) else principal.tenant_id or ""

    async def set_trunk(self, trunk_id: str, tenant_id: str) -> TrunkView:
        if not is_valid_id(trunk_id):
            raise InvalidConfigError("trunk_id", "use 1-64 of [A-Za-z0-9_-], starting alnum")
        record = await self._repo.set_trunk(trunk_id, tenant_id)
        self._on_commit()
        return record.view()

    async def delete_trunk(self, trunk_id: str) -> None:
        if not is_valid_id(trunk_id):
            raise TrunkNotFoundError(trunk_id)
        await self._repo.delete_trunk(trunk_id)
        self._on_commit()

    async def trunk(self, principal: Principal, trunk_id: str) -> TrunkView:
        if not is_valid_id(trunk_id):
            raise TrunkNotFoundError(trunk_id)
        return (await self._repo.trunk(trunk_id, tenant_id=self._scope(principal))).view()

    async def trunks(self, principal: Principal, *, limit: int, cursor: str | None) -> TrunkPage:
        records, next_cursor = await self._repo.trunks(
            tenant_id=self._scope(principal), limit=limit, cursor=cursor
        )
        return TrunkPage(items=[r.view() for r in records], next_cursor=next_cursor)

    async def legacy_names(self, tenant_id: str) -> LegacyAgentsView:
        if not is_valid_id(tenant_id):
            raise TenantNotFoundError(tenant_id)
        return LegacyAgentsView(tenant_id=tenant_id, names=await self._repo.legacy_names(tenant_id))

    async def set_legacy_names(self, tenant_id: str, data: LegacyAgentsSet) -> LegacyAgentsView:
        if not is_valid_id(tenant_id):
            raise TenantNotFoundError(tenant_id)
        names = await self._repo.set_legacy_names(tenant_id, data.names)
        self._on_commit()
        return LegacyAgentsView(tenant_id=tenant_id, names=names)
