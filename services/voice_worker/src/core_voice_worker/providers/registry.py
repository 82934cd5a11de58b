"""Provider factories, registered per (kind, provider name).

A call's STT/LLM/TTS come from the agent's runtime config, so the worker looks the
provider name up here instead of branching on it. Adding a provider is one decorated
function in the module that owns its plugin (see `openai_family.py`, `local_stt.py`).

    >>> from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec
    >>> build_llm(ProviderSpec(provider="scripted"), ProviderKeys()).model
    'scripted'
"""

import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any, Generic, NoReturn, Protocol, TypeVar, cast

import msgspec
from livekit.agents import llm, stt, tts
from livekit.agents.vad import VAD

from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec
from core_voice_worker.errors import ProviderConfigError
from core_voice_worker.providers.keys import KeySource

log = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
OptionsT = TypeVar("OptionsT")
FactoryT = TypeVar("FactoryT", bound=Callable[[ProviderSpec, KeySource], Any])

_REDACTED = "<redacted>"
_NOT_OPTIONS = frozenset(
    {"api_key", "api_secret", "client", "http_session", "session", "credentials"}
)
"""Credentials and objects: they come from the agent's keys and the worker, never options."""


class ProviderFactory(Protocol[T_co]):
    """Builds one provider instance from its spec and the call's credentials.

    Raises `ProviderConfigError` for a spec it cannot honour; `ValueError`/`TypeError`
    from a plugin constructor are turned into one by the registry.
    """

    def __call__(self, spec: ProviderSpec, keys: KeySource, /) -> T_co: ...


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

    def build(self, spec: ProviderSpec, keys: ProviderKeys | KeySource) -> T:
        """Build ``spec``; bare `ProviderKeys` fall back to this process's environment."""
        source = keys if isinstance(keys, KeySource) else KeySource.from_env(keys)
        factory = self._factories.get(spec.provider)
        if factory is None:
            raise ProviderConfigError(
                f"unknown {self.kind} provider {spec.provider!r}"
                f" (registered: {', '.join(self.names())})"
            )
        try:
            return factory(spec, source)
        except ProviderConfigError:
            raise
        except (ValueError, TypeError) as exc:
            # Plugin messages are not ours to trust: strip anything secret and drop the
            # original from the chain so no traceback prints it unredacted.
            detail = redact(str(exc), source.secrets())
            raise ProviderConfigError(
                f"{self.kind} provider {spec.provider!r} rejected its config: {detail}"
            ) from None


LLM_PROVIDERS: Registry[llm.LLM[Any]] = Registry("llm")
STT_PROVIDERS: Registry[stt.STT[Any]] = Registry("stt")
TTS_PROVIDERS: Registry[tts.TTS[Any]] = Registry("tts")


def build_llm(spec: ProviderSpec, keys: ProviderKeys, *, key_fallback: bool = True) -> llm.LLM[Any]:
    """``key_fallback=False``: the agent's own keys only (``WORKER_KEY_FALLBACK``)."""
    return LLM_PROVIDERS.build(spec, KeySource.from_env(keys, fallback=key_fallback))


def build_stt(
    spec: ProviderSpec, keys: ProviderKeys, vad: VAD | None, *, key_fallback: bool = True
) -> stt.STT[Any]:
    """Build the STT; wrap a non-streaming one with ``vad`` so it can stream.

    AgentSession would wrap it too when the session has a VAD (1.8.9
    ``Agent.default.stt_node``), but wrapping here makes the STT usable on its own and
    independent of the session's VAD setting.
    """
    built = STT_PROVIDERS.build(spec, KeySource.from_env(keys, fallback=key_fallback))
    if vad is not None and not built.capabilities.streaming:
        return stt.StreamAdapter(stt=built, vad=vad)
    return built


def build_tts(spec: ProviderSpec, keys: ProviderKeys, *, key_fallback: bool = True) -> tts.TTS[Any]:
    return TTS_PROVIDERS.build(spec, KeySource.from_env(keys, fallback=key_fallback))


def requires_plugin(installed: bool, package: str) -> Callable[[FactoryT], FactoryT]:
    """Decorator: without ``package`` installed, the factory fails its calls, not the worker.

    Plugins are imported at module level (they must register on the main thread), so a
    missing one would otherwise stop the whole worker. The provider stays registered, and
    a worker image built without, say, the AWS plugin serves every agent but Bedrock's.
    """

    def decorator(factory: FactoryT) -> FactoryT:
        if installed:
            return factory
        log.warning("provider plugin not installed", extra={"package": package})

        def not_installed(spec: ProviderSpec, keys: KeySource, /) -> NoReturn:
            raise ProviderConfigError(
                f"provider {spec.provider!r}: plugin not installed ({package})"
            )

        return cast(FactoryT, not_installed)

    return decorator


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


def given(**values: str) -> dict[str, Any]:
    """Only the non-empty ones, so the plugin's own defaults apply otherwise."""
    return {name: value for name, value in values.items() if value}


def plugin_kwargs(
    spec: ProviderSpec, *, omit: Collection[str] = (), **fixed: Any
) -> dict[str, Any]:
    """Keyword arguments for a plugin constructor: ``spec.options`` plus ``fixed``.

    ``omit`` names options the factory translates itself (e.g. Gemini's ``base_url``
    becomes ``http_options``). Options may not smuggle in credentials or objects
    (``api_key``, ``client``, ``session``, ...): those come from the keys and the worker.
    """
    forbidden = _NOT_OPTIONS & spec.options.keys()
    if forbidden:
        raise ProviderConfigError(
            f"provider {spec.provider!r} options may not set {', '.join(sorted(forbidden))}"
        )
    options = {name: value for name, value in spec.options.items() if name not in omit}
    return {**options, **fixed}
