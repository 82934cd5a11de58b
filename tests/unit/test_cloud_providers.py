"""Every cloud provider: built through its real livekit plugin from an agent's config,
with the agent's key or the pool's default, never showing either; a custom endpoint
only with the agent's own key; a missing plugin fails only its own providers; the
catalogue's model lists and defaults are the plugins' own.

Credentials are handed over as a `KeySource` with an explicit pool mapping where the
test is about the rule, and through the worker's entry points (``build_*`` reading the
process environment) where it is about the worker's path.
"""

import importlib.util
import inspect
import logging
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import livekit.plugins
import pytest
from google.genai.types import HttpOptions
from livekit.agents import llm, stt, tts
from livekit.plugins import assemblyai, aws, cartesia, deepgram, elevenlabs, google, groq, openai

from core_voice_config_sync.validation import spec_problems
from core_voice_contracts.provider_catalog import (
    CATALOG,
    KeyPolicy,
    OptionInfo,
    OptionType,
    find_provider,
)
from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec
from core_voice_worker.errors import ProviderConfigError
from core_voice_worker.providers import (
    LLM_PROVIDERS,
    STT_PROVIDERS,
    TTS_PROVIDERS,
    KeySource,
    Registry,
    build_llm,
    build_stt,
    build_tts,
    registry,
)
from core_voice_worker.providers.aws import AwsCredentials

pytestmark = pytest.mark.unit

SECRET = "sk-AGENT-canary-123"
ENV_SECRET = "sk-POOL-canary-456"
AGENT_KEY_ID = "AKIDAGENTCANARY01"
POOL_KEY_ID = "AKIDPOOLCANARY02"
FAKE_URL = "http://127.0.0.1:9/fake"
Built = llm.LLM[Any] | stt.STT[Any] | tts.TTS[Any]


@dataclass(frozen=True)
class Cloud:
    """One cloud provider as the tests see it."""

    kind: str
    provider: str
    plugin_type: type[Any]
    env_var: str = ""
    agent_key: str = SECRET
    pool: dict[str, str] = field(default_factory=dict)

    @property
    def pool_keys(self) -> dict[str, str]:
        return self.pool or {self.env_var: ENV_SECRET}

    @property
    def named_env(self) -> str:
        """What a missing-key message names."""
        return " and ".join(self.pool) if self.pool else self.env_var

    def __str__(self) -> str:
        return f"{self.kind}-{self.provider}"


CLOUD = [
    Cloud("llm", "openai", openai.LLM, "OPENAI_API_KEY"),
    Cloud("llm", "cerebras", openai.LLM, "CEREBRAS_API_KEY"),
    Cloud("llm", "groq", groq.LLM, "GROQ_API_KEY"),
    Cloud("llm", "google", google.LLM, "GOOGLE_API_KEY"),
    Cloud(
        "llm",
        "bedrock",
        aws.LLM,
        agent_key=f"{AGENT_KEY_ID}:{SECRET}",
        pool={"AWS_ACCESS_KEY_ID": POOL_KEY_ID, "AWS_SECRET_ACCESS_KEY": ENV_SECRET},
    ),
    Cloud("stt", "openai", openai.STT, "OPENAI_API_KEY"),
    Cloud("stt", "deepgram", deepgram.STT, "DEEPGRAM_API_KEY"),
    Cloud("stt", "assemblyai", assemblyai.STT, "ASSEMBLYAI_API_KEY"),
    Cloud("tts", "openai", openai.TTS, "OPENAI_API_KEY"),
    Cloud("tts", "cartesia", cartesia.TTS, "CARTESIA_API_KEY"),
    Cloud("tts", "deepgram", deepgram.TTS, "DEEPGRAM_API_KEY"),
    Cloud("tts", "elevenlabs", elevenlabs.TTS, "ELEVEN_API_KEY"),
]
ALL_ENV = sorted({name for cloud in CLOUD for name in cloud.pool_keys} | {"AWS_SESSION_TOKEN"})
REGISTRIES: dict[str, Registry[Any]] = {
    "llm": LLM_PROVIDERS,
    "stt": STT_PROVIDERS,
    "tts": TTS_PROVIDERS,
}


@pytest.fixture(autouse=True)
def no_platform_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start with no pool key, whatever the developer's shell exports."""
    for env_var in ALL_ENV:
        monkeypatch.delenv(env_var, raising=False)


def build(cloud: Cloud, spec: ProviderSpec, keys: KeySource) -> Built:
    built: Built = REGISTRIES[cloud.kind].build(spec, keys)
    return built


def strings_in(obj: object, limit: int = 20_000) -> Iterator[str]:
    """Every string reachable from ``obj`` through attributes and containers.

    Where a plugin keeps its key is its own business; that the key is in there somewhere
    (and which one) is ours.
    """
    seen: set[int] = set()
    todo: list[object] = [obj]
    while todo and len(seen) < limit:
        item = todo.pop()
        if id(item) in seen or isinstance(item, type | ModuleType):
            continue
        seen.add(id(item))
        if isinstance(item, str):
            yield item
        elif type(item).__name__ == "URL":  # httpx / yarl
            yield str(item)
        elif isinstance(item, dict):
            todo += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            todo += list(item)
        else:
            todo += list(getattr(item, "__dict__", {}).values())
            for cls in type(item).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    if isinstance(slot, str) and hasattr(item, slot):
                        todo.append(getattr(item, slot))


def holds(obj: object, secret: str) -> bool:
    return any(secret in text for text in strings_in(obj))


def all_text(exc: BaseException) -> str:
    """The message, repr and args of ``exc`` and of every exception chained to it."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), *map(str, seen.args)]
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "\n".join(parts)


def assert_hidden(text: str) -> None:
    for secret in (SECRET, ENV_SECRET):
        assert secret not in text


# --- the key rule, for every cloud provider ---------------------------------------------


@pytest.mark.parametrize("cloud", CLOUD, ids=str)
async def test_built_from_the_agents_config_with_its_own_key(cloud: Cloud) -> None:
    info = find_provider(cloud.kind, cloud.provider)
    assert info is not None
    spec = ProviderSpec(provider=cloud.provider, model=info.default_model, voice=info.default_voice)
    keys = KeySource(ProviderKeys(values={cloud.provider: cloud.agent_key}), cloud.pool_keys)

    built = build(cloud, spec, keys)
    try:
        assert isinstance(built, cloud.plugin_type)
        if info.default_model and cloud.provider != "deepgram":
            assert built.model == info.default_model
        assert holds(built, SECRET)
        assert not holds(built, ENV_SECRET)  # the agent's key wins over the pool's
        assert_hidden(repr(built) + str(built) + repr(keys))
    finally:
        await built.aclose()


@pytest.mark.parametrize("cloud", CLOUD, ids=str)
async def test_falls_back_to_the_pools_default_key(cloud: Cloud) -> None:
    built = build(
        cloud, ProviderSpec(provider=cloud.provider), KeySource(ProviderKeys(), cloud.pool_keys)
    )
    try:
        assert holds(built, ENV_SECRET)
        assert_hidden(repr(built) + str(built))
    finally:
        await built.aclose()


@pytest.mark.parametrize("cloud", CLOUD, ids=str)
async def test_the_worker_path_reads_the_pool_key_from_the_environment(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cloud.pool_keys.items():
        monkeypatch.setenv(name, value)
    spec = ProviderSpec(provider=cloud.provider)
    built: Built
    if cloud.kind == "llm":
        built = build_llm(spec, ProviderKeys())
    elif cloud.kind == "stt":
        built = build_stt(spec, ProviderKeys(), None)
    else:
        built = build_tts(spec, ProviderKeys())
    try:
        assert holds(built, ENV_SECRET)
    finally:
        await built.aclose()


@pytest.mark.parametrize("cloud", CLOUD, ids=str)
def test_no_key_names_where_one_may_come_from_and_shows_none(cloud: Cloud) -> None:
    # keys of *other* providers are about, and must not leak into the message
    others = {c.provider: SECRET for c in CLOUD if c.provider != cloud.provider}
    pool = {name: ENV_SECRET for c in CLOUD if c.provider != cloud.provider for name in c.pool_keys}
    with pytest.raises(ProviderConfigError) as raised:
        build(
            cloud,
            ProviderSpec(provider=cloud.provider),
            KeySource(ProviderKeys(values=others), pool),
        )

    assert str(raised.value) == (
        f"{cloud.provider} needs an API key: set it on the agent or in {cloud.named_env}"
    )
    assert_hidden(all_text(raised.value))


@pytest.mark.parametrize("cloud", CLOUD, ids=str)
async def test_without_key_fallback_only_the_agents_own_key_counts(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cloud.pool_keys.items():
        monkeypatch.setenv(name, value)
    spec = ProviderSpec(provider=cloud.provider)
    registry_ = REGISTRIES[cloud.kind]

    with pytest.raises(ProviderConfigError) as raised:
        registry_.build(spec, KeySource.from_env(ProviderKeys(), fallback=False))
    assert str(raised.value) == (
        f"{cloud.provider} needs the agent's own API key"
        " (this worker pool lends no default keys: WORKER_KEY_FALLBACK=false)"
    )
    assert_hidden(all_text(raised.value))

    own = ProviderKeys(values={cloud.provider: cloud.agent_key})
    built = registry_.build(spec, KeySource.from_env(own, fallback=False))
    try:
        assert holds(built, SECRET) and not holds(built, ENV_SECRET)
    finally:
        await built.aclose()


async def test_build_functions_pass_key_fallback_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", ENV_SECRET)
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", ENV_SECRET)
    monkeypatch.setenv("ELEVEN_API_KEY", ENV_SECRET)
    with pytest.raises(ProviderConfigError, match="WORKER_KEY_FALLBACK=false"):
        build_llm(ProviderSpec(provider="groq"), ProviderKeys(), key_fallback=False)
    with pytest.raises(ProviderConfigError, match="WORKER_KEY_FALLBACK=false"):
        build_stt(ProviderSpec(provider="assemblyai"), ProviderKeys(), None, key_fallback=False)
    with pytest.raises(ProviderConfigError, match="WORKER_KEY_FALLBACK=false"):
        build_tts(ProviderSpec(provider="elevenlabs"), ProviderKeys(), key_fallback=False)
    built = build_tts(ProviderSpec(provider="elevenlabs"), ProviderKeys(), key_fallback=True)
    await built.aclose()


@pytest.mark.parametrize("cloud", CLOUD, ids=str)
async def test_a_custom_base_url_needs_the_agents_own_key(cloud: Cloud) -> None:
    spec = ProviderSpec(provider=cloud.provider, options={"base_url": FAKE_URL})
    with pytest.raises(ProviderConfigError) as raised:
        build(cloud, spec, KeySource(ProviderKeys(), cloud.pool_keys))
    assert str(raised.value) == (
        f"{cloud.provider} with a custom base_url needs the agent's own API key"
    )
    assert_hidden(all_text(raised.value))

    own = KeySource(ProviderKeys(values={cloud.provider: cloud.agent_key}), cloud.pool_keys)
    built = build(cloud, spec, own)
    try:
        assert holds(built, FAKE_URL)  # the endpoint reached the plugin (a fake can serve it)
        assert holds(built, SECRET) and not holds(built, ENV_SECRET)
    finally:
        await built.aclose()


@pytest.mark.parametrize("cloud", CLOUD, ids=str)
def test_an_option_the_plugin_rejects_shows_no_key(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cloud.pool_keys.items():
        monkeypatch.setenv(name, value)
    spec = ProviderSpec(provider=cloud.provider, options={"no_such_option": True})
    with pytest.raises(ProviderConfigError) as raised:
        build(
            cloud, spec, KeySource.from_env(ProviderKeys(values={cloud.provider: cloud.agent_key}))
        )

    assert f"{cloud.kind} provider {cloud.provider!r} rejected its config" in str(raised.value)
    assert "no_such_option" in str(raised.value)
    assert_hidden(all_text(raised.value))


STRING_SAMPLES = {"region": "eu-west-1", "language": "en", "base_url": FAKE_URL}


def sample(name: str, option: OptionInfo) -> object:
    """A valid value of ``option``: what an agent config may hold."""
    if option.choices:
        return option.choices[0]
    match option.type:
        case OptionType.BOOLEAN:
            return True
        case OptionType.INTEGER | OptionType.NUMBER:
            return option.minimum if option.minimum is not None else 1
        case OptionType.STRING_LIST:
            return ["hello"]
        case _:
            return STRING_SAMPLES.get(name, "text")


@pytest.mark.parametrize("cloud", CLOUD, ids=str)
async def test_every_catalogue_option_reaches_the_plugin_as_an_argument(cloud: Cloud) -> None:
    """What config_sync accepts at edit time, the plugin takes (no unknown keyword)."""
    info = find_provider(cloud.kind, cloud.provider)
    assert info is not None
    options = {name: sample(name, option) for name, option in info.options.items()}
    assert not spec_problems(cloud.kind, ProviderSpec(provider=cloud.provider, options=options))
    keys = KeySource(ProviderKeys(values={cloud.provider: cloud.agent_key}))
    built = build(cloud, ProviderSpec(provider=cloud.provider, options=options), keys)
    await built.aclose()


def test_every_keyed_catalogue_provider_is_covered_here() -> None:
    keyed = {
        (kind, info.name)
        for kind in ("llm", "stt", "tts")
        for info in CATALOG.of_kind(kind)
        if info.key == KeyPolicy.REQUIRED
    }
    assert keyed == {(cloud.kind, cloud.provider) for cloud in CLOUD}


# --- a missing plugin fails its own providers only --------------------------------------

PLUGIN_MODULES = [
    ("aws", "aws", [("llm", "bedrock")]),
    ("google", "google", [("llm", "google")]),
    ("groq", "groq", [("llm", "groq")]),
    ("assemblyai", "assemblyai", [("stt", "assemblyai")]),
    ("elevenlabs", "elevenlabs", [("tts", "elevenlabs")]),
    ("deepgram", "deepgram", [("stt", "deepgram"), ("tts", "deepgram")]),
    ("cartesia", "cartesia", [("tts", "cartesia")]),
    (
        "openai_family",
        "openai",
        [
            ("llm", "openai"),
            ("llm", "openai-compatible"),
            ("llm", "cerebras"),
            ("stt", "openai"),
            ("tts", "openai"),
        ],
    ),
]


def load_without_plugin(
    module: str, plugin: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Registry[Any]]:
    """Run the provider module afresh, into fresh registries, as if ``livekit.plugins.<plugin>``
    were not installed (the import raises ImportError)."""
    monkeypatch.setitem(sys.modules, f"livekit.plugins.{plugin}", None)
    monkeypatch.delattr(livekit.plugins, plugin)
    fresh: dict[str, Registry[Any]] = {kind: Registry(kind) for kind in ("llm", "stt", "tts")}
    monkeypatch.setattr(registry, "LLM_PROVIDERS", fresh["llm"])
    monkeypatch.setattr(registry, "STT_PROVIDERS", fresh["stt"])
    monkeypatch.setattr(registry, "TTS_PROVIDERS", fresh["tts"])
    found = importlib.util.find_spec(f"core_voice_worker.providers.{module}")
    assert found is not None and found.loader is not None
    found.loader.exec_module(importlib.util.module_from_spec(found))
    return fresh


@pytest.mark.parametrize(
    ("module", "plugin", "providers"), PLUGIN_MODULES, ids=[m[0] for m in PLUGIN_MODULES]
)
async def test_a_missing_plugin_fails_only_its_providers_calls(
    module: str,
    plugin: str,
    providers: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        fresh = load_without_plugin(module, plugin, monkeypatch)
    assert f"livekit-plugins-{plugin}" in [getattr(r, "package", "") for r in caplog.records]

    for kind, provider in providers:
        assert provider in fresh[kind].names()  # still registered: config stays valid
        keys = KeySource(ProviderKeys(values={provider: SECRET}), {})
        with pytest.raises(ProviderConfigError) as raised:
            fresh[kind].build(ProviderSpec(provider=provider), keys)
        assert str(raised.value) == (
            f"provider {provider!r}: plugin not installed (livekit-plugins-{plugin})"
        )
        assert SECRET not in all_text(raised.value)

    # Every other provider of the worker still builds.
    other = "groq" if plugin != "groq" else "google"
    built = LLM_PROVIDERS.build(ProviderSpec(provider=other), ProviderKeys(values={other: SECRET}))
    await built.aclose()


# --- the catalogue holds the plugins' own model lists and defaults ----------------------


def literal_values(annotation: Any) -> list[str]:
    return [str(v) for v in typing.get_args(annotation)]


@pytest.mark.parametrize(
    ("kind", "provider", "plugin_models", "deprecated"),
    [
        ("llm", "groq", literal_values(groq.models.LLMModels), set()),
        ("llm", "google", literal_values(google.models.ChatModels), set()),
        ("tts", "elevenlabs", literal_values(elevenlabs.models.TTSModels), set()),
        (
            "stt",
            "assemblyai",
            literal_values(typing.get_type_hints(assemblyai.STT.__init__)["model"]),
            {"u3-pro"},
        ),
    ],
)
def test_catalogue_models_are_the_plugins_own(
    kind: str, provider: str, plugin_models: list[str], deprecated: set[str]
) -> None:
    info = find_provider(kind, provider)
    assert info is not None and info.models is not None
    assert plugin_models, "the plugin no longer types its model names"
    assert info.models == [m for m in plugin_models if m not in deprecated]


@pytest.mark.parametrize(
    ("kind", "provider", "constructor"),
    [
        ("llm", "groq", groq.LLM),
        ("llm", "google", google.LLM),
        ("llm", "bedrock", aws.LLM),
        ("stt", "assemblyai", assemblyai.STT),
        ("tts", "elevenlabs", elevenlabs.TTS),
    ],
)
def test_catalogue_defaults_are_the_plugins_own(
    kind: str, provider: str, constructor: type[Any]
) -> None:
    info = find_provider(kind, provider)
    assert info is not None
    parameters = inspect.signature(constructor.__init__).parameters
    assert info.default_model == parameters["model"].default
    if "voice_id" in parameters:
        assert info.default_voice == parameters["voice_id"].default


# --- per-provider details -----------------------------------------------------------------


async def test_groq_runs_on_its_own_plugin_with_its_endpoint() -> None:
    built = LLM_PROVIDERS.build(
        ProviderSpec(provider="groq", model="qwen/qwen3-32b", options={"temperature": 0.3}),
        KeySource(ProviderKeys(values={"groq": SECRET})),
    )
    try:
        assert isinstance(built, groq.LLM)
        assert built.model == "qwen/qwen3-32b"
        assert "api.groq.com" in str(built._client.base_url)
    finally:
        await built.aclose()


async def test_google_is_the_gemini_api_whatever_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    spec = ProviderSpec(
        provider="google",
        model="gemini-2.5-flash",
        options={"temperature": 0.4, "thinking_budget": 0, "base_url": FAKE_URL},
    )
    built = LLM_PROVIDERS.build(spec, KeySource(ProviderKeys(values={"google": SECRET})))
    try:
        assert isinstance(built, google.LLM)
        assert not built._client.vertexai
        assert built._opts.thinking_config == {"thinking_budget": 0}
        http_options = built._opts.http_options
        assert isinstance(http_options, HttpOptions) and http_options.base_url == FAKE_URL
    finally:
        await built.aclose()


def test_bedrock_keys_carry_two_secrets_and_an_optional_session_token() -> None:
    pair = AwsCredentials.parse(f"{AGENT_KEY_ID}:{SECRET}")
    assert (pair.access_key_id, pair.secret_access_key, pair.session_token) == (
        AGENT_KEY_ID,
        SECRET,
        None,
    )
    assert AwsCredentials.parse(f"{AGENT_KEY_ID}:{SECRET}:tok-canary").session_token == "tok-canary"
    assert SECRET not in repr(pair) and "tok-canary" not in repr(
        AwsCredentials.parse(f"{AGENT_KEY_ID}:{SECRET}:tok-canary")
    )
    for bad in (SECRET, f"{AGENT_KEY_ID}:", f":{SECRET}", f"a:{SECRET}:b:c"):
        with pytest.raises(ProviderConfigError) as raised:
            LLM_PROVIDERS.build(
                ProviderSpec(provider="bedrock"), KeySource(ProviderKeys(values={"bedrock": bad}))
            )
        assert str(raised.value) == (
            "bedrock key must be ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]"
        )
        assert SECRET not in all_text(raised.value)


async def test_bedrock_session_gets_the_credentials_region_and_endpoint() -> None:
    spec = ProviderSpec(
        provider="bedrock",
        model="anthropic.claude-3-5-haiku-20241022-v1:0",
        options={"region": "eu-west-1", "base_url": FAKE_URL, "temperature": 0.2},
    )
    keys = KeySource(ProviderKeys(values={"bedrock": f"{AGENT_KEY_ID}:{SECRET}:tok-canary"}))
    built = LLM_PROVIDERS.build(spec, keys)
    try:
        assert isinstance(built, aws.LLM)
        session = built._session
        credentials = await session.get_credentials()
        assert (credentials.access_key, credentials.secret_key, credentials.token) == (
            AGENT_KEY_ID,
            SECRET,
            "tok-canary",
        )
        assert session.get_config_variable("region") == "eu-west-1"
        assert session._endpoint_url == FAKE_URL
    finally:
        await built.aclose()


async def test_bedrock_pool_credentials_include_a_session_token_when_set() -> None:
    pool = {
        "AWS_ACCESS_KEY_ID": POOL_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": ENV_SECRET,
        "AWS_SESSION_TOKEN": "pool-token",
    }
    built = LLM_PROVIDERS.build(ProviderSpec(provider="bedrock"), KeySource(ProviderKeys(), pool))
    try:
        assert isinstance(built, aws.LLM)
        credentials = await built._session.get_credentials()
        assert (credentials.access_key, credentials.token) == (POOL_KEY_ID, "pool-token")
        assert built._session.get_config_variable("region") == "us-east-1"
    finally:
        await built.aclose()


async def test_elevenlabs_voice_and_voice_settings_reach_the_plugin() -> None:
    spec = ProviderSpec(
        provider="elevenlabs",
        model="eleven_flash_v2_5",
        voice="21m00Tcm4TlvDq8ikWAM",
        options={"stability": 0.4, "similarity_boost": 0.8, "speed": 1.1, "enable_logging": False},
    )
    built = TTS_PROVIDERS.build(spec, KeySource(ProviderKeys(values={"elevenlabs": SECRET})))
    try:
        assert isinstance(built, elevenlabs.TTS)
        assert (built._opts.voice_id, built._opts.model) == (
            "21m00Tcm4TlvDq8ikWAM",
            "eleven_flash_v2_5",
        )
        assert built._opts.voice_settings == elevenlabs.VoiceSettings(
            stability=0.4, similarity_boost=0.8, speed=1.1
        )
        assert built._opts.enable_logging is False
    finally:
        await built.aclose()

    half = ProviderSpec(provider="elevenlabs", options={"speed": 1.1})
    with pytest.raises(ProviderConfigError, match="need stability and similarity_boost"):
        TTS_PROVIDERS.build(half, KeySource(ProviderKeys(values={"elevenlabs": SECRET})))


async def test_assemblyai_own_eu_endpoint_is_no_custom_url() -> None:
    spec = ProviderSpec(
        provider="assemblyai",
        model="universal-streaming-english",
        options={"base_url": "wss://streaming.eu.assemblyai.com", "format_turns": True},
    )
    built = STT_PROVIDERS.build(spec, KeySource(ProviderKeys(), {"ASSEMBLYAI_API_KEY": ENV_SECRET}))
    try:
        assert isinstance(built, assemblyai.STT)
        assert built._base_url == "wss://streaming.eu.assemblyai.com"
        assert built.model == "universal-streaming-english"
    finally:
        await built.aclose()


def test_a_key_source_shows_no_key() -> None:
    keys = KeySource(
        ProviderKeys(values={"bedrock": f"{AGENT_KEY_ID}:{SECRET}"}),
        {"OPENAI_API_KEY": ENV_SECRET},
    )
    assert_hidden(repr(keys) + str(keys))
    assert SECRET in keys.secrets() and ENV_SECRET in keys.secrets()
