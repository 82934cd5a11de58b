"""API tokens, campaigns, campaign links, SIP numbers; routing fields on agents; sealed
provider keys and a note on config versions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_json = sa.JSON().with_variant(JSONB(), "postgresql")


def _ts(name: str, *, nullable: bool = False) -> "sa.Column[Any]":
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str, *, fk: str | None = None, nullable: bool = False, pk: bool = False) -> Any:
    args: list[Any] = [sa.ForeignKey(fk)] if fk else []
    return sa.Column(name, sa.String(64), *args, nullable=nullable, primary_key=pk)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        _id("id", pk=True),
        _id("tenant_id", fk="tenants.id", nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("last4", sa.String(4), nullable=False),
        _ts("created_at"),
        _ts("revoked_at", nullable=True),
    )
    op.create_index("ix_api_tokens_tenant_id", "api_tokens", ["tenant_id"])

    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("legacy_agent_name", sa.String(128), nullable=True))
        batch.add_column(
            sa.Column("legacy_percent", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(_ts("deleted_at", nullable=True))

    with op.batch_alter_table("agent_configs") as batch:
        batch.add_column(sa.Column("note", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("keys_sealed", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("keys_key_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("keys_hint", _json, nullable=False, server_default="{}"))
    op.create_index("ix_agent_configs_keys_key_id", "agent_configs", ["keys_key_id"])

    op.create_table(
        "campaigns",
        _id("id", pk=True),
        _id("tenant_id", fk="tenants.id"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index("ix_campaigns_tenant_id", "campaigns", ["tenant_id"])

    op.create_table(
        "campaign_agents",
        _id("campaign_id", fk="campaigns.id", pk=True),
        _id("agent_id", fk="agents.id", pk=True),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("overrides", _json, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index("ix_campaign_agents_agent_id", "campaign_agents", ["agent_id"])

    op.create_table(
        "phone_numbers",
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
    op.create_index("ix_phone_numbers_tenant_id", "phone_numbers", ["tenant_id"])
    op.create_index("ix_phone_numbers_campaign_id", "phone_numbers", ["campaign_id"])
    op.create_index("ix_phone_numbers_agent_id", "phone_numbers", ["agent_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_phone_numbers_agent_id", "phone_numbers"),
        ("ix_phone_numbers_campaign_id", "phone_numbers"),
        ("ix_phone_numbers_tenant_id", "phone_numbers"),
    ):
        op.drop_index(index, table_name=table)
    op.drop_table("phone_numbers")
    op.drop_index("ix_campaign_agents_agent_id", table_name="campaign_agents")
    op.drop_table("campaign_agents")
    op.drop_index("ix_campaigns_tenant_id", table_name="campaigns")
    op.drop_table("campaigns")
    op.drop_index("ix_agent_configs_keys_key_id", table_name="agent_configs")
    with op.batch_alter_table("agent_configs") as batch:
        for column in ("keys_hint", "keys_key_id", "keys_sealed", "note"):
            batch.drop_column(column)
    with op.batch_alter_table("agents") as batch:
        for column in ("deleted_at", "legacy_percent", "legacy_agent_name"):
            batch.drop_column(column)
    op.drop_index("ix_api_tokens_tenant_id", table_name="api_tokens")
    op.drop_table("api_tokens")
