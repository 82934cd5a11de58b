"""Cartesia TTS (Sonic). Takes ``base_url``."""

from typing import Any

from livekit.agents import tts

from core_voice_contracts.runtime_config import ProviderSpec
from core_voice_worker.providers.keys import KeySource, api_key
from core_voice_worker.providers.registry import (
    TTS_PROVIDERS,
    given,
    plugin_kwargs,
    requires_plugin,
)

try:
    from livekit.plugins import cartesia
except ImportError:  # this module's provider fails its calls; the rest still work
    INSTALLED = False
else:
    INSTALLED = True


@TTS_PROVIDERS.register("cartesia")
@requires_plugin(INSTALLED, "livekit-plugins-cartesia")
def cartesia_tts(spec: ProviderSpec, keys: KeySource) -> tts.TTS[Any]:
    key = api_key(spec, keys, "CARTESIA_API_KEY")
    return cartesia.TTS(
        **plugin_kwargs(spec, api_key=key, **given(model=spec.model, voice=spec.voice))
    )
