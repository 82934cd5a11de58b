"""The provider catalogue (contracts) and the worker's provider registry name the same
providers, and the catalogue's option types for the offline providers are the worker's
own option structs: what config_sync accepts at edit time is what a worker can build."""

import msgspec
import pytest

from core_voice_contracts.provider_catalog import (
    CATALOG,
    KeyPolicy,
    ProviderKind,
    find_provider,
    provider_names,
)
from core_voice_contracts.runtime_config import (
    LocalSTTOptions,
    LocalTTSOptions,
    ProviderKeys,
    ProviderSpec,
    ScriptedOptions,
)
from core_voice_worker.providers import LLM_PROVIDERS, STT_PROVIDERS, TTS_PROVIDERS, Registry

pytestmark = pytest.mark.unit

REGISTRIES: dict[str, Registry[object]] = {
    ProviderKind.LLM: LLM_PROVIDERS,  # type: ignore[dict-item]
    ProviderKind.STT: STT_PROVIDERS,  # type: ignore[dict-item]
    ProviderKind.TTS: TTS_PROVIDERS,  # type: ignore[dict-item]
}


@pytest.mark.parametrize("kind", list(ProviderKind))
def test_catalogue_and_worker_registry_name_the_same_providers(kind: ProviderKind) -> None:
    assert sorted(provider_names(kind)) == REGISTRIES[kind].names()


@pytest.mark.parametrize(
    ("kind", "name", "options"),
    [
        ("llm", "scripted", ScriptedOptions),
        ("stt", "local", LocalSTTOptions),
        ("tts", "local", LocalTTSOptions),
    ],
)
def test_offline_option_types_match_the_worker_structs(
    kind: str, name: str, options: type[msgspec.Struct]
) -> None:
    info = find_provider(kind, name)
    assert info is not None and info.key == KeyPolicy.NONE
    assert set(info.options) == set(options.__struct_fields__)


def test_every_catalogue_default_builds_in_the_worker() -> None:
    """Defaults filled by config_sync are values the plugins accept (with a dummy key)."""
    for kind in ProviderKind:
        for info in CATALOG.of_kind(kind):
            if info.model_required or any(o.required for o in info.options.values()):
                continue
            spec = ProviderSpec(
                provider=info.name, model=info.default_model, voice=info.default_voice
            )
            # "id:secret" is a valid key for every provider (Bedrock needs the pair).
            keys = ProviderKeys(values={info.name: "AKIDDUMMY0000:sk-dummy-0000000000"})
            REGISTRIES[kind].build(spec, keys)
