"""Groq LLM through its own plugin (``livekit-plugins-groq``, an OpenAI-protocol client
whose ``base_url`` defaults to Groq's endpoint)."""

from typing import Any

from livekit.agents import llm

from core_voice_contracts.runtime_config import ProviderSpec
from core_voice_worker.providers.keys import KeySource, api_key
from core_voice_worker.providers.registry import (
    LLM_PROVIDERS,
    given,
    plugin_kwargs,
    requires_plugin,
)

try:
    from livekit.plugins import groq
except ImportError:  # this module's provider fails its calls; the rest still work
    INSTALLED = False
else:
    INSTALLED = True


@LLM_PROVIDERS.register("groq")
@requires_plugin(INSTALLED, "livekit-plugins-groq")
def groq_llm(spec: ProviderSpec, keys: KeySource) -> llm.LLM[Any]:
    key = api_key(spec, keys, "GROQ_API_KEY")
    return groq.LLM(**plugin_kwargs(spec, api_key=key, **given(model=spec.model)))
