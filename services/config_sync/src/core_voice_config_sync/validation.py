"""Edit-time checks against the provider catalogue (`core_voice_contracts.provider_catalog`),
so a config a worker could not run is refused by the API (422, naming each field)
rather than discovered during a call.

Checks: the provider exists for its kind; the model and voice are ones it offers; every
option is known and of its type (and in range); required options are there; a provider
that needs an API key has one (the agent's own, or the platform's for providers listed
in ``CONFIG_SYNC_PLATFORM_KEY_PROVIDERS``). Messages never echo option values or keys.
"""

import re
from collections.abc import Collection, Mapping
from functools import cache
from typing import Any

import msgspec

from core_voice_config_sync.errors import InvalidConfigError
from core_voice_contracts.provider_catalog import (
    OPTION_PYTHON_TYPES,
    KeyPolicy,
    OptionInfo,
    OptionType,
    ProviderInfo,
    find_provider,
    keyed_providers,
    provider_names,
)
from core_voice_contracts.runtime_config import ProviderSpec

KINDS = ("llm", "stt", "tts")
Problems = list[tuple[str, str]]


@cache
def _pattern(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


def _shown(values: Collection[str], limit: int = 12) -> str:
    items = sorted(values)
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _check_choice(
    field: str,
    value: str,
    offered: list[str] | None,
    pattern: str | None,
    *,
    required: bool,
    provider: str,
) -> Problems:
    if not value:
        return [(field, f"provider {provider!r} needs one")] if required else []
    if offered is not None:
        if not offered:
            return [(field, f"provider {provider!r} takes none; leave it empty")]
        if value not in offered:
            return [
                (
                    field,
                    f"provider {provider!r} offers no {value[:80]!r}; choose one of: "
                    f"{_shown(offered)}",
                )
            ]
    if pattern is not None and not _pattern(pattern).fullmatch(value):
        return [(field, f"not a valid value for provider {provider!r}")]
    return []


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _check_option(field: str, value: Any, info: OptionInfo) -> Problems:
    if _has_nul(value):
        return [(field, "must not contain NUL characters")]
    try:
        converted = msgspec.convert(value, OPTION_PYTHON_TYPES[info.type], strict=True)
    except msgspec.ValidationError as exc:
        return [(field, f"expected {info.type.value} ({exc})")]
    if info.type in (OptionType.INTEGER, OptionType.NUMBER):
        if isinstance(converted, bool):
            return [(field, f"expected {info.type.value}")]
        if info.minimum is not None and converted < info.minimum:
            return [(field, f"must be >= {info.minimum:g}")]
        if info.maximum is not None and converted > info.maximum:
            return [(field, f"must be <= {info.maximum:g}")]
    if info.choices is not None and converted not in info.choices:
        return [(field, f"choose one of: {_shown(info.choices)}")]
    return []


def spec_problems(kind: str, spec: ProviderSpec, *, field: str | None = None) -> Problems:
    """Everything wrong with ``spec`` as the ``kind`` provider, each with its field."""
    base = field or kind
    info = find_provider(kind, spec.provider)
    if info is None:
        return [
            (
                f"{base}.provider",
                f"unknown {kind} provider {spec.provider[:80]!r}; "
                f"choose one of: {_shown(provider_names(kind))}",
            )
        ]
    problems = _check_choice(
        f"{base}.model",
        spec.model,
        info.models,
        info.model_pattern,
        required=info.model_required,
        provider=info.name,
    )
    problems += _check_choice(
        f"{base}.voice",
        spec.voice,
        info.voices,
        info.voice_pattern,
        required=False,
        provider=info.name,
    )
    for name, value in spec.options.items():
        option = info.options.get(name)
        if option is None:
            known = _shown(info.options) or "none"
            problems.append(
                (
                    f"{base}.options.{name[:64]}",
                    f"unknown option for provider {info.name!r} (known: {known})",
                )
            )
        else:
            problems += _check_option(f"{base}.options.{name}", value, option)
    for name, option in info.options.items():
        if option.required and name not in spec.options:
            problems.append((f"{base}.options.{name}", f"required by provider {info.name!r}"))
    return problems


def key_problems(
    specs: Mapping[str, ProviderSpec],
    have_keys: Collection[str],
    platform_keys: Collection[str],
    *,
    prefix: str = "",
) -> Problems:
    """A provider that needs a key must have one: the agent's, or the platform's."""
    problems: Problems = []
    for kind, spec in specs.items():
        info = find_provider(kind, spec.provider)
        if info is None or info.key != KeyPolicy.REQUIRED:
            continue
        if spec.provider not in have_keys and spec.provider not in platform_keys:
            problems.append(
                (f"{prefix}keys.{spec.provider}", f"required by {kind}.provider {spec.provider!r}")
            )
    return problems


def key_name_problems(names: Collection[str]) -> Problems:
    allowed = keyed_providers()
    return [
        (f"keys.{name[:64]}", f"no provider {name[:64]!r} takes a key; one of: {_shown(allowed)}")
        for name in sorted(names)
        if name not in allowed
    ]


def check_provider(kind: str, spec: ProviderSpec) -> None:
    """Raise `InvalidConfigError` naming every bad field of ``spec`` as ``kind``."""
    problems = spec_problems(kind, spec)
    if problems:
        raise InvalidConfigError.of(problems)


def fill_defaults(kind: str, spec: ProviderSpec) -> ProviderSpec:
    """The provider's default model and voice where the config leaves them empty."""
    info: ProviderInfo | None = find_provider(kind, spec.provider)
    if info is None:
        return spec
    model = spec.model or info.default_model
    voice = spec.voice or info.default_voice
    if (model, voice) == (spec.model, spec.voice):
        return spec
    return msgspec.structs.replace(spec, model=model, voice=voice)
