"""Edit-time checks of provider choices, so a bad config is refused by the API rather
than discovered during a call.

A registry, not an if-chain: each (kind, provider) with a known options schema maps to
the contracts type its ``options`` must convert to. Providers without an entry are
accepted as given (the provider catalog with model/voice combinations comes later).
"""

from collections.abc import Mapping

import msgspec

from core_voice_config_sync.errors import InvalidConfigError
from core_voice_contracts.runtime_config import (
    LOCAL,
    SCRIPTED,
    LocalSTTOptions,
    LocalTTSOptions,
    ProviderSpec,
    ScriptedOptions,
)

OPTION_SCHEMAS: Mapping[tuple[str, str], type[msgspec.Struct]] = {
    ("llm", SCRIPTED): ScriptedOptions,
    ("stt", LOCAL): LocalSTTOptions,
    ("tts", LOCAL): LocalTTSOptions,
}


def check_provider(kind: str, spec: ProviderSpec) -> None:
    """Raise `InvalidConfigError` naming the field if ``spec`` cannot run as ``kind``."""
    if not spec.provider.strip():
        raise InvalidConfigError(f"{kind}.provider", "must not be empty")
    schema = OPTION_SCHEMAS.get((kind, spec.provider))
    if schema is None:
        return
    try:
        msgspec.convert(spec.options, schema)
    except msgspec.ValidationError as exc:
        raise InvalidConfigError(f"{kind}.options", str(exc)) from None
