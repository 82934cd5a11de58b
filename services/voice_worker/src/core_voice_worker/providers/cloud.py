"""Registrations of the cloud providers whose livekit plugins the worker ships.

The key comes from the agent (``keys.get(provider)``), else the platform's standard env
var. ``spec.options`` pass through as plugin keyword arguments, so a new plugin option
needs no code here. Plugins are imported at module level on purpose: livekit plugins
register themselves and refuse to do so off the main thread.

Not yet registered (their plugins are not installed): LLM google, bedrock; STT
assemblyai; TTS elevenlabs.
"""

import os
from typing import Any

from livekit.agents import llm, stt, tts
from livekit.plugins import cartesia, deepgram, openai

from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec
from core_voice_worker.errors import ProviderConfigError
from core_voice_worker.providers.registry import (
    LLM_PROVIDERS,
    STT_PROVIDERS,
    TTS_PROVIDERS,
    plugin_kwargs,
)

OPENAI_COMPATIBLE = "openai-compatible"
GROQ_BASE_URL = "https://api.groq.com/openai/v1"
GROQ_DEFAULT_MODEL = "llama-3.3-70b-versatile"
# Local servers (Ollama, vLLM, llama.cpp) ignore the key, but the OpenAI client needs one.
NO_KEY = "no-key"


def api_key(spec: ProviderSpec, keys: ProviderKeys, env_var: str) -> str:
    """The agent's key for ``spec.provider``, else ``env_var``'s.

    ``base_url`` may be overridden only together with the agent's own key: the
    platform's key must never be sent to a URL an agent config chose.
    """
    if key := keys.get(spec.provider):
        return key
    if "base_url" in spec.options:
        raise ProviderConfigError(
            f"{spec.provider} with a custom base_url needs the agent's own API key"
        )
    if key := os.environ.get(env_var):
        return key
    raise ProviderConfigError(
        f"{spec.provider} needs an API key: set it on the agent or in {env_var}"
    )


def _given(**values: str) -> dict[str, Any]:
    """Only the non-empty ones, so the plugin's own defaults apply otherwise."""
    return {name: value for name, value in values.items() if value}


@LLM_PROVIDERS.register("openai")
def openai_llm(spec: ProviderSpec, keys: ProviderKeys) -> llm.LLM[Any]:
    key = api_key(spec, keys, "OPENAI_API_KEY")
    return openai.LLM(**plugin_kwargs(spec, api_key=key, **_given(model=spec.model)))


@LLM_PROVIDERS.register(OPENAI_COMPATIBLE)
def openai_compatible_llm(spec: ProviderSpec, keys: ProviderKeys) -> llm.LLM[Any]:
    """Any OpenAI-compatible server. Never falls back to OPENAI_API_KEY (see `api_key`)."""
    base_url = spec.options.get("base_url")
    if not isinstance(base_url, str) or not base_url:
        raise ProviderConfigError(f"llm provider {OPENAI_COMPATIBLE!r} needs options.base_url")
    if not spec.model:
        raise ProviderConfigError(f"llm provider {OPENAI_COMPATIBLE!r} needs a model")
    key = keys.get(OPENAI_COMPATIBLE) or NO_KEY
    return openai.LLM(**plugin_kwargs(spec, api_key=key, model=spec.model))


@LLM_PROVIDERS.register("cerebras")
def cerebras_llm(spec: ProviderSpec, keys: ProviderKeys) -> llm.LLM[Any]:
    key = api_key(spec, keys, "CEREBRAS_API_KEY")
    return openai.LLM.with_cerebras(**plugin_kwargs(spec, api_key=key, **_given(model=spec.model)))


@LLM_PROVIDERS.register("groq")
def groq_llm(spec: ProviderSpec, keys: ProviderKeys) -> llm.LLM[Any]:
    """Groq through the OpenAI plugin: 1.8.9's openai plugin has no ``with_groq`` and
    livekit-plugins-groq (itself a thin OpenAI subclass) is not installed."""
    key = api_key(spec, keys, "GROQ_API_KEY")
    return openai.LLM(
        **plugin_kwargs(
            spec,
            api_key=key,
            model=spec.model or GROQ_DEFAULT_MODEL,
            base_url=spec.options.get("base_url", GROQ_BASE_URL),
        )
    )


@STT_PROVIDERS.register("openai")
def openai_stt(spec: ProviderSpec, keys: ProviderKeys) -> stt.STT[Any]:
    key = api_key(spec, keys, "OPENAI_API_KEY")
    return openai.STT(**plugin_kwargs(spec, api_key=key, **_given(model=spec.model)))


@STT_PROVIDERS.register("deepgram")
def deepgram_stt(spec: ProviderSpec, keys: ProviderKeys) -> stt.STT[Any]:
    key = api_key(spec, keys, "DEEPGRAM_API_KEY")
    return deepgram.STT(**plugin_kwargs(spec, api_key=key, **_given(model=spec.model)))


@TTS_PROVIDERS.register("openai")
def openai_tts(spec: ProviderSpec, keys: ProviderKeys) -> tts.TTS[Any]:
    key = api_key(spec, keys, "OPENAI_API_KEY")
    return openai.TTS(
        **plugin_kwargs(spec, api_key=key, **_given(model=spec.model, voice=spec.voice))
    )


@TTS_PROVIDERS.register("cartesia")
def cartesia_tts(spec: ProviderSpec, keys: ProviderKeys) -> tts.TTS[Any]:
    key = api_key(spec, keys, "CARTESIA_API_KEY")
    return cartesia.TTS(
        **plugin_kwargs(spec, api_key=key, **_given(model=spec.model, voice=spec.voice))
    )


@TTS_PROVIDERS.register("deepgram")
def deepgram_tts(spec: ProviderSpec, keys: ProviderKeys) -> tts.TTS[Any]:
    """Deepgram voices are models ("aura-2-andromeda-en"): ``voice`` names one too."""
    if spec.model and spec.voice and spec.model != spec.voice:
        raise ProviderConfigError("tts provider 'deepgram' takes a model or a voice, not both")
    key = api_key(spec, keys, "DEEPGRAM_API_KEY")
    return deepgram.TTS(
        **plugin_kwargs(spec, api_key=key, **_given(model=spec.model or spec.voice))
    )
