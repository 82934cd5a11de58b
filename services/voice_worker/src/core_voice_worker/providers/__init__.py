"""STT/LLM/TTS for a call, built from the agent's runtime config by provider name.

Importing the package registers every built-in provider (offline and cloud).

    >>> from core_voice_contracts.runtime_config import ProviderKeys, default_tts
    >>> build_tts(default_tts(), ProviderKeys()).provider
    'local'
"""

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

# Imported for their registrations, after the registry they register into.
from core_voice_worker.providers import cloud, local_stt, local_tts, scripted_llm  # isort: skip

__all__ = [
    "LLM_PROVIDERS",
    "STT_PROVIDERS",
    "TTS_PROVIDERS",
    "ProviderFactory",
    "Registry",
    "build_llm",
    "build_stt",
    "build_tts",
    "cloud",
    "local_stt",
    "local_tts",
    "scripted_llm",
]
