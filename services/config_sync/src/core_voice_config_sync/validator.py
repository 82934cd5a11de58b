"""The catalogue checks of an agent config, alone and merged with each of its campaigns,
and the ``base_url`` checks that keep workers off internal addresses."""

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from core_voice_config_sync.errors import InvalidConfigError
from core_voice_config_sync.merge import merge_spec
from core_voice_config_sync.outbound import OutboundPolicy, resolve_problem, url_problem
from core_voice_config_sync.records import ConfigFields, LinkRecord
from core_voice_config_sync.validation import (
    KINDS,
    VENDOR_URLS,
    Problems,
    key_problems,
    spec_problems,
)
from core_voice_contracts.admin_api import CampaignOverrides
from core_voice_contracts.runtime_config import ProviderSpec


def config_specs(fields: ConfigFields) -> dict[str, ProviderSpec]:
    return {"llm": fields.llm, "stt": fields.stt, "tts": fields.tts}


@dataclass(frozen=True, slots=True)
class Validator:
    """The catalogue checks of an agent config, alone and merged with its campaigns."""

    platform_keys: frozenset[str] = frozenset()
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    """Where a ``base_url`` may point (`outbound`): public https unless allowed."""

    def url_problems(self, specs: Mapping[str, ProviderSpec], *, prefix: str = "") -> Problems:
        """``base_url`` options that point somewhere workers must not go (no DNS here)."""
        problems: Problems = []
        for kind, url in _base_urls(specs):
            problem = url_problem(url, self.outbound)
            if problem is not None:
                problems.append((f"{prefix}{kind}.options.base_url", problem))
        return problems

    async def check_urls(self, choices: Mapping[str, Any], *, prefix: str = "") -> None:
        """Resolve the ``base_url`` options a request brings (422 if any host is or
        resolves to an internal address). Run before the write's transaction: DNS may
        take seconds."""
        problems: Problems = []
        for kind, url in _base_urls(choices):
            problem = await resolve_problem(url, self.outbound)
            if problem is not None:
                problems.append((f"{prefix}{kind}.options.base_url", problem))
        if problems:
            raise InvalidConfigError.of(problems)

    def config_problems(self, fields: ConfigFields, have_keys: Collection[str]) -> Problems:
        specs = config_specs(fields)
        problems: Problems = []
        for kind, spec in specs.items():
            problems += spec_problems(kind, spec)
        problems += self.url_problems(specs)
        return problems + key_problems(specs, have_keys, self.platform_keys)

    def merged_problems(
        self,
        fields: ConfigFields,
        have_keys: Collection[str],
        overrides: CampaignOverrides,
        *,
        prefix: str,
    ) -> Problems:
        """Problems of ``fields`` ⊕ ``overrides``, named ``<prefix>llm.model`` etc."""
        merged = {
            kind: merge_spec(spec, getattr(overrides, kind))
            for kind, spec in config_specs(fields).items()
        }
        problems: Problems = []
        for kind in KINDS:
            if getattr(overrides, kind) is not None:
                problems += spec_problems(kind, merged[kind], field=f"{prefix}{kind}")
                problems += self.url_problems({kind: merged[kind]}, prefix=prefix)
        return problems + key_problems(merged, have_keys, self.platform_keys, prefix=prefix)

    def check_agent(
        self, fields: ConfigFields, have_keys: Collection[str], links: list[LinkRecord]
    ) -> None:
        problems = self.config_problems(fields, have_keys)
        if not problems:
            for link in links:
                problems += self.merged_problems(
                    fields,
                    have_keys,
                    link.overrides,
                    prefix=f"campaign {link.campaign_id}: ",
                )
        if problems:
            raise InvalidConfigError.of(problems)


def _base_urls(choices: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, url) of each ``base_url`` option that is not one of the catalogue's vendor
    endpoints; ``choices`` are specs, request choices or overrides (None skipped)."""
    for kind, choice in choices.items():
        options = getattr(choice, "options", None) or {}
        url = options.get("base_url")
        if isinstance(url, str) and url not in VENDOR_URLS:
            yield kind, url
