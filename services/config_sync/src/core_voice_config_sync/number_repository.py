"""Reads and writes of SIP number mappings (number on a trunk → campaign or agent).

A number lives on a trunk, and a trunk is assigned to one tenant by an operator: a
tenant maps numbers on its own trunks only, so it can never take another's number.
Setting or removing a mapping announces a `RoutingChanged` in its transaction.
"""

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core_voice_config_sync.db import Database
from core_voice_config_sync.errors import (
    InvalidConfigError,
    NumberNotFoundError,
    NumberTakenError,
    TrunkNotFoundError,
)
from core_voice_config_sync.models import Agent, Campaign, PhoneNumber, SipTrunk, utcnow
from core_voice_config_sync.outbox import routing_outbox_row
from core_voice_config_sync.persistence import keyset_page, record_of
from core_voice_config_sync.records import NumberRecord


def number_record(number: PhoneNumber) -> NumberRecord:
    return record_of(number, NumberRecord)


class NumberRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _trunk(
        self, session: AsyncSession, trunk_id: str, tenant_id: str, *, lock: bool = False
    ) -> SipTrunk:
        query = sa.select(SipTrunk).where(SipTrunk.id == trunk_id, SipTrunk.tenant_id == tenant_id)
        if lock:
            query = query.with_for_update()
        trunk = (await session.execute(query)).scalar_one_or_none()
        if trunk is None:
            raise TrunkNotFoundError(trunk_id)
        return trunk

    async def set_number(
        self,
        trunk_id: str,
        number: str,
        *,
        tenant_id: str,
        campaign_id: str | None,
        agent_id: str | None,
    ) -> NumberRecord:
        try:
            async with self.db.write() as session:
                await self._trunk(session, trunk_id, tenant_id, lock=True)
                if campaign_id is not None:
                    owner = await session.scalar(
                        sa.select(Campaign.id).where(
                            Campaign.id == campaign_id, Campaign.tenant_id == tenant_id
                        )
                    )
                    if owner is None:
                        raise InvalidConfigError("campaign_id", "no such campaign")
                if agent_id is not None:
                    owner = await session.scalar(
                        sa.select(Agent.id).where(
                            Agent.id == agent_id,
                            Agent.tenant_id == tenant_id,
                            Agent.deleted_at.is_(None),
                        )
                    )
                    if owner is None:
                        raise InvalidConfigError("agent_id", "no such agent")
                row = (
                    await session.execute(
                        sa.select(PhoneNumber)
                        .where(PhoneNumber.trunk_id == trunk_id, PhoneNumber.number == number)
                        .with_for_update()
                    )
                ).scalar_one_or_none()
                now = utcnow()
                changed = routing_outbox_row(tenant_id, number=number, trunk_id=trunk_id)
                if row is None:
                    row = PhoneNumber(
                        trunk_id=trunk_id,
                        number=number,
                        tenant_id=tenant_id,
                        campaign_id=campaign_id,
                        agent_id=agent_id,
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(row)
                    session.add(changed)
                elif (row.campaign_id, row.agent_id) != (campaign_id, agent_id):
                    row.campaign_id, row.agent_id, row.updated_at = campaign_id, agent_id, now
                    row.tenant_id = tenant_id
                    session.add(changed)
                await session.flush()
                return number_record(row)
        except IntegrityError:
            raise NumberTakenError(number) from None  # a concurrent first mapping won

    async def number(self, trunk_id: str, number: str, *, tenant_id: str) -> NumberRecord:
        query = sa.select(PhoneNumber).where(
            PhoneNumber.trunk_id == trunk_id,
            PhoneNumber.number == number,
            PhoneNumber.tenant_id == tenant_id,
        )
        async with self.db.read() as session:
            await self._trunk(session, trunk_id, tenant_id)
            row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NumberNotFoundError(number)
        return number_record(row)

    async def numbers(
        self, trunk_id: str, *, tenant_id: str, limit: int, cursor: str | None
    ) -> tuple[list[NumberRecord], str | None]:
        query = sa.select(PhoneNumber).where(
            PhoneNumber.trunk_id == trunk_id, PhoneNumber.tenant_id == tenant_id
        )
        async with self.db.read() as session:
            await self._trunk(session, trunk_id, tenant_id)
            return await keyset_page(
                session, query, PhoneNumber.number, number_record, limit=limit, cursor=cursor
            )

    async def delete_number(self, trunk_id: str, number: str, *, tenant_id: str) -> None:
        async with self.db.write() as session:
            await self._trunk(session, trunk_id, tenant_id)
            result = await session.execute(
                sa.delete(PhoneNumber).where(
                    PhoneNumber.trunk_id == trunk_id,
                    PhoneNumber.number == number,
                    PhoneNumber.tenant_id == tenant_id,
                )
            )
            if int(getattr(result, "rowcount", 0) or 0) != 1:
                raise NumberNotFoundError(number)
            session.add(routing_outbox_row(tenant_id, number=number, trunk_id=trunk_id))
