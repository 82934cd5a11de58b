"""Connecting to NATS and publishing contract messages the same way everywhere."""

import ipaddress
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec
import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from core_voice_contracts.codec import encode
from core_voice_contracts.permissions import Role, inbox_prefix
from core_voice_contracts.streams import ensure_streams

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"

# The same variables the `nats` CLI reads, so one env file serves a service and a shell.
ENV_URL, ENV_USER, ENV_PASSWORD, ENV_CA = "NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_CA"
ENV_STREAM_REPLICAS = "NATS_STREAM_REPLICAS"


@dataclass(frozen=True)
class NatsAccess:
    """Where the bus is and who connects: a role's user, its password, the CA for TLS.

    The password never shows in a repr. ``ca_file`` (or a ``tls://`` URL) turns TLS on.
    """

    url: str
    role: Role | None = None
    """Picks the reply inbox prefix its permissions allow; None: nats.py's default."""
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    stream_replicas: int = 1
    """Replicas of the JetStream streams: 1 on one server, 3 on a cluster (R3)."""

    @classmethod
    def for_role(
        cls,
        role: Role,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        stream_replicas: int = 1,
    ) -> "NatsAccess":
        """A service's access from its settings; the user defaults to the role's name."""
        user_name = user if password is None else user or role.value
        return cls(
            url,
            role=role,
            user=user_name,
            password=password,
            ca_file=ca_file,
            stream_replicas=stream_replicas,
        )

    @property
    def servers(self) -> list[str]:
        """The server URLs: ``url`` may list several, comma-separated (the nodes of a
        cluster, as the `nats` CLI takes them), so a client whose node is down at
        start-up or reconnect still finds another."""
        return [part.strip() for part in self.url.split(",") if part.strip()]

    @property
    def tls(self) -> bool:
        return self.ca_file is not None or any(
            urlsplit(url).scheme == "tls" for url in self.servers
        )

    @property
    def loopback(self) -> bool:
        """Every server is on this host: nothing sent to them crosses a network."""
        return all(_loopback(urlsplit(url).hostname or "") for url in self.servers)

    def env(self) -> dict[str, str]:
        """The variables a service process (or the `nats` CLI) connects with."""
        env = {ENV_URL: self.url}
        if self.user is not None:
            env[ENV_USER] = self.user
        if self.password is not None:
            env[ENV_PASSWORD] = self.password
        if self.ca_file is not None:
            env[ENV_CA] = self.ca_file
        if self.stream_replicas != 1:
            env[ENV_STREAM_REPLICAS] = str(self.stream_replicas)
        return env

    def options(self) -> dict[str, Any]:
        """`nats.connect` keyword arguments for this access (user, inbox prefix, TLS)."""
        options: dict[str, Any] = {}
        if self.user is not None:
            options["user"] = self.user
            options["password"] = self.password or ""
        if self.role is not None:
            options["inbox_prefix"] = inbox_prefix(self.role)
        context = self.ssl_context()
        if context is not None:
            options["tls"] = context
        return options

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.ca_file)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def connect(
    access: NatsAccess | str,
    *,
    name: str,
    ensure: bool = True,
    on_disconnected: Callable[[], None] | None = None,
    on_reconnected: Callable[[], None] | None = None,
) -> tuple[Client, JetStreamContext]:
    """Connect with unlimited reconnects (a bus outage is waited out, not fatal).

    ``access`` is a `NatsAccess`, or a bare URL for a server without authentication.
    Streams are created when missing; only the roles that own them (config_sync, the
    dispatcher, an operator) also bring an existing definition up to date.

    Core subscriptions miss whatever is published while the connection is down: a
    caller that keeps state derived from them clears it in ``on_disconnected`` /
    ``on_reconnected`` (plain functions, called on the client's loop; they must not block).
    """

    async def _disconnected() -> None:
        log.warning("nats disconnected", extra={"client": name})
        if on_disconnected is not None:
            on_disconnected()

    async def _reconnected() -> None:
        log.info("nats reconnected", extra={"client": name})
        if on_reconnected is not None:
            on_reconnected()

    async def _error(exc: Exception) -> None:
        log.warning("nats error", extra={"client": name, "error": type(exc).__name__})

    if isinstance(access, str):
        access = NatsAccess(access)
    servers = access.servers
    nc = await nats.connect(
        servers[0] if len(servers) == 1 else servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        disconnected_cb=_disconnected,
        reconnected_cb=_reconnected,
        error_cb=_error,
        **access.options(),
    )
    js = nc.jetstream()
    if ensure:
        owner = access.role in (None, Role.CONFIG_SYNC, Role.DISPATCHER, Role.OPERATOR)
        try:
            await ensure_streams(js, access.stream_replicas, update=owner)
        except BaseException:
            await nc.close()  # a caller that gets no client cannot close it
            raise
    return nc, js


async def publish(
    js: JetStreamContext,
    subject: str,
    message: msgspec.Struct,
    *,
    msg_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> PubAck:
    """Publish to JetStream and wait for the stream's ack (the message is durable)."""
    hdrs = dict(headers or {})
    if msg_id is not None:
        hdrs[MSG_ID_HEADER] = msg_id
    return await js.publish(subject, encode(message), headers=hdrs or None, timeout=timeout)
