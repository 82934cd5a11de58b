"""Agent operations as the API and the NATS read path see them.

Sits between the transports and the repository: applies the caller's tenant, validates
against the provider catalogue (the agent's own config and its merge with every campaign
it is in, `validator`), seals provider keys, and after each commit refreshes the cache and
calls ``on_commit``, which clears the routing answers (a patch may disable the agent or
move its legacy share) and wakes the outbox relay (the change is on the bus within ms).

An edit goes one way through: this service → `AgentRepository.edit`, which locks the
agent, runs the edit's pure ``decide`` function on what it read and returns `Edited`
(the record and the links it was checked against) → the cache. The cache reads a miss
through `RuntimeEntries`, down to the repository, never back through this service.
"""

import logging
from collections.abc import Callable

import msgspec

from core_voice_config_sync.agent_repository import AgentRepository, Edited
from core_voice_config_sync.auth import Principal
from core_voice_config_sync.cache import RuntimeConfigCache
from core_voice_config_sync.changes import Change
from core_voice_config_sync.crypto import KeyRing
from core_voice_config_sync.errors import (
    AgentNotFoundError,
    ConfigSyncError,
    DatabaseUnavailableError,
    EmptyPatchError,
    ForbiddenError,
    InvalidConfigError,
    KeysUnavailableError,
    StaleReadError,
    VersionNotFoundError,
)
from core_voice_config_sync.persistence import new_id
from core_voice_config_sync.records import AgentRecord, ConfigFields, KeysState, LinkRecord
from core_voice_config_sync.runtime_entries import NO_MASTER_KEY, RuntimeEntries
from core_voice_config_sync.validation import (
    Problems,
    key_name_problems,
)
from core_voice_config_sync.validator import Validator, config_specs
from core_voice_contracts.admin_api import (
    AgentCreate,
    AgentPage,
    AgentPatch,
    AgentRollback,
    AgentStatus,
    AgentVersionPage,
    AgentVersionView,
    AgentView,
)
from core_voice_contracts.events import (
    ConfigFound,
    ConfigGetError,
    ConfigGetReply,
    ConfigGetRequest,
    ConfigNotFound,
    RejectReason,
)
from core_voice_contracts.ids import is_valid_id
from core_voice_contracts.runtime_config import RuntimeConfig

log = logging.getLogger(__name__)


class AgentService:
    def __init__(
        self,
        repository: AgentRepository,
        cache: RuntimeConfigCache,
        entries: RuntimeEntries,
        *,
        keyring: KeyRing | None,
        validator: Validator,
        on_commit: Callable[[], None],
    ) -> None:
        self._repo = repository
        self._cache = cache
        self._entries = entries
        self._keyring = keyring
        self.validator = validator
        self._on_commit = on_commit

    # --- keys ----------------------------------------------------------------------------

    def _seal(self, agent_id: str, keys: dict[str, str]) -> KeysState:
        if not keys:
            return KeysState()
        if self._keyring is None:
            raise InvalidConfigError("keys", NO_MASTER_KEY)
        sealed = self._keyring.seal(keys, agent_id=agent_id)
        return KeysState(sealed=sealed, hints={p: k[-4:] for p, k in keys.items()})

    def _patched_keys(
        self, agent_id: str, current: KeysState, changes: dict[str, str | None]
    ) -> KeysState:
        problems = key_name_problems(changes)
        if problems:
            raise InvalidConfigError.of(problems)
        opened = dict(self._entries.open_keys(agent_id, current).values)
        updated = dict(opened)
        for provider, key in changes.items():
            if key is None:
                updated.pop(provider, None)
            else:
                updated[provider] = key
        return current if updated == opened else self._seal(agent_id, updated)

    # --- cache ---------------------------------------------------------------------------

    def _committed(self, record: AgentRecord, links: list[LinkRecord]) -> None:
        self._on_commit()
        try:
            self._cache.put(self._entries.of(record, links))
        except ConfigSyncError:  # keys it cannot open: the next read reports it
            self._cache.forget(record.id)

    # --- admin operations ----------------------------------------------------------------

    @staticmethod
    def tenant_of(principal: Principal) -> str:
        if principal.tenant_id is None:
            raise ForbiddenError("this token belongs to no tenant")
        return principal.tenant_id

    async def create(self, principal: Principal, data: AgentCreate) -> AgentView:
        tenant_id = self.tenant_of(principal)
        agent_id = data.id or new_id("agent")
        fields = ConfigFields(
            name=data.name,
            instructions=data.instructions,
            greeting=data.greeting,
            llm=data.llm.spec(),
            stt=data.stt.spec(),
            tts=data.tts.spec(),
        )
        problems = key_name_problems(data.keys) + self.validator.config_problems(
            fields, data.keys.keys()
        )
        legacy = (data.legacy_agent_name, data.legacy_percent)
        problems += _legacy_problems(*legacy)
        if problems:
            raise InvalidConfigError.of(problems)
        await self.validator.check_urls({"llm": data.llm, "stt": data.stt, "tts": data.tts})
        keys = self._seal(agent_id, dict(data.keys))
        record = await self._repo.create(
            tenant_id,
            agent_id,
            fields,
            keys,
            status=data.status,
            legacy=legacy,
            author=principal.name,
        )
        self._committed(record, [])
        return record.view()

    async def get(self, principal: Principal, agent_id: str) -> AgentView:
        """From the database; from the cache while the database is unreachable."""
        tenant_id = self.tenant_of(principal)
        if not is_valid_id(agent_id):
            raise AgentNotFoundError(agent_id)
        try:
            record = await self._repo.get(agent_id, tenant_id=tenant_id)
        except DatabaseUnavailableError:
            entry = self._cache.peek(agent_id)
            if entry is None:
                raise
            record = entry.record
        if record is None or record.tenant_id != tenant_id:
            raise AgentNotFoundError(agent_id)
        return record.view()

    async def page(self, principal: Principal, *, limit: int, cursor: str | None) -> AgentPage:
        records, next_cursor = await self._repo.page(
            self.tenant_of(principal), limit=limit, cursor=cursor
        )
        return AgentPage(items=[r.view() for r in records], next_cursor=next_cursor)

    async def patch(self, principal: Principal, agent_id: str, data: AgentPatch) -> AgentView:
        """A new config version from ``data`` if it changes the config; routing fields
        (status, legacy) change in place. Equal values are a no-op that keeps the version."""
        tenant_id = self.tenant_of(principal)
        if not is_valid_id(agent_id):
            raise AgentNotFoundError(agent_id)
        if data == AgentPatch():
            raise EmptyPatchError
        await self.validator.check_urls({"llm": data.llm, "stt": data.stt, "tts": data.tts})

        def decide(current: AgentRecord, links: list[LinkRecord]) -> Change:
            c = current.config
            fields = ConfigFields(
                name=c.name if data.name is None else data.name,
                instructions=c.instructions if data.instructions is None else data.instructions,
                greeting=c.greeting if data.greeting is None else data.greeting,
                llm=c.llm if data.llm is None else data.llm.spec(),
                stt=c.stt if data.stt is None else data.stt.spec(),
                tts=c.tts if data.tts is None else data.tts.spec(),
            )
            state = KeysState(sealed=current.sealed, hints=current.key_hints)
            keys = state if data.keys is None else self._patched_keys(current.id, state, data.keys)
            legacy_name = (
                current.legacy_agent_name
                if isinstance(data.legacy_agent_name, msgspec.UnsetType)
                else data.legacy_agent_name
            )
            legacy_percent = (
                current.legacy_percent if data.legacy_percent is None else data.legacy_percent
            )
            problems = _legacy_problems(legacy_name, legacy_percent)
            if problems:
                raise InvalidConfigError.of(problems)
            if fields != c or keys != state:
                self.validator.check_agent(fields, keys.hints.keys(), links)
            return Change(
                config=fields,
                keys=keys,
                status=None if data.status is None else data.status.value,
                legacy=(legacy_name, legacy_percent),
            )

        return self._edited(
            await self._repo.edit(agent_id, decide, tenant_id=tenant_id, author=principal.name)
        )

    async def rollback(self, principal: Principal, agent_id: str, data: AgentRollback) -> AgentView:
        """A new version equal to ``data.version`` (keys too if ``restore_keys``)."""
        tenant_id = self.tenant_of(principal)
        if not is_valid_id(agent_id):
            raise AgentNotFoundError(agent_id)
        target = await self._repo.version(agent_id, data.version, tenant_id=tenant_id)
        await self.validator.check_urls(config_specs(target.config))

        def decide(current: AgentRecord, links: list[LinkRecord]) -> Change:
            keys = (
                KeysState(sealed=target.sealed, hints=target.key_hints)
                if data.restore_keys
                else KeysState(sealed=current.sealed, hints=current.key_hints)
            )
            self.validator.check_agent(target.config, keys.hints.keys(), links)
            return Change(config=target.config, keys=keys, note=f"rollback to {data.version}")

        return self._edited(
            await self._repo.edit(agent_id, decide, tenant_id=tenant_id, author=principal.name)
        )

    def _edited(self, edited: Edited) -> AgentView:
        if edited.changed:
            self._committed(edited.record, edited.links)
        return edited.record.view()

    async def delete(self, principal: Principal, agent_id: str) -> None:
        tenant_id = self.tenant_of(principal)
        if not is_valid_id(agent_id):
            raise AgentNotFoundError(agent_id)
        record = await self._repo.delete(agent_id, tenant_id=tenant_id)
        self._cache.tombstone(agent_id, record.version + 1)  # the version its event announces
        self._on_commit()

    async def versions(
        self, principal: Principal, agent_id: str, *, limit: int, cursor: str | None
    ) -> AgentVersionPage:
        if not is_valid_id(agent_id):
            raise AgentNotFoundError(agent_id)
        records, next_cursor = await self._repo.versions(
            agent_id, tenant_id=self.tenant_of(principal), limit=limit, cursor=cursor
        )
        return AgentVersionPage(items=[r.view() for r in records], next_cursor=next_cursor)

    async def version(self, principal: Principal, agent_id: str, version: int) -> AgentVersionView:
        if not is_valid_id(agent_id):
            raise AgentNotFoundError(agent_id)
        if version < 1:
            raise VersionNotFoundError(agent_id, version)
        record = await self._repo.version(agent_id, version, tenant_id=self.tenant_of(principal))
        return record.view()

    # --- runtime reads -------------------------------------------------------------------

    async def runtime_config(
        self,
        agent_id: str,
        *,
        campaign_id: str | None = None,
        tenant_id: str | None = None,
        min_version: int = 0,
    ) -> RuntimeConfig | None:
        """The merged runtime config, or None if the agent is unknown (to this tenant)."""
        if not is_valid_id(agent_id):
            return None
        config = await self._cache.get(agent_id, campaign_id=campaign_id, min_version=min_version)
        if config is None or (tenant_id is not None and config.tenant_id != tenant_id):
            return None
        return config

    async def resolve(self, request: ConfigGetRequest) -> ConfigGetReply:
        """Answer a ``voice.config.get`` request (the caller is a trusted worker)."""
        if not is_valid_id(request.agent_id):
            return ConfigNotFound(agent_id=request.agent_id)
        try:
            entry = await self._cache.entry(request.agent_id, min_version=request.min_version)
            if entry is not None and entry.record.status == AgentStatus.DISABLED:
                # A worker holding this agent must stop starting calls on it.
                return ConfigNotFound(agent_id=request.agent_id, reason=RejectReason.DISABLED_AGENT)
            config = None if entry is None else entry.config(request.campaign_id)
        except DatabaseUnavailableError:
            return ConfigGetError(error="database_unavailable", retryable=True)
        except StaleReadError:
            return ConfigGetError(error="version_unavailable", retryable=True)
        except (InvalidConfigError, KeysUnavailableError):  # no (matching) master key
            log.error("runtime config keys cannot be opened", extra={"agent_id": request.agent_id})
            return ConfigGetError(error="keys_unavailable", retryable=True)
        if config is None:
            return ConfigNotFound(agent_id=request.agent_id)
        if config.version < request.min_version:
            return ConfigGetError(error="version_unavailable", retryable=True)
        return ConfigFound(config=config)


def _legacy_problems(name: str | None, percent: int) -> Problems:
    if percent > 0 and not name:
        return [("legacy_agent_name", "required while legacy_percent is above 0")]
    return []
