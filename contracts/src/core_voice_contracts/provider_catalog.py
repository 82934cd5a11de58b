"""The provider catalogue: which STT/LLM/TTS providers exist, their models, voices,
options and whether they need an API key, as plain data.

config_sync validates every edit against it without importing a single plugin, and the
admin API serves it (``GET /api/v1/providers``) so a UI can offer only valid choices.
The voice worker's provider registry must register exactly these names (a unit test
holds the two together): adding a provider means a factory there and an entry here.

    >>> find_provider("tts", "openai").voices[:2]
    ['alloy', 'ash']
"""

from enum import StrEnum
from typing import Any

import msgspec

from core_voice_contracts.runtime_config import LOCAL, SCRIPTED, ScriptRule


class ProviderKind(StrEnum):
    LLM = "llm"
    STT = "stt"
    TTS = "tts"


class KeyPolicy(StrEnum):
    NONE = "none"  # runs without any key (offline providers)
    REQUIRED = "required"  # needs the agent's key (or a platform key, see config_sync)
    OPTIONAL = "optional"  # used when set (e.g. a self-hosted OpenAI-compatible server)


class OptionType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING_LIST = "string_list"
    STRING_MAP = "string_map"
    SCRIPT_RULES = "script_rules"  # a list of `ScriptRule` objects


OPTION_PYTHON_TYPES: dict[OptionType, Any] = {
    OptionType.STRING: str,
    OptionType.INTEGER: int,
    OptionType.NUMBER: float,
    OptionType.BOOLEAN: bool,
    OptionType.STRING_LIST: list[str],
    OptionType.STRING_MAP: dict[str, str],
    OptionType.SCRIPT_RULES: list[ScriptRule],
}
"""What each option type converts to (``msgspec.convert``, strict: no str→int coercion)."""


class OptionInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    type: OptionType
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: list[str] | None = None
    description: str = ""


class ProviderInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One provider of one kind.

    ``models``/``voices`` list what the provider offers; ``None`` means free-form (an
    OpenAI-compatible server names its own models), constrained by ``*_pattern`` when
    given. An empty list means the field must stay empty. An empty model or voice in an
    agent config means the ``default_*`` one, filled in the runtime config.
    """

    name: str
    kind: ProviderKind
    description: str = ""
    models: list[str] | None = None
    default_model: str = ""
    model_required: bool = False
    model_pattern: str | None = None
    voices: list[str] | None = msgspec.field(default_factory=list)
    default_voice: str = ""
    voice_pattern: str | None = None
    key: KeyPolicy = KeyPolicy.NONE
    options: dict[str, OptionInfo] = msgspec.field(default_factory=dict)


class ProviderCatalog(msgspec.Struct, frozen=True, kw_only=True):
    llm: list[ProviderInfo]
    stt: list[ProviderInfo]
    tts: list[ProviderInfo]

    def of_kind(self, kind: str) -> list[ProviderInfo]:
        match kind:
            case ProviderKind.LLM:
                return self.llm
            case ProviderKind.STT:
                return self.stt
            case ProviderKind.TTS:
                return self.tts
        return []


# --- shared option blocks --------------------------------------------------------------

_BASE_URL = OptionInfo(
    type=OptionType.STRING, description="API endpoint; needs the agent's own key"
)
_TEMPERATURE = OptionInfo(type=OptionType.NUMBER, minimum=0.0, maximum=2.0)
_TOP_P = OptionInfo(type=OptionType.NUMBER, minimum=0.0, maximum=1.0)
_OPENAI_CHAT_OPTIONS = {
    "temperature": _TEMPERATURE,
    "top_p": _TOP_P,
    "parallel_tool_calls": OptionInfo(type=OptionType.BOOLEAN),
    "max_completion_tokens": OptionInfo(type=OptionType.INTEGER, minimum=1, maximum=1_000_000),
    "user": OptionInfo(type=OptionType.STRING),
    "base_url": _BASE_URL,
}

_OPENAI_CHAT_MODELS = [
    "gpt-5.5", "gpt-5.4", "gpt-5.4-mini", "gpt-5.2", "gpt-5.1", "gpt-5", "gpt-5-mini",
    "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini",
    "gpt-4-turbo", "gpt-4", "gpt-3.5-turbo",
]  # fmt: skip
_CEREBRAS_MODELS = ["gpt-oss-120b", "qwen-3.8-27b", "zai-glm-4.7", "gemma-4-31b",
                    "llama3.1-8b", "llama-3.3-70b"]  # fmt: skip
_GROQ_MODELS = [
    "llama-3.3-70b-versatile", "llama-3.1-8b-instant", "openai/gpt-oss-120b",
    "openai/gpt-oss-20b", "qwen/qwen3-32b", "moonshotai/kimi-k2-instruct",
]  # fmt: skip
_DEEPGRAM_STT_MODELS = [
    "nova-3", "nova-3-general", "nova-3-medical", "nova-3-multilingual", "nova-2-general",
    "nova-2-phonecall", "nova-2-meeting", "nova-2-conversationalai", "nova-2-medical",
    "nova-2", "flux-general-en",
]  # fmt: skip
_DEEPGRAM_TTS_MODELS = [
    f"aura-2-{name}-en"
    for name in (
        "andromeda", "apollo", "arcas", "aries", "artemis", "asteria", "atlas", "aurora",
        "callisto", "cetus", "chiron", "columbia", "cordelia", "crina", "draco", "electra",
        "eos", "harmonia", "helios", "hera", "hermes", "hyperion", "io", "iris", "janus",
        "juno", "jupiter", "luna", "mars", "minerva", "mira", "neptune", "odysseus",
        "ophiuchus", "orion", "orpheus", "phoebe", "pluto", "saturn", "selene", "theia",
        "titan", "triton", "vega", "venus", "zeus",
    )
] + ["aura-asteria-en", "aura-luna-en", "aura-stella-en", "aura-athena-en", "aura-hera-en",
     "aura-orion-en", "aura-arcas-en", "aura-perseus-en", "aura-angus-en", "aura-orpheus-en",
     "aura-helios-en", "aura-zeus-en"]  # fmt: skip
_OPENAI_VOICES = ["alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                  "shimmer", "verse", "marin", "cedar"]  # fmt: skip
_REQUIRED_BASE_URL = OptionInfo(
    type=OptionType.STRING, required=True, description="the server's /v1 URL"
)
_LANGUAGE = OptionInfo(type=OptionType.STRING, description="BCP-47 language, e.g. en-US")

CATALOG = ProviderCatalog(
    llm=[
        ProviderInfo(
            name=SCRIPTED,
            kind=ProviderKind.LLM,
            description="Deterministic replies from rules; offline, no key",
            models=None,
            options={
                "rules": OptionInfo(type=OptionType.SCRIPT_RULES),
                "fallback": OptionInfo(type=OptionType.STRING),
            },
        ),
        ProviderInfo(
            name="openai",
            kind=ProviderKind.LLM,
            models=_OPENAI_CHAT_MODELS,
            default_model="gpt-4.1-mini",
            key=KeyPolicy.REQUIRED,
            options=_OPENAI_CHAT_OPTIONS,
        ),
        ProviderInfo(
            name="openai-compatible",
            kind=ProviderKind.LLM,
            description="Any OpenAI-compatible server (Ollama, vLLM, llama.cpp)",
            models=None,
            model_required=True,
            model_pattern=r"^[\x21-\x7e]{1,200}$",
            key=KeyPolicy.OPTIONAL,
            options={**_OPENAI_CHAT_OPTIONS, "base_url": _REQUIRED_BASE_URL},
        ),
        ProviderInfo(
            name="cerebras",
            kind=ProviderKind.LLM,
            models=_CEREBRAS_MODELS,
            default_model="gpt-oss-120b",
            key=KeyPolicy.REQUIRED,
            options={"temperature": _TEMPERATURE, "top_p": _TOP_P, "base_url": _BASE_URL},
        ),
        ProviderInfo(
            name="groq",
            kind=ProviderKind.LLM,
            models=_GROQ_MODELS,
            default_model="llama-3.3-70b-versatile",
            key=KeyPolicy.REQUIRED,
            options={"temperature": _TEMPERATURE, "top_p": _TOP_P, "base_url": _BASE_URL},
        ),
    ],
    stt=[
        ProviderInfo(
            name=LOCAL,
            kind=ProviderKind.STT,
            description="pocketsphinx, offline; exact for the listed phrases",
            options={"phrases": OptionInfo(type=OptionType.STRING_LIST)},
        ),
        ProviderInfo(
            name="openai",
            kind=ProviderKind.STT,
            models=["gpt-4o-mini-transcribe", "gpt-4o-transcribe", "whisper-1"],
            default_model="gpt-4o-mini-transcribe",
            key=KeyPolicy.REQUIRED,
            options={
                "language": _LANGUAGE,
                "detect_language": OptionInfo(type=OptionType.BOOLEAN),
                "prompt": OptionInfo(type=OptionType.STRING),
                "base_url": _BASE_URL,
            },
        ),
        ProviderInfo(
            name="deepgram",
            kind=ProviderKind.STT,
            models=_DEEPGRAM_STT_MODELS,
            default_model="nova-3",
            key=KeyPolicy.REQUIRED,
            options={
                "language": _LANGUAGE,
                "detect_language": OptionInfo(type=OptionType.BOOLEAN),
                "interim_results": OptionInfo(type=OptionType.BOOLEAN),
                "punctuate": OptionInfo(type=OptionType.BOOLEAN),
                "smart_format": OptionInfo(type=OptionType.BOOLEAN),
                "endpointing_ms": OptionInfo(type=OptionType.INTEGER, minimum=0, maximum=10_000),
                "filler_words": OptionInfo(type=OptionType.BOOLEAN),
                "profanity_filter": OptionInfo(type=OptionType.BOOLEAN),
                "numerals": OptionInfo(type=OptionType.BOOLEAN),
                "keyterms": OptionInfo(type=OptionType.STRING_LIST),
                "base_url": _BASE_URL,
            },
        ),
    ],
    tts=[
        ProviderInfo(
            name=LOCAL,
            kind=ProviderKind.TTS,
            description="espeak-ng, offline",
            voices=None,
            default_voice="en-us",
            voice_pattern=r"^[a-z]{2,3}(-[a-z0-9]{1,8})*(\+[a-z0-9]{1,16})?$",
            options={
                "speed_wpm": OptionInfo(type=OptionType.INTEGER, minimum=80, maximum=450),
                "pitch": OptionInfo(type=OptionType.INTEGER, minimum=0, maximum=99),
            },
        ),
        ProviderInfo(
            name="openai",
            kind=ProviderKind.TTS,
            models=["gpt-4o-mini-tts", "tts-1", "tts-1-hd"],
            default_model="gpt-4o-mini-tts",
            voices=_OPENAI_VOICES,
            default_voice="ash",
            key=KeyPolicy.REQUIRED,
            options={
                "speed": OptionInfo(type=OptionType.NUMBER, minimum=0.25, maximum=4.0),
                "instructions": OptionInfo(type=OptionType.STRING),
                "base_url": _BASE_URL,
            },
        ),
        ProviderInfo(
            name="cartesia",
            kind=ProviderKind.TTS,
            models=["sonic-3", "sonic-2", "sonic", "sonic-turbo", "sonic-lite"],
            default_model="sonic-3",
            voices=None,
            default_voice="f786b574-daa5-4673-aa0c-cbe3e8534c02",
            voice_pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            key=KeyPolicy.REQUIRED,
            options={
                "language": _LANGUAGE,
                "speed": OptionInfo(type=OptionType.NUMBER, minimum=-1.0, maximum=2.0),
                "volume": OptionInfo(type=OptionType.NUMBER, minimum=0.0, maximum=2.0),
                "base_url": _BASE_URL,
            },
        ),
        ProviderInfo(
            name="deepgram",
            kind=ProviderKind.TTS,
            description="Aura voices are models: choose the voice as the model",
            models=_DEEPGRAM_TTS_MODELS,
            default_model="aura-2-andromeda-en",
            voices=[],
            key=KeyPolicy.REQUIRED,
            options={
                "speed": OptionInfo(type=OptionType.NUMBER, minimum=0.7, maximum=1.5),
                "base_url": _BASE_URL,
            },
        ),
    ],
)

_INDEX: dict[tuple[str, str], ProviderInfo] = {
    (info.kind.value, info.name): info for kind in ProviderKind for info in CATALOG.of_kind(kind)
}


def find_provider(kind: str, name: str) -> ProviderInfo | None:
    """The catalogue entry of ``name`` as a ``kind`` ("llm", "stt", "tts"), if any."""
    return _INDEX.get((kind, name))


def provider_names(kind: str) -> list[str]:
    return [info.name for info in CATALOG.of_kind(kind)]


def keyed_providers() -> list[str]:
    """Providers that can use an API key: the names allowed in an agent's ``keys``."""
    return sorted({info.name for (_, _), info in _INDEX.items() if info.key != KeyPolicy.NONE})
