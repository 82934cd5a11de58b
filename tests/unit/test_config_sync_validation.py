"""Edit-time checks against the provider catalogue; merges; tokens map to permissions;
provider keys sealed with AES-GCM and re-sealed on rotation."""

import pytest
from pydantic import SecretStr

from core_voice_config_sync.auth import Scope, StaticTokens
from core_voice_config_sync.crypto import KeyRing, generate_key
from core_voice_config_sync.errors import InvalidConfigError, KeysUnavailableError, SettingsError
from core_voice_config_sync.merge import merge_spec
from core_voice_config_sync.records import ConfigFields
from core_voice_config_sync.settings import load_settings
from core_voice_config_sync.validation import (
    check_provider,
    fill_defaults,
    key_problems,
    spec_problems,
)
from core_voice_config_sync.validator import Validator
from core_voice_contracts.admin_api import CampaignOverrides, ProviderOverride
from core_voice_contracts.provider_catalog import CATALOG, ProviderKind
from core_voice_contracts.runtime_config import ProviderSpec

pytestmark = pytest.mark.unit

SECRET = "sk-canary-validation-9f8e7d"


def fields_of(**specs: ProviderSpec) -> ConfigFields:
    return ConfigFields(
        name="A",
        instructions="",
        greeting="Hi",
        llm=specs.get("llm", ProviderSpec(provider="scripted")),
        stt=specs.get("stt", ProviderSpec(provider="local")),
        tts=specs.get("tts", ProviderSpec(provider="local")),
    )


def test_known_provider_options_are_checked() -> None:
    check_provider("llm", ProviderSpec(provider="scripted", options={"rules": [], "fallback": "?"}))
    with pytest.raises(InvalidConfigError) as caught:
        check_provider("llm", ProviderSpec(provider="scripted", options={"rulez": []}))
    assert caught.value.field == "llm.options.rulez"
    with pytest.raises(InvalidConfigError, match=r"tts\.options\.speed_wpm: expected integer"):
        check_provider("tts", ProviderSpec(provider="local", options={"speed_wpm": "fast"}))
    with pytest.raises(InvalidConfigError, match=r"must be <= 2"):
        check_provider("llm", ProviderSpec(provider="openai", options={"temperature": 3}))
    with pytest.raises(InvalidConfigError, match="NUL"):
        check_provider("llm", ProviderSpec(provider="openai", options={"user": "a\x00b"}))


def test_unknown_provider_model_and_voice_are_named() -> None:
    problems = dict(spec_problems("tts", ProviderSpec(provider="openai", model="x", voice="y")))
    assert set(problems) == {"tts.model", "tts.voice"}
    assert "offers no 'x'" in problems["tts.model"]
    assert spec_problems("stt", ProviderSpec(provider=" "))[0][0] == "stt.provider"
    assert spec_problems("tts", ProviderSpec(provider="deepgram", voice="aura-2-zeus-en"))
    assert spec_problems("tts", ProviderSpec(provider="cartesia", voice="not-a-uuid"))
    assert not spec_problems("tts", ProviderSpec(provider="local", voice="en-gb"))
    required = spec_problems("llm", ProviderSpec(provider="openai-compatible"))
    assert {f for f, _ in required} == {"llm.model", "llm.options.base_url"}


def test_required_keys_unless_the_platform_holds_them() -> None:
    openai = fields_of(llm=ProviderSpec(provider="openai", model="gpt-4o"))
    with pytest.raises(InvalidConfigError) as caught:
        Validator().check_agent(openai, have_keys=[], links=[])
    assert caught.value.field == "keys.openai"
    Validator().check_agent(openai, have_keys=["openai"], links=[])
    Validator(platform_keys=frozenset({"openai"})).check_agent(openai, have_keys=[], links=[])


KEYED = [
    ("llm", "groq", "llama-3.1-8b-instant"),
    ("llm", "google", "gemini-2.5-flash"),
    ("llm", "bedrock", "amazon.nova-2-lite-v1:0"),
    ("stt", "assemblyai", "universal-streaming-english"),
    ("tts", "elevenlabs", "eleven_flash_v2_5"),
]


@pytest.mark.parametrize(("kind", "provider", "model"), KEYED)
def test_a_star_lets_the_pools_default_key_serve_every_provider(
    kind: str, provider: str, model: str
) -> None:
    fields = fields_of(**{kind: ProviderSpec(provider=provider, model=model)})
    Validator(platform_keys=frozenset({"*"})).check_agent(fields, have_keys=[], links=[])
    Validator(platform_keys=frozenset({provider})).check_agent(fields, have_keys=[], links=[])
    Validator().check_agent(fields, have_keys=[provider], links=[])


@pytest.mark.parametrize(("kind", "provider", "model"), KEYED)
def test_without_a_key_the_422_says_how_to_allow_it(kind: str, provider: str, model: str) -> None:
    fields = fields_of(**{kind: ProviderSpec(provider=provider, model=model)})
    with pytest.raises(InvalidConfigError) as caught:
        Validator(platform_keys=frozenset({"openai"})).check_agent(fields, have_keys=[], links=[])
    assert caught.value.problems == [
        (
            f"keys.{provider}",
            f"required by {kind}.provider {provider!r}: give the agent its own key, or let "
            f"the worker pool's default key serve it (CONFIG_SYNC_PLATFORM_KEY_PROVIDERS="
            f"{provider}, or * for every provider)",
        )
    ]


def test_a_star_does_not_lend_keys_to_keyless_or_unknown_providers() -> None:
    specs = {"llm": ProviderSpec(provider="openai-compatible"), "tts": ProviderSpec(provider="x")}
    assert key_problems(specs, [], {"*"}) == []
    assert key_problems({"stt": ProviderSpec(provider="deepgram")}, [], set()) != []
    assert key_problems({"stt": ProviderSpec(provider="deepgram")}, [], {"*"}) == []


def test_a_custom_base_url_needs_the_agents_own_key_even_with_a_star() -> None:
    custom = {"stt": ProviderSpec(provider="deepgram", options={"base_url": "http://fake/v1"})}
    assert key_problems(custom, [], {"*"}) == [
        (
            "keys.deepgram",
            "required by stt.provider 'deepgram' with a custom base_url "
            "(the pool's default key is never sent to an agent's URL)",
        )
    ]
    assert key_problems(custom, ["deepgram"], {"*"}) == []
    eu = ProviderSpec(
        provider="assemblyai", options={"base_url": "wss://streaming.eu.assemblyai.com"}
    )
    assert key_problems({"stt": eu}, [], {"*"}) == []  # the vendor's own endpoint


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", frozenset()),
        ("*", frozenset({"*"})),
        (" openai, groq ,", frozenset({"openai", "groq"})),
        ("bedrock,*", frozenset({"bedrock", "*"})),
    ],
)
def test_platform_key_providers_setting(value: str, expected: frozenset[str]) -> None:
    settings = load_settings(
        admin_token="a" * 32, runtime_token="r" * 32, platform_key_providers=value
    )
    assert settings.platform_keys() == expected


@pytest.mark.parametrize("value", ["opnai", "openai,openai-compatible", "scripted", "OPENAI"])
def test_platform_key_providers_names_only_keyed_providers(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(admin_token="a" * 32, runtime_token="r" * 32, platform_key_providers=value)
    message = str(caught.value)
    assert message.startswith("CONFIG_SYNC_PLATFORM_KEY_PROVIDERS ")
    assert "opnai" not in message  # never echoed: a key pasted there by mistake stays unlogged


def test_platform_key_providers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIG_SYNC_PLATFORM_KEY_PROVIDERS", "*")
    assert load_settings(admin_token="a" * 32, runtime_token="r" * 32).platform_keys() == {"*"}


def test_option_patterns_and_options_required_together() -> None:
    def fields(kind: str, spec: ProviderSpec) -> set[str]:
        return {f for f, _ in spec_problems(kind, spec)}

    bedrock = ProviderSpec(provider="bedrock", options={"region": "eu-west-1"})
    assert fields("llm", bedrock) == set()
    assert fields("llm", ProviderSpec(provider="bedrock", options={"region": "EU West"})) == {
        "llm.options.region"
    }
    assert fields("llm", ProviderSpec(provider="bedrock", model="no spaces allowed")) == {
        "llm.model"
    }

    speed = ProviderSpec(provider="elevenlabs", options={"speed": 1.1})
    assert fields("tts", speed) == {"tts.options.stability", "tts.options.similarity_boost"}
    assert dict(spec_problems("tts", speed))["tts.options.stability"] == (
        "required with options.speed"
    )
    pair = ProviderSpec(
        provider="elevenlabs", options={"speed": 1.1, "stability": 0.5, "similarity_boost": 0.7}
    )
    assert fields("tts", pair) == set()
    assert fields("tts", ProviderSpec(provider="elevenlabs", voice="not a voice id")) == {
        "tts.voice"
    }
    assert fields("stt", ProviderSpec(provider="assemblyai", options={"mode": "fast"})) == {
        "stt.options.mode"
    }
    assert fields("llm", ProviderSpec(provider="google", options={"thinking_budget": -2})) == {
        "llm.options.thinking_budget"
    }


def test_campaign_overrides_are_validated_as_merged() -> None:
    validator = Validator()
    base = fields_of()
    fine = CampaignOverrides(tts=ProviderOverride(voice="en-gb"))
    assert validator.merged_problems(base, [], fine, prefix="overrides.") == []
    groq = CampaignOverrides(llm=ProviderOverride(provider="groq"))
    assert [f for f, _ in validator.merged_problems(base, [], groq, prefix="overrides.")] == [
        "overrides.keys.groq"
    ]
    bad_model = CampaignOverrides(llm=ProviderOverride(model="gpt-4o"))
    openai = fields_of(llm=ProviderSpec(provider="openai", model="gpt-4o-mini"))
    assert validator.merged_problems(openai, ["openai"], bad_model, prefix="o.") == []


def test_merge_spec_same_provider_merges_other_provider_replaces() -> None:
    base = ProviderSpec(provider="openai", model="gpt-4o", options={"temperature": 0.2, "top_p": 1})
    same = merge_spec(base, ProviderOverride(options={"temperature": 0.9}))
    assert same == ProviderSpec(
        provider="openai", model="gpt-4o", options={"temperature": 0.9, "top_p": 1}
    )
    other = merge_spec(base, ProviderOverride(provider="groq"))
    assert other == ProviderSpec(provider="groq")
    assert fill_defaults("llm", other).model == "llama-3.3-70b-versatile"


def test_catalogue_defaults_are_valid_choices() -> None:
    for kind in ProviderKind:
        for info in CATALOG.of_kind(kind):
            spec = fill_defaults(kind, ProviderSpec(provider=info.name))
            fields = {f for f, _ in spec_problems(kind, spec)}
            assert not fields - {f"{kind}.model", f"{kind}.options.base_url"}, (kind, info.name)


async def test_static_tokens_resolve_to_scoped_principals() -> None:
    tokens = StaticTokens(
        admin=SecretStr("adm-canary"), runtime=SecretStr("rt-canary"), default_tenant="t1"
    )
    admin = await tokens.authenticate("adm-canary")
    runtime = await tokens.authenticate("rt-canary")
    assert admin is not None and runtime is not None
    assert admin.tenant_id == "t1" and admin.can(Scope.AGENTS_WRITE)
    assert not admin.can(Scope.RUNTIME_KEYS)
    assert runtime.tenant_id is None and runtime.can(Scope.RUNTIME_KEYS)
    assert not runtime.can(Scope.AGENTS_WRITE) and not runtime.can(Scope.AGENTS_READ)
    assert await tokens.authenticate("adm-canar") is None
    assert await tokens.authenticate("") is None
    assert "canary" not in repr(tokens)


def test_keys_seal_open_and_rotate() -> None:
    old = KeyRing.parse(f"k1:{generate_key()}")
    sealed = old.seal({"openai": SECRET}, agent_id="a1")
    assert SECRET.encode() not in sealed.blob
    assert SECRET not in repr(sealed) and "k1" in repr(sealed)
    assert old.open(sealed, agent_id="a1") == {"openai": SECRET}
    with pytest.raises(KeysUnavailableError):
        old.open(sealed, agent_id="a2")  # bound to its agent

    k1, k2 = f"k1:{generate_key()}", f"k2:{generate_key()}"
    sealed = KeyRing.parse(k1).seal({"openai": SECRET}, agent_id="a1")
    rotated = KeyRing.parse(f"{k2},{k1}")  # new key first seals; the old one still opens
    assert rotated.open(sealed, agent_id="a1") == {"openai": SECRET}
    resealed = rotated.reseal(sealed, agent_id="a1")
    assert resealed.key_id == "k2"
    only_new = KeyRing.parse(k2)
    assert only_new.open(resealed, agent_id="a1") == {"openai": SECRET}
    with pytest.raises(KeysUnavailableError, match="k1"):
        only_new.open(sealed, agent_id="a1")
    assert "KeyRing(active='k2'" in repr(rotated)


@pytest.mark.parametrize(
    "text",
    ["k1", "k1:notbase64!", "k1:" + "QUJD", f"a b:{generate_key()}"],
    ids=["no-key", "not-base64", "too-short", "space-in-id"],  # stable ids (pytest-xdist)
)
def test_bad_key_rings_are_refused_without_echoing_keys(text: str) -> None:
    with pytest.raises(SettingsError) as caught:
        KeyRing.parse(text)
    assert "QUJD" not in str(caught.value) and "notbase64" not in str(caught.value)
