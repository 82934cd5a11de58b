"""OpenAI and the providers served through the OpenAI plugin: any OpenAI-compatible
server (Ollama, vLLM, llama.cpp) and Cerebras.

Every factory takes ``base_url`` (a plugin argument), so a local protocol fake can stand
in for the service; a custom one needs the agent's own key (`keys.api_key`).
"""

from typing import Any

from livekit.agents import llm, stt, tts

from core_voice_contracts.runtime_config import ProviderSpec
from core_voice_worker.errors import ProviderConfigError
from core_voice_worker.providers.keys import KeySource, api_key
from core_voice_worker.providers.registry import (
    LLM_PROVIDERS,
    STT_PROVIDERS,
    TTS_PROVIDERS,
    given,
    plugin_kwargs,
    requires_plugin,
)

try:
    from livekit.plugins import openai
except ImportError:  # this module's providers fail their calls; the rest still work
    INSTALLED = False
else:
    INSTALLED = True

PACKAGE = "livekit-plugins-openai"
OPENAI_COMPATIBLE = "openai-compatible"
# Local servers (Ollama, vLLM, llama.cpp) ignore the key, but the OpenAI client needs one.
NO_KEY = "no-key"


@LLM_PROVIDERS.register("openai")
@requires_plugin(INSTALLED, PACKAGE)
def openai_llm(spec: ProviderSpec, keys: KeySource) -> llm.LLM[Any]:
    key = api_key(spec, keys, "OPENAI_API_KEY")
    return openai.LLM(**plugin_kwargs(spec, api_key=key, **given(model=spec.model)))


@LLM_PROVIDERS.register(OPENAI_COMPATIBLE)
@requires_plugin(INSTALLED, PACKAGE)
def openai_compatible_llm(spec: ProviderSpec, keys: KeySource) -> llm.LLM[Any]:
    """Any OpenAI-compatible server. Never uses a pool key: the URL is the agent's choice."""
    base_url = spec.options.get("base_url")
    if not isinstance(base_url, str) or not base_url:
        raise ProviderConfigError(f"llm provider {OPENAI_COMPATIBLE!r} needs options.base_url")
    if not spec.model:
        raise ProviderConfigError(f"llm provider {OPENAI_COMPATIBLE!r} needs a model")
    key = keys.get(OPENAI_COMPATIBLE) or NO_KEY
    return openai.LLM(**plugin_kwargs(spec, api_key=key, model=spec.model))


@LLM_PROVIDERS.register("cerebras")
@requires_plugin(INSTALLED, PACKAGE)
def cerebras_llm(spec: ProviderSpec, keys: KeySource) -> llm.LLM[Any]:
    key = api_key(spec, keys, "CEREBRAS_API_KEY")
    return openai.LLM.with_cerebras(**plugin_kwargs(spec, api_key=key, **given(model=spec.model)))


@STT_PROVIDERS.register("openai")
@requires_plugin(INSTALLED, PACKAGE)
def openai_stt(spec: ProviderSpec, keys: KeySource) -> stt.STT[Any]:
    key = api_key(spec, keys, "OPENAI_API_KEY")
    return openai.STT(**plugin_kwargs(spec, api_key=key, **given(model=spec.model)))


@TTS_PROVIDERS.register("openai")
@requires_plugin(INSTALLED, PACKAGE)
def openai_tts(spec: ProviderSpec, keys: KeySource) -> tts.TTS[Any]:
    key = api_key(spec, keys, "OPENAI_API_KEY")
    return openai.TTS(
        **plugin_kwargs(spec, api_key=key, **given(model=spec.model, voice=spec.voice))
    )
