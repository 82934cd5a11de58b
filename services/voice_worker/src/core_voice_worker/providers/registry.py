"""Provider factories, registered per (kind, provider name).

A call's STT/LLM/TTS come from the agent's runtime config, so the worker looks the
provider name up here instead of branching on it. Adding a provider is one decorated
function in the module that owns it (see `cloud.py`, `local_stt.py`).

    >>> from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec
    >>> build_llm(ProviderSpec(provider="scripted"), ProviderKeys()).model
    'scripted'
"""

import os
from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

import msgspec
from livekit.agents import llm, stt, tts
from livekit.agents.vad import VAD

from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec
from core_voice_worker.errors import ProviderConfigError

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
OptionsT = TypeVar("OptionsT")

_REDACTED = "<redacted>"


class ProviderFactory(Protocol[T_co]):
    """Builds one provider instance from its spec and the agent's keys.

    Raises `ProviderConfigError` for a spec it cannot honour; `ValueError`/`TypeError`
    from a plugin constructor are turned into one by the registry.
    """

    def __call__(self, spec: ProviderSpec, keys: ProviderKeys, /) -> T_co: ...


class Registry(Generic[T]):
    """The factories of one kind ("llm", "stt" or "tts"), by provider name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, ProviderFactory[T]] = {}

    def register(self, name: str) -> Callable[[ProviderFactory[T]], ProviderFactory[T]]:
        """Decorator: register ``factory`` under ``name`` (a duplicate is a bug)."""

        def decorator(factory: ProviderFactory[T]) -> ProviderFactory[T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} provider {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._factories)

    def build(self, spec: ProviderSpec, keys: ProviderKeys) -> T:
        factory = self._factories.get(spec.provider)
        if factory is None:
            raise ProviderConfigError(
                f"unknown {self.kind} provider {spec.provider!r}"
                f" (registered: {', '.join(self.names())})"
            )
        try:
            return factory(spec, keys)
        except ProviderConfigError:
            raise
        except (ValueError, TypeError) as exc:
            # Plugin messages are not ours to trust: strip anything secret and drop the
            # original from the chain so no traceback prints it unredacted.
            detail = redact(str(exc), _secrets(keys))
            raise ProviderConfigError(
                f"{self.kind} provider {spec.provider!r} rejected its config: {detail}"
            ) from None


LLM_PROVIDERS: Registry[llm.LLM[Any]] = Registry("llm")
STT_PROVIDERS: Registry[stt.STT[Any]] = Registry("stt")
TTS_PROVIDERS: Registry[tts.TTS[Any]] = Registry("tts")


def build_llm(spec: ProviderSpec, keys: ProviderKeys) -> llm.LLM[Any]:
    return LLM_PROVIDERS.build(spec, keys)


def build_stt(spec: ProviderSpec, keys: ProviderKeys, vad: VAD | None) -> stt.STT[Any]:
    """Build the STT; wrap a non-streaming one with ``vad`` so it can stream.

    AgentSession would wrap it too when the session has a VAD (1.8.9
    ``Agent.default.stt_node``), but wrapping here makes the STT usable on its own and
    independent of the session's VAD setting.
    """
    built = STT_PROVIDERS.build(spec, keys)
    if vad is not None and not built.capabilities.streaming:
        return stt.StreamAdapter(stt=built, vad=vad)
    return built


def build_tts(spec: ProviderSpec, keys: ProviderKeys) -> tts.TTS[Any]:
    return TTS_PROVIDERS.build(spec, keys)


def decode_options(spec: ProviderSpec, kind: str, options_type: type[OptionsT]) -> OptionsT:
    """Decode ``spec.options`` into the provider's options struct."""
    try:
        return msgspec.convert(spec.options, options_type)
    except msgspec.ValidationError as exc:
        raise ProviderConfigError(
            f"{kind} provider {spec.provider!r} has invalid options: {exc}"
        ) from None


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    return text


def _secrets(keys: ProviderKeys) -> list[str]:
    """Every key a factory could have read: the agent's and the ``*_API_KEY`` env vars."""
    env = [v for k, v in os.environ.items() if k.endswith("_API_KEY")]
    return [*keys.values.values(), *env]


def plugin_kwargs(spec: ProviderSpec, **fixed: Any) -> dict[str, Any]:
    """Keyword arguments for a plugin constructor: ``spec.options`` plus ``fixed``.

    Options may not smuggle in credentials or objects (``api_key``, ``client``,
    ``http_session``): those come from the agent's keys and the worker.
    """
    forbidden = {"api_key", "client", "http_session"} & spec.options.keys()
    if forbidden:
        raise ProviderConfigError(
            f"provider {spec.provider!r} options may not set {', '.join(sorted(forbidden))}"
        )
    return {**spec.options, **fixed}
