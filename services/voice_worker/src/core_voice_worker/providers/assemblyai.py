"""AssemblyAI streaming STT (Universal-Streaming, Universal-3 Pro).

``base_url`` is the plugin's streaming endpoint. AssemblyAI's own endpoints (its EU
region; the catalogue's ``vendor_urls``) are not custom: the pool's key may serve them.
"""

from typing import Any

from livekit.agents import stt

from core_voice_contracts.provider_catalog import find_provider
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

_INFO = find_provider("stt", "assemblyai")
VENDOR_URLS = tuple(_INFO.vendor_urls) if _INFO is not None else ()


@STT_PROVIDERS.register("assemblyai")
@requires_plugin(INSTALLED, "livekit-plugins-assemblyai")
def assemblyai_stt(spec: ProviderSpec, keys: KeySource) -> stt.STT[Any]:
    key = api_key(spec, keys, "ASSEMBLYAI_API_KEY", vendor_urls=VENDOR_URLS)
    return assemblyai.STT(**plugin_kwargs(spec, api_key=key, **given(model=spec.model)))
