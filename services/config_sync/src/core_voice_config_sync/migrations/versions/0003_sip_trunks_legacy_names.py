"""SIP trunks assigned to tenants, numbers keyed by trunk and number, and each tenant's
allowed legacy worker names.

Existing data: numbers mapped before this revision had no trunk; each tenant's are moved
onto a placeholder trunk ``unassigned-<hash>`` that no call arrives on, so they stop
routing until an operator assigns the real trunk and the tenant maps them on it (a
number claimed by the wrong tenant must not keep routing). Legacy names agents already
use are put on their tenant's list, so migrations in progress keep working; review them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NUMBER_INDEXES = ("tenant_id", "campaign_id", "agent_id")


def _ts(name: str, *, nullable: bool = False) -> "sa.Column[Any]":
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str, *, fk: str | None = None, nullable: bool = False, pk: bool = False) -> Any:
    args: list[Any] = [sa.ForeignKey(fk)] if fk else []
    return sa.Column(name, sa.String(64), *args, nullable=nullable, primary_key=pk)


def placeholder_trunk(tenant_id: str) -> str:
    return "unassigned-" + hashlib.sha256(tenant_id.encode()).hexdigest()[:12]


def _numbers_table(*, with_trunk: bool) -> None:
    columns: list[Any] = []
    if with_trunk:
        columns.append(_id("trunk_id", fk="sip_trunks.id", pk=True))
    op.create_table(
        "phone_numbers",
        *columns,
        sa.Column("number", sa.String(16), primary_key=True),
        _id("tenant_id", fk="tenants.id"),
        _id("campaign_id", fk="campaigns.id", nullable=True),
        _id("agent_id", fk="agents.id", nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint(
            "(campaign_id IS NULL) <> (agent_id IS NULL)", name="ck_phone_numbers_one_target"
        ),
    )
    for column in _NUMBER_INDEXES:
        op.create_index(f"ix_phone_numbers_{column}", "phone_numbers", [column])


def _drop_numbers_table() -> list[dict[str, Any]]:
    """Drop ``phone_numbers``, returning its rows (few: one per mapped number)."""
    rows = [
        dict(r) for r in op.get_bind().execute(sa.text("SELECT * FROM phone_numbers")).mappings()
    ]
    for column in _NUMBER_INDEXES:
        op.drop_index(f"ix_phone_numbers_{column}", table_name="phone_numbers")
    op.drop_table("phone_numbers")
    return rows


def upgrade() -> None:
    trunks = op.create_table(
        "sip_trunks",
        _id("id", pk=True),
        _id("tenant_id", fk="tenants.id"),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index("ix_sip_trunks_tenant_id", "sip_trunks", ["tenant_id"])
    legacy = op.create_table(
        "tenant_legacy_agents",
        _id("tenant_id", fk="tenants.id", pk=True),
        sa.Column("name", sa.String(128), primary_key=True),
    )
    bind = op.get_bind()
    in_use = bind.execute(
        sa.text(
            "SELECT DISTINCT tenant_id, legacy_agent_name FROM agents "
            "WHERE legacy_agent_name IS NOT NULL AND deleted_at IS NULL"
        )
    ).all()
    if in_use:
        op.bulk_insert(legacy, [{"tenant_id": t, "name": n} for t, n in in_use])

    rows = _drop_numbers_table()
    _numbers_table(with_trunk=True)
    if rows:
        now = dt.datetime.now(dt.UTC)
        tenants = sorted({r["tenant_id"] for r in rows})
        op.bulk_insert(
            trunks,
            [
                {"id": placeholder_trunk(t), "tenant_id": t, "created_at": now, "updated_at": now}
                for t in tenants
            ],
        )
        numbers = sa.table("phone_numbers", *(sa.column(c) for c in ("trunk_id", *rows[0].keys())))
        op.bulk_insert(
            numbers, [{**r, "trunk_id": placeholder_trunk(r["tenant_id"])} for r in rows]
        )


def downgrade() -> None:
    """Numbers go back to one row per number (the oldest mapping of a number wins)."""
    rows = _drop_numbers_table()
    _numbers_table(with_trunk=False)
    kept: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["created_at"], r["trunk_id"])):
        row.pop("trunk_id")
        kept.setdefault(row["number"], row)
    if kept:
        first = next(iter(kept.values()))
        numbers = sa.table("phone_numbers", *(sa.column(c) for c in first))
        op.bulk_insert(numbers, list(kept.values()))
    op.drop_table("tenant_legacy_agents")
    op.drop_index("ix_sip_trunks_tenant_id", table_name="sip_trunks")
    op.drop_table("sip_trunks")
