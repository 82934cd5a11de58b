"""Where a provider's credentials come from: the agent's own key, else the pool's default.

The pool's defaults are the worker's environment variables (``OPENAI_API_KEY``, ...). A
worker started with ``WORKER_KEY_FALLBACK=false`` builds its `KeySource` with
``fallback=False``, so only the agents' own keys are ever used. Nothing here is global:
the registry hands each factory the `KeySource` of its call.

    >>> from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec
    >>> keys = KeySource(ProviderKeys(), pool={"GROQ_API_KEY": "gsk-pool"})
    >>> api_key(ProviderSpec(provider="groq"), keys, "GROQ_API_KEY")
    'gsk-pool'
"""

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from core_voice_contracts.runtime_config import ProviderKeys, ProviderSpec
from core_voice_worker.errors import ProviderConfigError

SECRET_ENV_SUFFIXES = ("_API_KEY", "_SECRET_ACCESS_KEY", "_SESSION_TOKEN")
"""Environment variables with these endings hold secrets: redacted from plugin errors."""

FALLBACK_ENV = "WORKER_KEY_FALLBACK"


@dataclass(frozen=True, slots=True)
class KeySource:
    """The credentials one call may use: ``agent`` keys, then ``pool`` (the environment).

    ``fallback=False`` ignores ``pool``: the pool lends no default key to any agent.
    """

    agent: ProviderKeys
    pool: Mapping[str, str] = field(default_factory=dict, repr=False)
    fallback: bool = True

    @classmethod
    def from_env(cls, keys: ProviderKeys, *, fallback: bool = True) -> "KeySource":
        """The agent's keys over this process's environment, read when a factory asks."""
        return cls(keys, os.environ, fallback)

    def get(self, provider: str) -> str | None:
        """The agent's own key for ``provider`` (an empty one counts as none)."""
        return self.agent.get(provider) or None

    def pool_key(self, env_var: str) -> str | None:
        """The pool's default in ``env_var``, unless the pool lends none."""
        if not self.fallback:
            return None
        return self.pool.get(env_var) or None

    def secrets(self) -> list[str]:
        """Every secret a factory could have read, to strip from messages we pass on.

        An agent key is also split on ``:`` (a Bedrock key carries two secrets in one).
        The environment is scanned even when it lends nothing: a plugin may read it itself.
        """
        found: list[str] = []
        for value in self.agent.values.values():
            found += [value, *value.split(":")]
        for env in (self.pool, os.environ):
            found += [v for k, v in env.items() if k.endswith(SECRET_ENV_SUFFIXES)]
        # Longest first, so a key is replaced whole before any part of it.
        return sorted({s for s in found if s}, key=len, reverse=True)


def require_own_key_for_custom_url(
    spec: ProviderSpec, *, option: str = "base_url", vendor_urls: Collection[str] = ()
) -> None:
    """Refuse a custom endpoint unless the agent has its own key.

    The pool's key must never be sent to a URL an agent config chose. ``vendor_urls``
    are the provider's own endpoints (e.g. its EU region): choosing one is not custom.
    """
    url = spec.options.get(option)
    if url is not None and url not in vendor_urls:
        raise ProviderConfigError(
            f"{spec.provider} with a custom {option} needs the agent's own API key"
        )


def missing_key(provider: str, env_vars: str, keys: KeySource) -> ProviderConfigError:
    """The error for a call with no usable key: says where a key may come from."""
    if keys.fallback:
        return ProviderConfigError(
            f"{provider} needs an API key: set it on the agent or in {env_vars}"
        )
    return ProviderConfigError(
        f"{provider} needs the agent's own API key"
        f" (this worker pool lends no default keys: {FALLBACK_ENV}=false)"
    )


def api_key(
    spec: ProviderSpec, keys: KeySource, env_var: str, *, vendor_urls: Collection[str] = ()
) -> str:
    """The agent's key for ``spec.provider``, else the pool's in ``env_var``.

    A custom ``base_url`` is allowed only with the agent's own key (see
    `require_own_key_for_custom_url`).
    """
    if key := keys.get(spec.provider):
        return key
    require_own_key_for_custom_url(spec, vendor_urls=vendor_urls)
    if key := keys.pool_key(env_var):
        return key
    raise missing_key(spec.provider, env_var, keys)
