"""Deepgram STT (Nova, Flux) and TTS (Aura). Both take ``base_url``."""

from typing import Any

from livekit.agents import stt, tts

from core_voice_contracts.runtime_config import ProviderSpec
from core_voice_worker.errors import ProviderConfigError
from core_voice_worker.providers.keys import KeySource, api_key
from core_voice_worker.providers.registry import (
    STT_PROVIDERS,
    TTS_PROVIDERS,
    given,
    plugin_kwargs,
    requires_plugin,
)

try:
    from livekit.plugins import deepgram
except ImportError:  # this module's providers fail their calls; the rest still work
    INSTALLED = False
else:
    INSTALLED = True

PACKAGE = "livekit-plugins-deepgram"
KEY_ENV = "DEEPGRAM_API_KEY"


@STT_PROVIDERS.register("deepgram")
@requires_plugin(INSTALLED, PACKAGE)
def deepgram_stt(spec: ProviderSpec, keys: KeySource) -> stt.STT[Any]:
    key = api_key(spec, keys, KEY_ENV)
    return deepgram.STT(**plugin_kwargs(spec, api_key=key, **given(model=spec.model)))


@TTS_PROVIDERS.register("deepgram")
@requires_plugin(INSTALLED, PACKAGE)
def deepgram_tts(spec: ProviderSpec, keys: KeySource) -> tts.TTS[Any]:
    """Deepgram voices are models ("aura-2-andromeda-en"): ``voice`` names one too."""
    if spec.model and spec.voice and spec.model != spec.voice:
        raise ProviderConfigError("tts provider 'deepgram' takes a model or a voice, not both")
    key = api_key(spec, keys, KEY_ENV)
    return deepgram.TTS(**plugin_kwargs(spec, api_key=key, **given(model=spec.model or spec.voice)))
