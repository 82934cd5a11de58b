"""The config_sync tables, as SQLAlchemy 2 declarative models.

Kept portable between SQLite (embedded default) and PostgreSQL: no dialect-only types
except JSONB as a PostgreSQL variant of JSON. The schema itself is owned by the Alembic
migrations in ``migrations/``; these models must match them.
"""

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ID_LENGTH = 64


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A bearer token, stored as its SHA-256 (tokens are 256-bit random, so a fast hash
    is enough: there is nothing to brute-force). ``tenant_id`` NULL = every tenant
    (only for ``runtime`` tokens: the shared worker pool serves all tenants)."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("tenants.id"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(sa.String(200))
    scope: Mapped[str] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    last4: Mapped[str] = mapped_column(sa.String(4))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Agent(Base):
    """An agent and a pointer to its current config version (the mutable part).

    ``status`` and the ``legacy_*`` fields are routing attributes: they change in place,
    not by a new version. A deleted agent keeps its row (``deleted_at``) so its id, and
    with it the version sequence on the bus, is never reused.
    """

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("tenants.id"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    current_version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    legacy_agent_name: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    legacy_percent: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AgentConfig(Base):
    """One immutable config version of an agent; edits add rows, never change them.

    Provider keys are part of the version, sealed with AES-GCM (``keys_sealed``, under
    the master key ``keys_key_id``); ``keys_hint`` holds only provider → last 4 chars.
    Re-encrypting under a new master key rewrites the sealed bytes, never the keys.
    """

    __tablename__ = "agent_configs"

    agent_id: Mapped[str] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("agents.id"), primary_key=True
    )
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    instructions: Mapped[str] = mapped_column(sa.Text)
    greeting: Mapped[str] = mapped_column(sa.Text)
    llm: Mapped[dict[str, Any]] = mapped_column(JSONType)
    stt: Mapped[dict[str, Any]] = mapped_column(JSONType)
    tts: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    author: Mapped[str] = mapped_column(sa.String(200))
    note: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    keys_sealed: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)
    keys_key_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, index=True)
    keys_hint: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict, server_default="{}")


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("tenants.id"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CampaignAgent(Base):
    """An agent in a campaign: its routing weight and the campaign's overrides."""

    __tablename__ = "campaign_agents"

    campaign_id: Mapped[str] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("campaigns.id"), primary_key=True
    )
    agent_id: Mapped[str] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("agents.id"), primary_key=True, index=True
    )
    weight: Mapped[int] = mapped_column(sa.Integer)
    overrides: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SipTrunk(Base):
    """A LiveKit SIP inbound trunk (``sip.trunkID``) and the tenant whose numbers it
    carries. Assigned by an operator only: owning a trunk is what lets a tenant route
    calls to a number, so no tenant can claim another's number."""

    __tablename__ = "sip_trunks"

    id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("tenants.id"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TenantLegacyAgent(Base):
    """A LiveKit agent name the tenant's agents may send rooms to (``legacy_agent_name``),
    set by an operator: without the list, any tenant could route its callers to another
    tenant's legacy worker."""

    __tablename__ = "tenant_legacy_agents"

    tenant_id: Mapped[str] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("tenants.id"), primary_key=True
    )
    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)


class PhoneNumber(Base):
    """A dialed number (E.164) on a SIP trunk, routed to a campaign or an agent.

    Keyed by trunk and number together, as a call arrives: the same number may come in
    on two trunks (two carriers, two tenants). The tenant is the trunk's.
    """

    __tablename__ = "phone_numbers"
    __table_args__ = (
        sa.CheckConstraint(
            "(campaign_id IS NULL) <> (agent_id IS NULL)", name="ck_phone_numbers_one_target"
        ),
    )

    trunk_id: Mapped[str] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("sip_trunks.id"), primary_key=True
    )
    number: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("tenants.id"), index=True
    )
    campaign_id: Mapped[str | None] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("campaigns.id"), nullable=True, index=True
    )
    agent_id: Mapped[str | None] = mapped_column(
        sa.String(ID_LENGTH), sa.ForeignKey("agents.id"), nullable=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxRow(Base):
    """An event committed with the change it announces, published by the relay later.

    ``msg_id`` is the JetStream de-duplication id; it is random rather than derived from
    ``id`` so that a fresh database (or a second deployment on the same NATS) can never
    reuse the id of a recently published event and have its own event dropped.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_pending", "published_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(sa.String(255))
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)
    msg_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
