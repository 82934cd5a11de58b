"""Edit-time checks: provider options must fit the provider; tokens map to scopes."""

import pytest
from pydantic import SecretStr

from core_voice_config_sync.auth import Scope, StaticTokens
from core_voice_config_sync.errors import InvalidConfigError
from core_voice_config_sync.validation import check_provider
from core_voice_contracts.runtime_config import ProviderSpec

pytestmark = pytest.mark.unit


def test_known_provider_options_are_checked() -> None:
    check_provider("llm", ProviderSpec(provider="scripted", options={"rules": [], "fallback": "?"}))
    with pytest.raises(InvalidConfigError) as caught:
        check_provider("llm", ProviderSpec(provider="scripted", options={"rulez": []}))
    assert caught.value.field == "llm.options"
    assert "rulez" in str(caught.value)
    with pytest.raises(InvalidConfigError, match=r"tts\.options"):
        check_provider("tts", ProviderSpec(provider="local", options={"speed_wpm": "fast"}))


def test_empty_provider_is_refused_and_others_pass() -> None:
    with pytest.raises(InvalidConfigError, match=r"stt\.provider"):
        check_provider("stt", ProviderSpec(provider=" "))
    check_provider("llm", ProviderSpec(provider="openai", model="gpt-4o-mini", options={"x": 1}))


async def test_static_tokens_resolve_to_scoped_principals() -> None:
    tokens = StaticTokens(
        admin=SecretStr("adm-canary"), runtime=SecretStr("rt-canary"), default_tenant="t1"
    )
    admin = await tokens.authenticate("adm-canary")
    runtime = await tokens.authenticate("rt-canary")
    assert admin is not None and runtime is not None
    assert admin.tenant_id == "t1" and admin.can(Scope.AGENTS_WRITE)
    assert runtime.tenant_id is None and runtime.can(Scope.RUNTIME_READ)
    assert not runtime.can(Scope.AGENTS_WRITE) and not runtime.can(Scope.AGENTS_READ)
    assert await tokens.authenticate("adm-canar") is None
    assert await tokens.authenticate("") is None
    assert "canary" not in repr(tokens)
