"""The runtime config a voice worker receives for one agent (and campaign).

It is the agent's current config version with campaign overrides merged and defaults
filled. It carries the agent's provider keys, so it travels only on the
request/reply path (``voice.config.get`` / the runtime-config HTTP endpoint), never on
a stream, and its ``repr`` never shows a key.
"""

from typing import Any

import msgspec

SCRIPTED = "scripted"
LOCAL = "local"
SILERO = "silero"

DEFAULT_GREETING = "Hello! How can I help you today?"


class ProviderSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One provider choice: which plugin, model and voice, plus provider options."""

    provider: str
    model: str = ""
    voice: str = ""
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class ScriptRule(msgspec.Struct, frozen=True, kw_only=True):
    """A `scripted` LLM rule: when the caller's words contain ``match``, say ``reply``.

    ``match`` is a case-insensitive phrase; every word of it must appear in the turn.
    """

    match: str
    reply: str


class ScriptedOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options of the `scripted` LLM provider (``llm.options``)."""

    rules: list[ScriptRule] = msgspec.field(default_factory=list)
    fallback: str = "Sorry, I did not catch that."


class LocalSTTOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options of the `local` (pocketsphinx) STT provider (``stt.options``).

    ``phrases`` become a JSGF grammar: decoding is exact for those phrases and poor
    free-form, so offline agents list what callers are expected to say.
    """

    phrases: list[str] = msgspec.field(default_factory=list)


class LocalTTSOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options of the `local` (espeak-ng) TTS provider (``tts.options``)."""

    speed_wpm: int = 160
    pitch: int = 50


class ProviderKeys(msgspec.Struct, frozen=True, kw_only=True):
    """Per-agent provider API keys, by provider name. Never shown by ``repr``."""

    values: dict[str, str] = msgspec.field(default_factory=dict)

    def get(self, provider: str) -> str | None:
        return self.values.get(provider)

    def __repr__(self) -> str:
        return f"ProviderKeys(<{len(self.values)} hidden>)"

    __str__ = __repr__

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("hidden", len(self.values))]  # msgspec's own would show the values


def default_llm() -> ProviderSpec:
    return ProviderSpec(provider=SCRIPTED)


def default_stt() -> ProviderSpec:
    return ProviderSpec(provider=LOCAL)


def default_tts() -> ProviderSpec:
    return ProviderSpec(provider=LOCAL, voice="en-us")


class RuntimeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a worker needs to run a call for one agent."""

    agent_id: str
    tenant_id: str
    version: int
    name: str = ""
    instructions: str = ""
    greeting: str = DEFAULT_GREETING
    llm: ProviderSpec = msgspec.field(default_factory=default_llm)
    stt: ProviderSpec = msgspec.field(default_factory=default_stt)
    tts: ProviderSpec = msgspec.field(default_factory=default_tts)
    vad: str = SILERO
    campaign_id: str | None = None
    keys: ProviderKeys = msgspec.field(default_factory=ProviderKeys)
