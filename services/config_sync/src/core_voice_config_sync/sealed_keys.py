"""Provider keys at rest, by master key: what the startup check and ``reencrypt`` read.

Re-sealing a version under another master key leaves the keys inside unchanged, so it
is not a new version and announces nothing.
"""

import sqlalchemy as sa

from core_voice_config_sync.crypto import Sealed
from core_voice_config_sync.db import Database
from core_voice_config_sync.models import AgentConfig


class SealedKeyRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def sealed_not_under(
        self, key_id: str, limit: int, *, after: tuple[str, int] | None = None
    ) -> list[tuple[str, int, Sealed]]:
        """Versions whose keys are sealed under another master key than ``key_id``, in
        (agent, version) order, from just past ``after``: a caller pages on past rows it
        could not re-seal instead of reading them again."""
        query = (
            sa.select(
                AgentConfig.agent_id,
                AgentConfig.version,
                AgentConfig.keys_key_id,
                AgentConfig.keys_sealed,
            )
            .where(AgentConfig.keys_sealed.is_not(None), AgentConfig.keys_key_id != key_id)
            .order_by(AgentConfig.agent_id, AgentConfig.version)
            .limit(limit)
        )
        if after is not None:
            agent_id, version = after
            query = query.where(
                sa.or_(
                    AgentConfig.agent_id > agent_id,
                    sa.and_(AgentConfig.agent_id == agent_id, AgentConfig.version > version),
                )
            )
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
        return [(a, v, Sealed(key_id=str(k), blob=b or b"")) for a, v, k, b in rows]

    async def replace_sealed(self, agent_id: str, version: int, old: Sealed, new: Sealed) -> bool:
        """Swap the sealed bytes of one version, only if they are still ``old``."""
        async with self.db.write() as session:
            result = await session.execute(
                sa.update(AgentConfig)
                .where(
                    AgentConfig.agent_id == agent_id,
                    AgentConfig.version == version,
                    AgentConfig.keys_key_id == old.key_id,
                )
                .values(keys_sealed=new.blob, keys_key_id=new.key_id)
                .execution_options(synchronize_session=False)
            )
        return int(getattr(result, "rowcount", 0) or 0) == 1

    async def sealed_key_ids(self) -> dict[str, int]:
        """Master key id → how many versions it seals (for startup checks and `reencrypt`)."""
        query = (
            sa.select(AgentConfig.keys_key_id, sa.func.count())
            .where(AgentConfig.keys_sealed.is_not(None))
            .group_by(AgentConfig.keys_key_id)
        )
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
        return {str(k): int(n) for k, n in rows}
