"""The runtime config a worker receives = agent config ⊕ campaign overrides, defaults filled.

>>> from core_voice_contracts.admin_api import ProviderOverride
>>> base = RuntimeConfig(agent_id="a", tenant_id="t", version=3, instructions="Be kind.")
>>> merged = merge(base, CampaignOverrides(tts=ProviderOverride(voice="en-gb")), "c1")
>>> (merged.instructions, merged.tts.voice, merged.campaign_id)
('Be kind.', 'en-gb', 'c1')
"""

import msgspec

from core_voice_config_sync.validation import fill_defaults
from core_voice_contracts.admin_api import CampaignOverrides, ProviderOverride
from core_voice_contracts.runtime_config import ProviderSpec, RuntimeConfig


def merge_spec(base: ProviderSpec, override: ProviderOverride | None) -> ProviderSpec:
    """Another provider replaces the spec; the same one keeps what the override leaves out."""
    if override is None:
        return base
    if override.provider is not None and override.provider != base.provider:
        return ProviderSpec(
            provider=override.provider,
            model=override.model or "",
            voice=override.voice or "",
            options=dict(override.options or {}),
        )
    return ProviderSpec(
        provider=base.provider,
        model=base.model if override.model is None else override.model,
        voice=base.voice if override.voice is None else override.voice,
        options={**base.options, **(override.options or {})},
    )


def merge(
    base: RuntimeConfig, overrides: CampaignOverrides | None, campaign_id: str | None
) -> RuntimeConfig:
    """``base`` with ``overrides`` applied, tagged with the campaign, defaults filled."""
    if overrides is None:
        return finalize(base)
    merged = msgspec.structs.replace(
        base,
        instructions=base.instructions
        if overrides.instructions is None
        else overrides.instructions,
        greeting=base.greeting if overrides.greeting is None else overrides.greeting,
        llm=merge_spec(base.llm, overrides.llm),
        stt=merge_spec(base.stt, overrides.stt),
        tts=merge_spec(base.tts, overrides.tts),
        campaign_id=campaign_id,
    )
    return finalize(merged)


def finalize(config: RuntimeConfig) -> RuntimeConfig:
    return msgspec.structs.replace(
        config,
        llm=fill_defaults("llm", config.llm),
        stt=fill_defaults("stt", config.stt),
        tts=fill_defaults("tts", config.tts),
    )
