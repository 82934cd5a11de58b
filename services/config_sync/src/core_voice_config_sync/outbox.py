"""The outbox: every committed change's event, written in the change's transaction.

An edit and its announcement are never separated: the relay (`relay`) publishes the
rows to JetStream in order and marks them; `ConfigChanged` announces a new version,
`RoutingChanged` a routing change that gives no agent a new version.
"""

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from core_voice_config_sync.db import Database
from core_voice_config_sync.models import OutboxRow, utcnow
from core_voice_contracts import codec, subjects
from core_voice_contracts.events import ChangeKind, ConfigChanged, ConfigStreamEvent, RoutingChanged


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An outbox row not yet acknowledged by JetStream."""

    id: int
    subject: str
    payload: bytes
    msg_id: str


def outbox_row(
    agent_id: str,
    tenant_id: str,
    version: int,
    kind: ChangeKind,
    campaign_id: str | None = None,
) -> OutboxRow:
    """The event row; its ``msg_id`` is the JetStream de-duplication id for good.

    It is a random id minted with the row rather than the row's integer key, so that a
    fresh database (or a second deployment on the same NATS) can never reuse the id of a
    recently published event and have its own event dropped as a duplicate.
    """
    event = ConfigChanged(
        agent_id=agent_id, tenant_id=tenant_id, version=version, kind=kind, campaign_id=campaign_id
    )
    return _outbox(subjects.config_changed(agent_id), event)


def routing_outbox_row(
    tenant_id: str,
    *,
    agent_id: str | None = None,
    campaign_id: str | None = None,
    number: str | None = None,
    trunk_id: str | None = None,
) -> OutboxRow:
    """The event of a routing change that gives no agent a new version (a version's
    `ConfigChanged` already tells every replica to drop its routing answers)."""
    event = RoutingChanged(
        tenant_id=tenant_id,
        agent_id=agent_id,
        campaign_id=campaign_id,
        number=number,
        trunk_id=trunk_id,
    )
    return _outbox(subjects.routing_changed(tenant_id), event)


def _outbox(subject: str, event: ConfigStreamEvent) -> OutboxRow:
    return OutboxRow(
        subject=subject, payload=codec.encode(event), msg_id=f"outbox-{uuid.uuid4().hex}"
    )


class OutboxRepository:
    """The relay's side of the outbox: read pending rows, mark them, prune old ones."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def pending_events(self, limit: int = 100) -> list[PendingEvent]:
        """Unpublished events, oldest first (the relay must keep this order)."""
        query = (
            sa.select(OutboxRow.id, OutboxRow.subject, OutboxRow.payload, OutboxRow.msg_id)
            .where(OutboxRow.published_at.is_(None))
            .order_by(OutboxRow.id)
            .limit(limit)
        )
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
        return [PendingEvent(id=r[0], subject=r[1], payload=r[2], msg_id=r[3]) for r in rows]

    async def mark_published(self, ids: Sequence[int], at: dt.datetime | None = None) -> None:
        if ids:
            await self._set_published(ids, at or utcnow())

    async def mark_unpublished(self, ids: Sequence[int]) -> None:
        """Put events back in the queue (re-announce them; JetStream drops duplicates)."""
        await self._set_published(ids, None)

    async def _set_published(self, ids: Sequence[int], at: dt.datetime | None) -> None:
        async with self.db.write() as session:
            await session.execute(
                sa.update(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)))
                .values(published_at=at)
                .execution_options(synchronize_session=False)
            )

    async def prune_published(self, older_than: dt.datetime) -> int:
        async with self.db.write() as session:
            result = await session.execute(
                sa.delete(OutboxRow).where(OutboxRow.published_at < older_than)
            )
        return int(getattr(result, "rowcount", 0) or 0)
