"""What the runtime cache holds, read from the database: an agent at its current
version with its provider keys opened, and its campaign links.

The cache reads through `RuntimeEntries.load`; the agent service stores what it just
committed through `RuntimeEntries.of`. Both go one way, down to the repository.
"""

from core_voice_config_sync.agent_repository import AgentRepository
from core_voice_config_sync.cache import CacheEntry
from core_voice_config_sync.crypto import KeyRing
from core_voice_config_sync.errors import InvalidConfigError
from core_voice_config_sync.records import AgentRecord, KeysState, LinkRecord
from core_voice_contracts.ids import is_valid_id
from core_voice_contracts.runtime_config import ProviderKeys

NO_MASTER_KEY = "provider keys cannot be stored: no encryption key is configured"


class RuntimeEntries:
    def __init__(self, repository: AgentRepository, keyring: KeyRing | None) -> None:
        self._repo = repository
        self._keyring = keyring

    def open_keys(self, agent_id: str, keys: KeysState) -> ProviderKeys:
        if keys.sealed is None:
            return ProviderKeys()
        if self._keyring is None:
            raise InvalidConfigError("keys", NO_MASTER_KEY)
        return ProviderKeys(values=self._keyring.open(keys.sealed, agent_id=agent_id))

    def of(self, record: AgentRecord, links: list[LinkRecord]) -> CacheEntry:
        keys = self.open_keys(record.id, KeysState(sealed=record.sealed, hints=record.key_hints))
        return CacheEntry(
            record=record,
            base=record.runtime(keys),
            links={link.campaign_id: link.overrides for link in links},
        )

    async def load(self, agent_id: str) -> CacheEntry | None:
        """The cache's loader: one read of the agent and its links."""
        if not is_valid_id(agent_id):
            return None
        found = await self._repo.with_links(agent_id)
        return None if found is None else self.of(*found)
