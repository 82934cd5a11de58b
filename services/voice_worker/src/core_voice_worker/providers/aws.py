"""Amazon Bedrock LLM (``livekit-plugins-aws``, the Converse streaming API).

AWS signs requests with two secrets, so an agent's ``keys["bedrock"]`` carries both:
``ACCESS_KEY_ID:SECRET_ACCESS_KEY`` or, for temporary credentials,
``ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN`` (none of the three contains ``:``).
Without one, the pool's ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and
``AWS_SESSION_TOKEN`` if set) are used. The credentials are always set explicitly, so
botocore's own chain (profiles, instance roles) is never consulted behind our back.
The region is ``options.region`` (default ``us-east-1``); ``options.base_url`` becomes
the client's ``endpoint_url`` (a VPC endpoint, or a local fake in tests).

    >>> AwsCredentials.parse("AKIDEXAMPLE:wJalrXUtnFEMI")
    AwsCredentials(access_key_id='AKIDEXAMPLE')
"""

from dataclasses import dataclass, field
from typing import Any

from livekit.agents import llm

from core_voice_contracts.runtime_config import ProviderSpec
from core_voice_worker.errors import ProviderConfigError
from core_voice_worker.providers.keys import (
    KeySource,
    missing_key,
    require_own_key_for_custom_url,
)
from core_voice_worker.providers.registry import (
    LLM_PROVIDERS,
    given,
    plugin_kwargs,
    requires_plugin,
)

try:
    from aiobotocore.session import AioSession
    from livekit.plugins import aws
except ImportError:  # this module's provider fails its calls; the rest still work
    INSTALLED = False
else:
    INSTALLED = True

    class EndpointSession(AioSession):  # type: ignore[misc]  # aiobotocore is untyped
        """A session whose clients all talk to ``endpoint_url``: the plugin creates its
        Bedrock client itself and has no endpoint argument."""

        def __init__(self, endpoint_url: str | None) -> None:
            super().__init__()
            self._endpoint_url = endpoint_url

        def create_client(self, *args: Any, **kwargs: Any) -> Any:
            if self._endpoint_url is not None:
                kwargs.setdefault("endpoint_url", self._endpoint_url)
            return super().create_client(*args, **kwargs)


BEDROCK = "bedrock"
DEFAULT_REGION = "us-east-1"
POOL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
KEY_FORMAT = "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]"


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """An access key pair (and session token); only the key id shows in a repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, key: str) -> "AwsCredentials":
        """Read an agent's ``KEY_FORMAT`` key; the message never quotes it."""
        parts = key.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise ProviderConfigError(f"{BEDROCK} key must be {KEY_FORMAT}")
        return cls(*parts)


def aws_credentials(spec: ProviderSpec, keys: KeySource) -> AwsCredentials:
    """The agent's credentials, else the pool's (as `keys.api_key` does for one key)."""
    if key := keys.get(spec.provider):
        return AwsCredentials.parse(key)
    require_own_key_for_custom_url(spec)
    access_key_id, secret = (keys.pool_key(name) for name in POOL_ENV)
    if access_key_id and secret:
        return AwsCredentials(access_key_id, secret, keys.pool_key("AWS_SESSION_TOKEN"))
    raise missing_key(spec.provider, " and ".join(POOL_ENV), keys)


def _text_option(spec: ProviderSpec, name: str) -> str | None:
    value = spec.options.get(name)
    if value is not None and not isinstance(value, str):
        raise ProviderConfigError(f"llm provider {BEDROCK!r} options.{name} must be a string")
    return value or None


@LLM_PROVIDERS.register(BEDROCK)
@requires_plugin(INSTALLED, "livekit-plugins-aws")
def bedrock_llm(spec: ProviderSpec, keys: KeySource) -> llm.LLM[Any]:
    credentials = aws_credentials(spec, keys)
    session = EndpointSession(_text_option(spec, "base_url"))
    session.set_credentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    session.set_config_variable("region", _text_option(spec, "region") or DEFAULT_REGION)
    return aws.LLM(
        **plugin_kwargs(
            spec, omit=("base_url", "region"), session=session, **given(model=spec.model)
        )
    )
