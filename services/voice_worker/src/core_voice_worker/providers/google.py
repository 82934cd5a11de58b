"""Google Gemini LLM through the Gemini API (``livekit-plugins-google``), keyed by
``GOOGLE_API_KEY`` or the agent's own key.

Vertex AI is never selected implicitly: ``GOOGLE_GENAI_USE_VERTEXAI`` in the worker's
environment would otherwise switch every Gemini agent to the pool's Google Cloud
credentials. The plugin has no ``base_url`` argument; the ``base_url`` option becomes
the Gemini client's ``http_options.base_url`` (a local fake then serves the call).
"""

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
    from google.genai import types
    from livekit.plugins import google
except ImportError:  # this module's provider fails its calls; the rest still work
    INSTALLED = False
else:
    INSTALLED = True

    class GeminiLLM(google.LLM):
        """The plugin's LLM, prewarmed through the same endpoint its chats use.

        The plugin sends only chat requests through ``http_options``; its prewarm would
        go to Google's default endpoint even when the agent chose another one.
        """

        async def _prewarm_impl(self) -> None:
            options = self._opts.http_options
            if isinstance(options, types.HttpOptions) and options.base_url:
                await self._client.aio.models.list(
                    config=types.ListModelsConfig(page_size=1, http_options=options)
                )
            else:
                await super()._prewarm_impl()


THINKING_OPTIONS = ("thinking_budget", "thinking_level")


@LLM_PROVIDERS.register("google")
@requires_plugin(INSTALLED, "livekit-plugins-google")
def google_llm(spec: ProviderSpec, keys: KeySource) -> llm.LLM[Any]:
    key = api_key(spec, keys, "GOOGLE_API_KEY")
    translated: dict[str, Any] = {}
    if base_url := spec.options.get("base_url"):
        translated["http_options"] = types.HttpOptions(base_url=base_url)
    thinking = {name: spec.options[name] for name in THINKING_OPTIONS if name in spec.options}
    if thinking:
        translated["thinking_config"] = thinking
    return GeminiLLM(
        **plugin_kwargs(
            spec,
            omit=("base_url", *THINKING_OPTIONS),
            api_key=key,
            vertexai=False,
            **given(model=spec.model),
            **translated,
        )
    )
