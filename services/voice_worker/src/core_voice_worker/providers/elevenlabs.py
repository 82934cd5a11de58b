"""ElevenLabs streaming TTS. Takes ``base_url``; the key is ``ELEVEN_API_KEY`` (the
plugin's own name for it, not ``ELEVENLABS_API_KEY``).

The voice settings are flat options (``stability``, ``similarity_boost``, ``style``,
``speed``, ``use_speaker_boost``) gathered into the plugin's ``VoiceSettings``, which
needs ``stability`` and ``similarity_boost`` whenever any of them is set.
"""

from typing import Any

from livekit.agents import tts

from core_voice_contracts.runtime_config import ProviderSpec
from core_voice_worker.errors import ProviderConfigError
from core_voice_worker.providers.keys import KeySource, api_key
from core_voice_worker.providers.registry import (
    TTS_PROVIDERS,
    given,
    plugin_kwargs,
    requires_plugin,
)

try:
    from livekit.plugins import elevenlabs
except ImportError:  # this module's provider fails its calls; the rest still work
    INSTALLED = False
else:
    INSTALLED = True

VOICE_SETTINGS = ("stability", "similarity_boost", "style", "speed", "use_speaker_boost")


@TTS_PROVIDERS.register("elevenlabs")
@requires_plugin(INSTALLED, "livekit-plugins-elevenlabs")
def elevenlabs_tts(spec: ProviderSpec, keys: KeySource) -> tts.TTS[Any]:
    key = api_key(spec, keys, "ELEVEN_API_KEY")
    settings = {name: spec.options[name] for name in VOICE_SETTINGS if name in spec.options}
    translated: dict[str, Any] = {}
    if settings:
        if not {"stability", "similarity_boost"} <= settings.keys():
            raise ProviderConfigError(
                "tts provider 'elevenlabs' voice settings need stability and similarity_boost"
            )
        translated["voice_settings"] = elevenlabs.VoiceSettings(**settings)
    return elevenlabs.TTS(
        **plugin_kwargs(
            spec,
            omit=VOICE_SETTINGS,
            api_key=key,
            **given(model=spec.model, voice_id=spec.voice),
            **translated,
        )
    )
