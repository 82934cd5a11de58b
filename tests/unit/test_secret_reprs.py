"""Whatever carries a provider key or a token hides it in repr, str and rich's pretty
repr, so a value logged, quoted in an error or shown in a traceback leaks nothing. A
guard makes sure every such contract type is in the list checked here."""

import datetime as dt
import inspect
from collections.abc import Callable

import msgspec
import pytest
from pydantic import SecretStr
from rich.pretty import pretty_repr

from core_voice_config_sync.auth import StaticTokens
from core_voice_config_sync.cache import CacheEntry
from core_voice_config_sync.crypto import KeyRing, generate_key
from core_voice_config_sync.records import AgentRecord, ConfigFields, KeysState
from core_voice_contracts import admin_api, events, pool_link, routing, runtime_config
from core_voice_contracts.admin_api import AgentCreate, AgentPatch, TokenCreated, TokenView
from core_voice_contracts.events import ConfigFound
from core_voice_contracts.pool_link import LinkConfig, LinkConfigUpdate
from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec, RuntimeConfig

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

SECRET = "sk-canary-REPR-do-not-show-4b1d"
OTHER = "sk-canary-REPR-second-key-77e0"
SECRET_FIELDS = {"keys", "key", "api_key", "token", "secret", "api_secret", "password"}


def shown(value: object) -> list[str]:
    return [repr(value), str(value), pretty_repr(value), f"{value}", f"{value!r}"]


def runtime() -> RuntimeConfig:
    return RuntimeConfig(
        agent_id="a1",
        tenant_id="t1",
        version=3,
        instructions="Be brief.",
        keys=ProviderKeys(values={"openai": SECRET, "deepgram": OTHER}),
    )


def token_view() -> TokenView:
    return TokenView(
        id="tok-1", tenant_id="t1", name="ci", scope="admin", last4=SECRET[-4:], created_at="now"
    )


CARRIERS: dict[type, Callable[[], object]] = {
    AgentCreate: lambda: AgentCreate(name="x", keys={"openai": SECRET, "deepgram": OTHER}),
    AgentPatch: lambda: AgentPatch(keys={"openai": SECRET, "deepgram": None}),
    ProviderKeys: lambda: ProviderKeys(values={"openai": SECRET}),
    RuntimeConfig: runtime,
    ConfigFound: lambda: ConfigFound(config=runtime()),
    LinkConfig: lambda: LinkConfig(req=1, config=runtime()),
    LinkConfigUpdate: lambda: LinkConfigUpdate(config=runtime()),
    TokenCreated: lambda: TokenCreated(token=SECRET, info=token_view()),
}
"""Every contract type that holds a key or a token, and an instance holding ``SECRET``."""


@pytest.mark.parametrize("kind", list(CARRIERS), ids=lambda kind: kind.__name__)
def test_contract_types_hide_keys_and_tokens(kind: type) -> None:
    value = CARRIERS[kind]()
    assert SECRET in msgspec.json.encode(value).decode()  # it does hold the secret
    for text in shown(value):
        assert SECRET not in text and OTHER not in text, text


def test_request_reprs_still_show_the_other_fields() -> None:
    patch = AgentPatch(name="Sales", keys={"openai": SECRET})
    assert "name='Sales'" in repr(patch) and "keys=<1 hidden>" in repr(patch)
    assert "keys=None" in repr(AgentPatch(name="Sales"))


def _holds_secrets(kind: type[msgspec.Struct]) -> bool:
    for f in msgspec.structs.fields(kind):
        if f.type in (ProviderKeys, RuntimeConfig):
            return True
        if f.name in SECRET_FIELDS and f.type != list[admin_api.KeyInfo]:  # not hints only
            return True
    return False


def test_every_contract_type_carrying_secrets_is_checked() -> None:
    """A new request or message with a key, a token or a runtime config in it must be
    added to `CARRIERS` (and hide it)."""
    found = {
        kind
        for module in (admin_api, events, pool_link, routing, runtime_config)
        for _, kind in inspect.getmembers(module, inspect.isclass)
        if issubclass(kind, msgspec.Struct)
        and kind.__module__ == module.__name__
        and not kind.__name__.startswith("_")
        and _holds_secrets(kind)
    }
    unchecked = found - set(CARRIERS)
    assert not unchecked, sorted(k.__name__ for k in unchecked)


def test_config_sync_internals_hide_keys_and_tokens() -> None:
    ring = KeyRing.parse(f"k1:{generate_key()}")
    sealed = ring.seal({"openai": SECRET}, agent_id="a1")
    fields = ConfigFields(
        name="A",
        instructions="",
        greeting="Hi",
        llm=ProviderSpec(provider="openai"),
        stt=ProviderSpec(provider="local"),
        tts=ProviderSpec(provider="local"),
    )
    record = AgentRecord(
        id="a1",
        tenant_id="t1",
        status="active",
        version=1,
        config=fields,
        created_at=NOW,
        updated_at=NOW,
        key_hints={"openai": SECRET[-4:]},
        sealed=sealed,
    )
    entry = CacheEntry(
        record=record, base=record.runtime(ProviderKeys(values={"openai": SECRET})), links={}
    )
    entry.config(None)  # memoised merge, keys and all
    static = StaticTokens(admin=SecretStr(SECRET), runtime=SecretStr(OTHER), default_tenant="t1")
    for value in (ring, sealed, record, entry, KeysState(sealed=sealed), static):
        for text in shown(value):
            assert SECRET not in text and OTHER not in text, text
