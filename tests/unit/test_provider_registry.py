"""The provider registry: lookup by name, option checks, redaction of plugin errors, the
OpenAI plugin's providers. Every cloud provider's key rule: test_cloud_providers.py."""

from typing import Any

import pytest
from livekit.agents import llm, stt, tts
from livekit.agents.vad import VAD
from livekit.plugins import openai, silero

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
)
from core_voice_worker.providers.local_stt import LocalSTT

pytestmark = pytest.mark.unit

SECRET = "sk-SECRET-canary-123"
ENV_SECRET = "sk-ENV-canary-456"
Built = llm.LLM[Any] | stt.STT[Any] | tts.TTS[Any]


@pytest.fixture(autouse=True)
def no_platform_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start with no platform key, whatever the developer's shell exports."""
    for env_var in ("OPENAI_API_KEY", "DEEPGRAM_API_KEY"):
        monkeypatch.delenv(env_var, raising=False)


@pytest.fixture(scope="module")
def vad() -> VAD:
    return silero.VAD.load()


def build(kind: str, spec: ProviderSpec, keys: ProviderKeys) -> Built:
    if kind == "llm":
        return build_llm(spec, keys)
    if kind == "stt":
        return build_stt(spec, keys, None)
    return build_tts(spec, keys)


def all_text(exc: BaseException) -> str:
    """The message, repr and args of ``exc`` and of every exception chained to it."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), *map(str, seen.args)]
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "\n".join(parts)


def test_the_registered_providers() -> None:
    assert LLM_PROVIDERS.names() == [
        "bedrock",
        "cerebras",
        "google",
        "groq",
        "openai",
        "openai-compatible",
        "scripted",
    ]
    assert STT_PROVIDERS.names() == ["assemblyai", "deepgram", "local", "openai"]
    assert TTS_PROVIDERS.names() == ["cartesia", "deepgram", "elevenlabs", "local", "openai"]


@pytest.mark.parametrize("kind", ["llm", "stt", "tts"])
def test_unknown_provider_is_a_config_error_naming_kind_and_provider(kind: str) -> None:
    keys = ProviderKeys(values={"polly": SECRET})
    with pytest.raises(ProviderConfigError) as raised:
        build(kind, ProviderSpec(provider="polly"), keys)

    assert f"unknown {kind} provider 'polly'" in str(raised.value)
    assert SECRET not in all_text(raised.value)


async def test_model_voice_and_options_reach_the_plugin() -> None:
    keys = ProviderKeys(values={"openai": SECRET})
    spec = ProviderSpec(provider="openai", model="gpt-4o-mini", options={"temperature": 0.2})
    built = build_llm(spec, keys)
    assert isinstance(built, openai.LLM)
    assert built.model == "gpt-4o-mini"
    await built.aclose()

    speaker = build_tts(ProviderSpec(provider="openai", voice="alloy", model="tts-1"), keys)
    assert isinstance(speaker, openai.TTS)
    assert speaker.model == "tts-1"
    await speaker.aclose()


async def test_openai_compatible_needs_a_base_url_and_a_model_but_no_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_SECRET)
    spec = ProviderSpec(
        provider="openai-compatible",
        model="llama3.1",
        options={"base_url": "http://127.0.0.1:11434/v1", "temperature": 0.0},
    )
    built = build_llm(spec, ProviderKeys())
    assert isinstance(built, openai.LLM)
    assert (built.model, built.provider) == ("llama3.1", "127.0.0.1:11434")
    # The platform's OpenAI key must never go to a URL an agent config chose.
    assert built._client.api_key == "no-key"
    await built.aclose()

    with pytest.raises(ProviderConfigError, match=r"needs options\.base_url"):
        build_llm(ProviderSpec(provider="openai-compatible", model="m"), ProviderKeys())
    with pytest.raises(ProviderConfigError, match="needs a model"):
        build_llm(
            ProviderSpec(provider="openai-compatible", options={"base_url": "http://x/v1"}),
            ProviderKeys(),
        )


async def test_openai_compatible_uses_the_agents_own_key() -> None:
    spec = ProviderSpec(
        provider="openai-compatible", model="m", options={"base_url": "http://127.0.0.1:8000/v1"}
    )
    built = build_llm(spec, ProviderKeys(values={"openai-compatible": SECRET}))
    assert isinstance(built, openai.LLM)
    assert built._client.api_key == SECRET
    assert SECRET not in repr(built)
    await built.aclose()


@pytest.mark.parametrize(
    "option", ["api_key", "api_secret", "client", "http_session", "session", "credentials"]
)
def test_options_cannot_carry_credentials_or_objects(option: str) -> None:
    spec = ProviderSpec(provider="openai", options={option: SECRET})
    with pytest.raises(ProviderConfigError, match=f"may not set {option}") as raised:
        build_llm(spec, ProviderKeys(values={"openai": SECRET}))
    assert SECRET not in all_text(raised.value)


def test_a_plugin_error_that_quotes_the_key_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_SECRET)
    registry: Registry[str] = Registry("llm")

    @registry.register("leaky")
    def leaky(spec: ProviderSpec, keys: KeySource) -> str:
        raise ValueError(f"bad key {keys.get('leaky')} (env {ENV_SECRET})")

    with pytest.raises(ProviderConfigError) as raised:
        registry.build(ProviderSpec(provider="leaky"), ProviderKeys(values={"leaky": SECRET}))

    assert str(raised.value) == (
        "llm provider 'leaky' rejected its config: bad key <redacted> (env <redacted>)"
    )
    assert SECRET not in all_text(raised.value)
    assert ENV_SECRET not in all_text(raised.value)


def test_each_part_of_a_two_part_key_is_redacted() -> None:
    """A Bedrock key carries two secrets: a plugin quoting just one is redacted too."""
    registry: Registry[str] = Registry("llm")
    pool = {"AWS_SECRET_ACCESS_KEY": ENV_SECRET, "AWS_SESSION_TOKEN": "tok-canary-0001"}

    @registry.register("pair")
    def pair(spec: ProviderSpec, keys: KeySource) -> str:
        raise TypeError(f"bad secret {SECRET} / {ENV_SECRET} / tok-canary-0001")

    keys = KeySource(ProviderKeys(values={"pair": f"AKIDCANARY:{SECRET}"}), pool)
    with pytest.raises(ProviderConfigError) as raised:
        registry.build(ProviderSpec(provider="pair"), keys)

    assert str(raised.value) == (
        "llm provider 'pair' rejected its config: bad secret <redacted> / <redacted> / <redacted>"
    )


def test_a_provider_name_registers_once() -> None:
    registry: Registry[str] = Registry("tts")

    def factory(spec: ProviderSpec, keys: KeySource) -> str:
        return spec.provider

    registry.register("x")(factory)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("x")(factory)


def test_build_stt_wraps_a_batch_stt_with_the_vad(vad: VAD) -> None:
    spec = ProviderSpec(provider="local", options={"phrases": ["hello there"]})

    wrapped = build_stt(spec, ProviderKeys(), vad)
    assert isinstance(wrapped, stt.StreamAdapter)
    assert isinstance(wrapped.wrapped_stt, LocalSTT)
    assert wrapped.capabilities.streaming

    assert isinstance(build_stt(spec, ProviderKeys(), None), LocalSTT)


async def test_build_stt_leaves_a_streaming_stt_alone(vad: VAD) -> None:
    built = build_stt(
        ProviderSpec(provider="deepgram"), ProviderKeys(values={"deepgram": SECRET}), vad
    )
    assert not isinstance(built, stt.StreamAdapter)
    assert built.capabilities.streaming
    await built.aclose()
