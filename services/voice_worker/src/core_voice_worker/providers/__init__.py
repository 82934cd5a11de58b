"""STT/LLM/TTS for a call, built from the agent's runtime config by provider name.

Importing the package registers every built-in provider: offline ones, and one module
per cloud plugin. A cloud plugin that is not installed leaves its providers registered
but failing their calls (`registry.requires_plugin`); the worker still starts.

    >>> from core_voice_contracts.runtime_config import ProviderKeys, default_tts
    >>> build_tts(default_tts(), ProviderKeys()).provider
    'local'
"""

from core_voice_worker.providers.keys import KeySource
from core_voice_worker.providers.registry import (
    LLM_PROVIDERS,
    STT_PROVIDERS,
    TTS_PROVIDERS,
    ProviderFactory,
    Registry,
    build_llm,
    build_stt,
    build_tts,
)

# Imported for their registrations, after the registry they register into. Plugins are
# imported here, at module level, on purpose: livekit plugins register themselves and
# must do so on the main thread.
from core_voice_worker.providers import (  # isort: skip
    assemblyai,
    aws,
    cartesia,
    deepgram,
    elevenlabs,
    google,
    groq,
    local_stt,
    local_tts,
    openai_family,
    scripted_llm,
)

__all__ = [
    "LLM_PROVIDERS",
    "STT_PROVIDERS",
    "TTS_PROVIDERS",
    "KeySource",
    "ProviderFactory",
    "Registry",
    "assemblyai",
    "aws",
    "build_llm",
    "build_stt",
    "build_tts",
    "cartesia",
    "deepgram",
    "elevenlabs",
    "google",
    "groq",
    "local_stt",
    "local_tts",
    "openai_family",
    "scripted_llm",
]
