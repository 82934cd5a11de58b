"""Who may do what on the bus: one NATS user per service, least privilege, from here only.

The server configuration (`corevoice up`, the tests, the Helm chart) is rendered from
`grants()`, so a service's rights change in one place. Allow lists are exact: anything a
role is not granted is refused by nats-server (a publish is dropped with a permissions
violation, a subscription is refused). Two rules keep provider keys with the workers:

- only ``worker`` may publish ``voice.config.get``, the one reply that carries keys;
- each role has its own reply inbox prefix (``_INBOX_<role>.``), and no other role may
  subscribe to it, so nobody can listen in on another service's replies. The operator's
  ``>`` subscription is denied the workers' and config_sync's inboxes.

JetStream is reached through its API subjects, so a role is granted the API calls its
streams and consumers need and nothing more: no role but the operator may delete or
purge a stream; telemetry may not publish a single event.
"""

from dataclasses import dataclass, field
from enum import StrEnum

from core_voice_contracts import subjects
from core_voice_contracts.streams import VOICE_CALLS, VOICE_CONFIG, VOICE_JOBS

JS_API = "$JS.API"


class Role(StrEnum):
    CONFIG_SYNC = "config_sync"
    DISPATCHER = "dispatcher"
    WORKER = "worker"
    TELEMETRY = "telemetry"
    OPERATOR = "operator"
    """A person with the `nats` CLI: sees and re-drives the streams, cannot read keys."""


SERVICE_ROLES = (Role.CONFIG_SYNC, Role.DISPATCHER, Role.WORKER, Role.TELEMETRY)


@dataclass(frozen=True)
class Grant:
    """One NATS user's permissions, in nats-server's terms."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()
    allow_responses: bool = False
    """May answer requests it received (reply subjects), without a general publish right."""

    def server_config(self) -> dict[str, object]:
        """The ``permissions`` block of a user in nats-server's config."""
        publish: dict[str, object] = {"allow": list(self.publish)}
        if self.publish_deny:
            publish["deny"] = list(self.publish_deny)
        subscribe: dict[str, object] = {"allow": list(self.subscribe)}
        if self.subscribe_deny:
            subscribe["deny"] = list(self.subscribe_deny)
        config: dict[str, object] = {"publish": publish, "subscribe": subscribe}
        if self.allow_responses:
            config["allow_responses"] = True
        return config


@dataclass(frozen=True)
class _Streams:
    """JetStream API subjects for one role, built from what it does per stream."""

    allowed: list[str] = field(default_factory=list)

    def ensure(self, *streams: str, update: bool) -> "_Streams":
        """Look up and create-if-missing (every service); update only for the owners."""
        self.allowed.append(f"{JS_API}.STREAM.NAMES")  # a subscribe by subject finds its stream
        for stream in streams:
            self.allowed.extend(
                [f"{JS_API}.STREAM.INFO.{stream}", f"{JS_API}.STREAM.CREATE.{stream}"]
            )
            if update:
                self.allowed.append(f"{JS_API}.STREAM.UPDATE.{stream}")
        return self

    def pull(self, stream: str, consumer: str) -> "_Streams":
        """A durable pull consumer ``consumer`` (a name or a wildcard) it creates and reads."""
        self.allowed.extend(
            [
                f"{JS_API}.CONSUMER.CREATE.{stream}.{consumer}",
                f"{JS_API}.CONSUMER.CREATE.{stream}.{consumer}.>",
                f"{JS_API}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
                f"{JS_API}.CONSUMER.INFO.{stream}.{consumer}",
                f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                f"$JS.ACK.{stream}.{consumer}.>",
            ]
        )
        return self

    def ordered(self, stream: str) -> "_Streams":
        """Ordered (ephemeral push) consumers: created, recreated on a gap, flow-controlled."""
        self.allowed.extend(
            [
                f"{JS_API}.CONSUMER.CREATE.{stream}",
                f"{JS_API}.CONSUMER.CREATE.{stream}.>",
                f"{JS_API}.CONSUMER.DELETE.{stream}.*",
                f"{JS_API}.CONSUMER.INFO.{stream}.*",
                f"$JS.FC.{stream}.>",
            ]
        )
        return self

    def replay(self, stream: str) -> "_Streams":
        """An ordered consumer that reads a range once at start (telemetry): created
        unnamed, looked at, flow-controlled; not deleted (the server drops it when idle)."""
        self.allowed.extend(
            [
                f"{JS_API}.CONSUMER.CREATE.{stream}",
                f"{JS_API}.CONSUMER.INFO.{stream}.*",
                f"$JS.FC.{stream}.>",
            ]
        )
        return self


def inbox_prefix(role: Role) -> str:
    """The reply inbox prefix of a role's connections (``connect()`` sets it)."""
    return f"_INBOX_{role.value}"


def _inbox(role: Role) -> str:
    return f"{inbox_prefix(role)}.>"


# micro's discovery subjects ($SRV.PING, $SRV.INFO.config-sync, $SRV.STATS.config-sync.<id>)
_MICRO = ("$SRV.*", "$SRV.*.config-sync", "$SRV.*.config-sync.*")


def grants(telemetry_prefix: str = "telemetry") -> dict[Role, Grant]:
    """Every role's permissions; telemetry's durable consumers are ``<prefix>-jobs`` etc."""
    config_sync = Grant(
        publish=(
            subjects.CONFIG_CHANGED_ALL,
            subjects.ROUTING_CHANGED_ALL,
            subjects.CONFIG_ECHO_ALL,
            *_Streams().ensure(VOICE_JOBS, VOICE_CALLS, VOICE_CONFIG, update=True).allowed,
        ),
        subscribe=(
            subjects.CONFIG_GET,
            subjects.ROUTING_RESOLVE,
            subjects.CONFIG_CHANGED_ALL,
            subjects.ROUTING_CHANGED_ALL,
            *_MICRO,
            _inbox(Role.CONFIG_SYNC),
        ),
        allow_responses=True,
    )
    dispatcher = Grant(
        publish=(
            subjects.JOBS_REQUESTED_ALL,
            subjects.JOBS_DISPATCHED_ALL,
            subjects.JOBS_EXPIRED_ALL,
            subjects.JOBS_REJECTED_ALL,
            subjects.CALLS_FAILED_ALL,  # worker_lost: a pool gone mid-call cannot say it
            subjects.ROUTING_RESOLVE,
            *_Streams()
            .ensure(VOICE_JOBS, VOICE_CALLS, VOICE_CONFIG, update=True)
            .pull(VOICE_JOBS, "*")
            .ordered(VOICE_CONFIG)
            .allowed,
            f"{JS_API}.CONSUMER.DELETE.{VOICE_JOBS}.*",  # finished replays
            f"{JS_API}.CONSUMER.LIST.{VOICE_JOBS}",  # finds replays to run
            f"{JS_API}.CONSUMER.NAMES.{VOICE_JOBS}",
            f"{JS_API}.STREAM.MSG.GET.{VOICE_JOBS}",  # a redelivered job's JobAccepted
        ),
        subscribe=(
            subjects.JOBS_ACCEPTED_ALL,
            # calls a pool took and never started, when the pool vanished (`unstarted`)
            subjects.CALLS_STARTED_ALL,
            subjects.CALLS_ENDED_ALL,
            subjects.CALLS_FAILED_ALL,
            subjects.WORKER_STATUS,
            _inbox(Role.DISPATCHER),
        ),
    )
    worker = Grant(
        publish=(
            subjects.JOBS_ACCEPTED_ALL,
            subjects.CALLS_STARTED_ALL,
            subjects.CALLS_ENDED_ALL,
            subjects.CALLS_FAILED_ALL,
            subjects.CONFIG_GET,
            subjects.WORKER_STATUS,
            subjects.CONFIG_HELD,
            *_Streams()
            .ensure(VOICE_JOBS, VOICE_CALLS, VOICE_CONFIG, update=False)
            .ordered(VOICE_CONFIG)
            .allowed,
        ),
        subscribe=(
            subjects.JOBS_REQUESTED_ALL,
            subjects.JOBS_DISPATCHED_ALL,
            subjects.CONFIG_ECHO_ALL,
            _inbox(Role.WORKER),
        ),
    )
    telemetry = Grant(
        publish=tuple(
            _Streams()
            .ensure(VOICE_JOBS, VOICE_CALLS, VOICE_CONFIG, update=False)
            .pull(VOICE_JOBS, f"{telemetry_prefix}-jobs")
            .pull(VOICE_CALLS, f"{telemetry_prefix}-calls")
            .pull(VOICE_CONFIG, f"{telemetry_prefix}-config")
            .replay(VOICE_CALLS)  # at start: the calls in progress
            .replay(VOICE_CONFIG)  # at start: the routed agents and their tenants
            .allowed
        ),
        subscribe=(subjects.WORKER_STATUS, subjects.CONFIG_HELD, _inbox(Role.TELEMETRY)),
    )
    operator = Grant(
        publish=(">",),
        subscribe=(">",),
        publish_deny=(subjects.CONFIG_GET,),
        subscribe_deny=(_inbox(Role.WORKER), _inbox(Role.CONFIG_SYNC)),
    )
    return {
        Role.CONFIG_SYNC: config_sync,
        Role.DISPATCHER: dispatcher,
        Role.WORKER: worker,
        Role.TELEMETRY: telemetry,
        Role.OPERATOR: operator,
    }
