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
    REQUIRED = "required"  # the agent's key, or the pool's default (see docs/providers.md)
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
    """One provider option. ``pattern`` (a regex a string must fully match) and
    ``requires`` (options that must be set along with this one) are checked at edit time
    like the type and range."""

    type: OptionType
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: list[str] | None = None
    description: str = ""
    pattern: str | None = None
    requires: list[str] | None = None


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
    key_format: str = ""
    """How the agent's key is written when it is more than one token (Bedrock)."""
    vendor_urls: list[str] = msgspec.field(default_factory=list)
    """The provider's own endpoints (e.g. an EU region): a ``base_url`` naming one is not
    custom, so the pool's default key may serve it. Any other needs the agent's key."""
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
# Model lists below are copies of the plugins' own ``Literal`` types (contracts import no
# plugin); tests/unit/test_cloud_providers.py fails when a plugin's list moves.
_GROQ_MODELS = [  # livekit.plugins.groq.models.LLMModels
    "llama-3.1-8b-instant", "llama-3.3-70b-versatile",
    "meta-llama/llama-4-scout-17b-16e-instruct", "openai/gpt-oss-120b", "openai/gpt-oss-20b",
    "moonshotai/kimi-k2-instruct-0905", "qwen/qwen3-32b",
]  # fmt: skip
_GEMINI_MODELS = [  # livekit.plugins.google.models.ChatModels
    "gemini-4-argon", "gemini-3.8-flash", "gemini-3.5-flash", "gemini-3-pro-preview",
    "gemini-3-flash-preview", "gemini-2.5-flash", "gemini-2.5-pro-preview-05-06",
    "gemini-2.5-flash-preview-04-17", "gemini-2.5-flash-preview-05-20", "gemini-2.0-flash-001",
    "gemini-2.0-flash-lite-preview-02-05", "gemini-2.0-pro-exp-02-05", "gemini-1.5-pro",
]  # fmt: skip
_ASSEMBLYAI_MODELS = [  # the plugin's STT(model=...) Literal, less the deprecated "u3-pro"
    "universal-streaming-english", "universal-streaming-multilingual", "u3-rt-pro",
    "u3-rt-pro-beta-1", "universal-3-5-pro", "universal-3-6-pro",
]  # fmt: skip
_ELEVENLABS_MODELS = [  # livekit.plugins.elevenlabs.models.TTSModels
    "eleven_monolingual_v1", "eleven_multilingual_v1", "eleven_multilingual_v2",
    "eleven_turbo_v2", "eleven_turbo_v2_5", "eleven_flash_v2_5", "eleven_flash_v2",
    "eleven_v3", "eleven_v3_conversational", "eleven_v4", "eleven_v4_turbo",
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
_MAX_TOKENS = OptionInfo(type=OptionType.INTEGER, minimum=1, maximum=1_000_000)
_PENALTY = OptionInfo(type=OptionType.NUMBER, minimum=-2.0, maximum=2.0)
_U3_ONLY = "Universal-3 Pro models only"
_VOICE_PAIR = ["stability", "similarity_boost"]


def _voice_setting(
    type_: OptionType,
    requires: list[str],
    minimum: float | None = None,
    maximum: float | None = None,
) -> OptionInfo:
    return OptionInfo(
        type=type_,
        requires=requires,
        minimum=minimum,
        maximum=maximum,
        description="ElevenLabs voice setting; needs stability and similarity_boost",
    )


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
            options={
                "temperature": _TEMPERATURE,
                "top_p": _TOP_P,
                "parallel_tool_calls": OptionInfo(type=OptionType.BOOLEAN),
                "max_completion_tokens": _MAX_TOKENS,
                "base_url": _BASE_URL,
            },
        ),
        ProviderInfo(
            name="google",
            kind=ProviderKind.LLM,
            description="Gemini through the Gemini API (not Vertex AI)",
            models=_GEMINI_MODELS,
            default_model="gemini-3.8-flash",
            key=KeyPolicy.REQUIRED,
            options={
                "temperature": _TEMPERATURE,
                "top_p": _TOP_P,
                "top_k": OptionInfo(type=OptionType.NUMBER, minimum=1),
                "max_output_tokens": _MAX_TOKENS,
                "presence_penalty": _PENALTY,
                "frequency_penalty": _PENALTY,
                "seed": OptionInfo(type=OptionType.INTEGER),
                "thinking_budget": OptionInfo(
                    type=OptionType.INTEGER,
                    minimum=-1,
                    maximum=32_768,
                    description="thinking tokens (Gemini 2.5): 0 off, -1 dynamic",
                ),
                "thinking_level": OptionInfo(
                    type=OptionType.STRING,
                    choices=["minimal", "low", "medium", "high"],
                    description="Gemini 3 and later",
                ),
                "base_url": _BASE_URL,
            },
        ),
        ProviderInfo(
            name="bedrock",
            kind=ProviderKind.LLM,
            description="Amazon Bedrock (Converse API): a model id or inference profile ARN",
            models=None,
            default_model="amazon.nova-2-lite-v1:0",
            model_pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,2047}$",
            key=KeyPolicy.REQUIRED,
            key_format="ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]",
            options={
                "region": OptionInfo(
                    type=OptionType.STRING,
                    pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$",
                    description="AWS region, e.g. eu-west-1 (default us-east-1)",
                ),
                "temperature": OptionInfo(type=OptionType.NUMBER, minimum=0.0, maximum=1.0),
                "top_p": _TOP_P,
                "max_output_tokens": _MAX_TOKENS,
                "cache_system": OptionInfo(type=OptionType.BOOLEAN),
                "cache_tools": OptionInfo(type=OptionType.BOOLEAN),
                "base_url": OptionInfo(
                    type=OptionType.STRING,
                    description="Bedrock runtime endpoint URL; needs the agent's own key",
                ),
            },
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
        ProviderInfo(
            name="assemblyai",
            kind=ProviderKind.STT,
            models=_ASSEMBLYAI_MODELS,
            default_model="universal-3-6-pro",
            key=KeyPolicy.REQUIRED,
            vendor_urls=["wss://streaming.assemblyai.com", "wss://streaming.eu.assemblyai.com"],
            options={
                "language_detection": OptionInfo(type=OptionType.BOOLEAN),
                "language_codes": OptionInfo(
                    type=OptionType.STRING_LIST, description=f"up to 10; {_U3_ONLY}"
                ),
                "end_of_turn_confidence_threshold": OptionInfo(
                    type=OptionType.NUMBER, minimum=0.0, maximum=1.0
                ),
                "min_turn_silence": OptionInfo(
                    type=OptionType.INTEGER, minimum=0, maximum=60_000, description="ms"
                ),
                "max_turn_silence": OptionInfo(
                    type=OptionType.INTEGER, minimum=0, maximum=60_000, description="ms"
                ),
                "format_turns": OptionInfo(type=OptionType.BOOLEAN),
                "keyterms_prompt": OptionInfo(type=OptionType.STRING_LIST),
                "prompt": OptionInfo(type=OptionType.STRING, description=_U3_ONLY),
                "vad_threshold": OptionInfo(type=OptionType.NUMBER, minimum=0.0, maximum=1.0),
                "interruption_delay": OptionInfo(
                    type=OptionType.INTEGER,
                    minimum=0,
                    maximum=1000,
                    description=f"ms; {_U3_ONLY}",
                ),
                "mode": OptionInfo(
                    type=OptionType.STRING,
                    choices=["min_latency", "balanced", "max_accuracy"],
                    description=_U3_ONLY,
                ),
                "voice_focus": OptionInfo(
                    type=OptionType.STRING,
                    choices=["near-field", "far-field"],
                    description=_U3_ONLY,
                ),
                "base_url": OptionInfo(
                    type=OptionType.STRING,
                    description="streaming endpoint; one of vendor_urls (the EU region) "
                    "works with the pool's key, any other needs the agent's own",
                ),
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
        ProviderInfo(
            name="elevenlabs",
            kind=ProviderKind.TTS,
            models=_ELEVENLABS_MODELS,
            default_model="eleven_turbo_v2_5",
            voices=None,
            default_voice="hpp4J3VqNfWAUOO0d1Us",
            voice_pattern=r"^[A-Za-z0-9]{16,32}$",
            key=KeyPolicy.REQUIRED,
            options={
                "language": _LANGUAGE,
                "apply_text_normalization": OptionInfo(
                    type=OptionType.STRING, choices=["auto", "off", "on"]
                ),
                "enable_logging": OptionInfo(
                    type=OptionType.BOOLEAN, description="false: zero retention mode"
                ),
                "auto_mode": OptionInfo(type=OptionType.BOOLEAN),
                "stability": _voice_setting(
                    OptionType.NUMBER, ["similarity_boost"], minimum=0.0, maximum=1.0
                ),
                "similarity_boost": _voice_setting(
                    OptionType.NUMBER, ["stability"], minimum=0.0, maximum=1.0
                ),
                "style": _voice_setting(OptionType.NUMBER, _VOICE_PAIR, minimum=0.0, maximum=1.0),
                "speed": _voice_setting(OptionType.NUMBER, _VOICE_PAIR, minimum=0.8, maximum=1.2),
                "use_speaker_boost": _voice_setting(OptionType.BOOLEAN, _VOICE_PAIR),
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
