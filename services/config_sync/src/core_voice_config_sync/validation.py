"""Edit-time checks against the provider catalogue (`core_voice_contracts.provider_catalog`),
so a config a worker could not run is refused by the API (422, naming each field)
rather than discovered during a call.

Checks: the provider exists for its kind; the model and voice are ones it offers; every
option is known and of its type (and in range, and matching its pattern); required
options are there, and so are the options another one requires; a provider that needs
an API key has one. Messages never echo option values or keys.

The key rule: an agent using a keyed provider either has its own key or relies on the
worker pool's default key for that provider. The pool's defaults are declared in
``CONFIG_SYNC_PLATFORM_KEY_PROVIDERS`` (a comma list of providers, or ``*`` for all):
config_sync cannot see the workers' environment, so the operator states what it holds.

    >>> from core_voice_contracts.runtime_config import ProviderSpec
    >>> key_problems({"llm": ProviderSpec(provider="groq")}, [], {ALL_PROVIDERS})
    []
"""

import re
from collections.abc import Collection, Mapping
from functools import cache
from typing import Any

import msgspec

from core_voice_config_sync.errors import InvalidConfigError
from core_voice_contracts.provider_catalog import (
    CATALOG,
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
ALL_PROVIDERS = "*"
"""In the platform key providers: the worker pool holds a default key for every provider."""
PLATFORM_KEYS_ENV = "CONFIG_SYNC_PLATFORM_KEY_PROVIDERS"
VENDOR_URLS = frozenset(
    url for kind in KINDS for info in CATALOG.of_kind(kind) for url in info.vendor_urls
)
"""Providers' own endpoints from the catalogue: a ``base_url`` naming one is trusted
(`outbound` checks only others)."""
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
    if (
        info.pattern is not None
        and isinstance(converted, str)
        and not _pattern(info.pattern).fullmatch(converted)
    ):
        return [(field, "not a valid value")]
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
        if name in spec.options:
            problems += [
                (f"{base}.options.{needed}", f"required with options.{name}")
                for needed in option.requires or ()
                if needed not in spec.options
            ]
    return problems


def platform_holds_key(provider: str, platform_keys: Collection[str]) -> bool:
    """Whether the worker pool lends ``provider``'s default key (listed, or ``*``)."""
    return ALL_PROVIDERS in platform_keys or provider in platform_keys


def key_problems(
    specs: Mapping[str, ProviderSpec],
    have_keys: Collection[str],
    platform_keys: Collection[str],
    *,
    prefix: str = "",
) -> Problems:
    """A provider that needs a key must have one: the agent's, or the pool's default
    (never for a custom ``base_url``: the worker refuses to send a pool key there)."""
    problems: Problems = []
    for kind, spec in specs.items():
        info = find_provider(kind, spec.provider)
        if info is None or info.key != KeyPolicy.REQUIRED:
            continue
        if spec.provider in have_keys:
            continue
        base_url = spec.options.get("base_url")
        if base_url is not None and base_url not in info.vendor_urls:
            problems.append(
                (
                    f"{prefix}keys.{spec.provider}",
                    f"required by {kind}.provider {spec.provider!r} with a custom base_url "
                    "(the pool's default key is never sent to an agent's URL)",
                )
            )
            continue
        if platform_holds_key(spec.provider, platform_keys):
            continue
        problems.append(
            (
                f"{prefix}keys.{spec.provider}",
                f"required by {kind}.provider {spec.provider!r}: give the agent its own "
                f"key, or let the worker pool's default key serve it "
                f"({PLATFORM_KEYS_ENV}={spec.provider}, or {ALL_PROVIDERS} for every provider)",
            )
        )
    return problems


def keyed_provider_names() -> list[str]:
    """Providers a pool default key can serve: those whose key is required."""
    return sorted(
        {
            info.name
            for kind in KINDS
            for info in CATALOG.of_kind(kind)
            if info.key == KeyPolicy.REQUIRED
        }
    )


def platform_key_problems(names: Collection[str]) -> list[str]:
    """Names in ``CONFIG_SYNC_PLATFORM_KEY_PROVIDERS`` that name no provider a pool key
    could serve (a typo there would otherwise refuse agents with no clue why)."""
    allowed = {*keyed_provider_names(), ALL_PROVIDERS}
    return sorted(name for name in names if name not in allowed)


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
