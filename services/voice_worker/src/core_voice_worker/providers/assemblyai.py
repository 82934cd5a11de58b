"""AssemblyAI streaming STT (Universal-Streaming, Universal-3 Pro).

``base_url`` is the plugin's streaming endpoint. AssemblyAI's own EU endpoint is not a
custom URL: the pool's key may serve an agent that chooses it.
"""

from typing import Any

from livekit.agents import stt

from core_voice_contracts.runtime_config import ProviderSpec
from core_voice_worker.providers.keys import KeySource, api_key
from core_voice_worker.providers.registry import (
    STT_PROVIDERS,
    given,
    plugin_kwargs,
    requires_plugin,
)

try:
    from livekit.plugins import assemblyai
except ImportError:  # this module's provider fails its calls; the rest still work
    INSTALLED = False
else:
    INSTALLED = True

VENDOR_URLS = ("wss://streaming.assemblyai.com", "wss://streaming.eu.assemblyai.com")


@STT_PROVIDERS.register("assemblyai")
@requires_plugin(INSTALLED, "livekit-plugins-assemblyai")
def assemblyai_stt(spec: ProviderSpec, keys: KeySource) -> stt.STT[Any]:
    key = api_key(spec, keys, "ASSEMBLYAI_API_KEY", vendor_urls=VENDOR_URLS)
    return assemblyai.STT(**plugin_kwargs(spec, api_key=key, **given(model=spec.model)))
