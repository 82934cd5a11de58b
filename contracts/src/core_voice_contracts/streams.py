"""JetStream stream definitions, created or updated idempotently by any service.

Whichever service starts first creates the streams; later ones find them and bring
their settings up to date, so a definition change here rolls out with a deploy.
"""

import datetime as dt

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, BadRequestError, NotFoundError

from core_voice_contracts import subjects

VOICE_JOBS = "VOICE_JOBS"
VOICE_CALLS = "VOICE_CALLS"
VOICE_CONFIG = "VOICE_CONFIG"

_STREAM_NAME_IN_USE = 10058
"""JetStream's error code for "stream name already in use" (a concurrent create)."""
_DAY = dt.timedelta(days=1).total_seconds()


class StreamSetupError(RuntimeError):
    """The server refused a stream definition, e.g. 3 replicas on a single server.

    Says which stream, the server's reason and the replica count asked for, so an
    operator sees at once that ``NATS_STREAM_REPLICAS`` and the cluster disagree.
    """


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    """The three streams; ``replicas`` is 3 in production clusters, 1 embedded."""
    return [
        StreamConfig(
            name=VOICE_JOBS,
            subjects=[subjects.JOBS_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * _DAY,
            duplicate_window=300.0,
            num_replicas=replicas,
            description="Room-to-agent jobs: requested, dispatched, accepted, expired, rejected",
        ),
        StreamConfig(
            name=VOICE_CALLS,
            subjects=[subjects.CALLS_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=30 * _DAY,
            duplicate_window=120.0,
            num_replicas=replicas,
            description="Call lifecycle: started, ended, failed",
        ),
        StreamConfig(
            name=VOICE_CONFIG,
            subjects=[subjects.CONFIG_CHANGED_ALL, subjects.ROUTING_CHANGED_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
            discard=DiscardPolicy.OLD,
            duplicate_window=120.0,
            num_replicas=replicas,
            description="Latest config change per agent, latest routing change per tenant",
        ),
    ]


async def ensure_streams(js: JetStreamContext, replicas: int = 1, *, update: bool = True) -> None:
    """Create each stream, or update it to the definition above if it exists (keeping any
    further subjects it has). ``update=False``: create only (roles without update rights).

    ``replicas`` (``NATS_STREAM_REPLICAS``) is part of the definition: owners scale an
    existing stream to it (NATS moves R1 to R3 online in a cluster). Raises
    `StreamSetupError` when the server refuses a definition.
    """
    for config in stream_configs(replicas):
        assert config.name is not None
        try:
            await _ensure_stream(js, config, update=update)
        except APIError as exc:
            if isinstance(exc, NotFoundError):
                raise
            raise StreamSetupError(
                f"stream {config.name}: the server refused it with {replicas} replica(s):"
                f" {exc.description or exc} (NATS_STREAM_REPLICAS must not exceed the"
                " JetStream servers in the cluster)"
            ) from None


async def _ensure_stream(js: JetStreamContext, config: StreamConfig, *, update: bool) -> None:
    try:
        info = await js.stream_info(config.name or "")
    except NotFoundError:
        try:
            await js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code != _STREAM_NAME_IN_USE:
                raise
            if update:  # another service created it a moment ago
                await js.update_stream(config)
        return
    if not update:
        return
    # Subjects only grow: a service of the previous release restarting during a
    # rolling deploy must not take away a subject the new release publishes on
    # (the outbox relay would stall on it). Removing one is an operator's step.
    wanted = list(config.subjects or [])
    config.subjects = wanted + [s for s in info.config.subjects or [] if s not in wanted]
    await js.update_stream(config)
