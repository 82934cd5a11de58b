"""Reading a time window of the job and call streams with the operator's NATS login.

Read-only and leaves nothing behind: one ordered consumer per stream (ephemeral, in
memory, no acks) starting at the window's start time, read until it has caught up, then
dropped; the server removes it after ``INACTIVE_S`` in any case. No durable consumer is
ever created and no stream is created or updated (``ensure=False``), so a typo'd URL or a
fresh server is never changed by a look.

Every failure a person can cause or fix (server down, wrong password, missing rights)
is a `BusError` with one line that names the server but never the password.
"""

import contextlib
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import AuthorizationError, NoServersError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from core_voice_cli.timeline import Record
from core_voice_contracts import subjects
from core_voice_contracts.bus import ENV_CA, ENV_PASSWORD, ENV_URL, ENV_USER, NatsAccess
from core_voice_contracts.codec import decode_call_event, decode_job_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.permissions import Role
from core_voice_contracts.streams import VOICE_CALLS, VOICE_JOBS

CONNECT_TIMEOUT_S = 3
NEXT_MSG_TIMEOUT_S = 5.0
"""A caught-up check waits at most this long for the next message of the window."""
INACTIVE_S = 10.0
"""The server drops a consumer left behind (a killed command) after this long."""
TRACEPARENT = "traceparent"


class BusError(Exception):
    """NATS could not be read; the message is one line, safe to print."""


def access_from_env(env: Mapping[str, str], fallback_file: Path) -> NatsAccess:
    """The operator's login, like the `nats` CLI's: ``NATS_URL``/``NATS_USER``/
    ``NATS_PASSWORD``/``NATS_CA``; without ``NATS_URL``, the file `corevoice up` writes
    (same variables), so a shell next to the embedded stack needs no setup."""
    values = dict(env) if env.get(ENV_URL) else _read_env_file(fallback_file)
    if not values.get(ENV_URL):
        raise BusError(
            f"no NATS login: set {ENV_URL}, {ENV_USER}, {ENV_PASSWORD} "
            f"(or start the stack with `corevoice up`, which writes {fallback_file})"
        )
    return NatsAccess(
        values[ENV_URL],
        role=Role.OPERATOR,
        user=values.get(ENV_USER) or None,
        password=values.get(ENV_PASSWORD),
        ca_file=values.get(ENV_CA) or None,
    )


def _read_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BusError(f"cannot read {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values


def safe_url(url: str) -> str:
    """The URL without any ``user:password@`` in it, for messages."""
    parts = urlsplit(url)
    if parts.hostname is None or "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


@dataclass(frozen=True)
class Window:
    """The events read, and how many messages were not events (poison, foreign)."""

    records: list[Record]
    skipped: int = 0


async def read_window(access: NatsAccess, since: dt.datetime) -> Window:
    """Every job and call event stored at or after ``since``."""
    nc = await _connect(access)
    try:
        js = nc.jetstream()
        jobs = await _read_stream(js, VOICE_JOBS, subjects.JOBS_ALL, since, access)
        calls = await _read_stream(js, VOICE_CALLS, subjects.CALLS_ALL, since, access)
    finally:
        await nc.close()
    return Window(jobs.records + calls.records, jobs.skipped + calls.skipped)


async def _connect(access: NatsAccess) -> Client:
    """Two quick attempts, no reconnects: a person is waiting for an answer, not for the
    bus. (nats.py's 0 for ``max_reconnect_attempts`` means: retry forever.)"""
    seen: list[Exception] = []

    async def _note(exc: Exception) -> None:
        """Instead of nats.py's default, which logs a traceback per attempt."""
        seen.append(exc)

    where = safe_url(access.url)
    refused = f"NATS at {where} refused the login of user {access.user!r}"
    try:
        return await nats.connect(
            access.url,
            name="corevoice-calls",
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            connect_timeout=CONNECT_TIMEOUT_S,
            error_cb=_note,
            **access.options(),
        )
    except AuthorizationError:
        raise BusError(refused) from None
    except (NoServersError, OSError, TimeoutError, NatsTimeoutError) as exc:
        cause = seen[-1] if seen else exc
        raise BusError(f"cannot reach NATS at {where}: {_what(cause)}") from None
    except NatsError as exc:
        # nats-server answers a bad login with -ERR 'Authorization Violation', which
        # nats.py raises as a plain Error; its text is the server's, never ours.
        if "authorization" in str(exc).lower():
            raise BusError(refused) from None
        raise BusError(f"cannot connect to NATS at {where}: {_what(exc)}") from None


def _what(exc: BaseException) -> str:
    """A short, secret-free description of a connection failure."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, TimeoutError | NatsTimeoutError):
        return "timed out"
    return type(exc).__name__


async def _read_stream(
    js: JetStreamContext, stream: str, subject: str, since: dt.datetime, access: NatsAccess
) -> Window:
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=since,
        inactive_threshold=INACTIVE_S,
        description="corevoice calls: a one-off read of a time window",
    )
    try:
        sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
    except NotFoundError:
        return Window([])  # no such stream yet: nothing has happened on this bus
    except (NatsTimeoutError, TimeoutError):
        raise BusError(
            f"NATS did not answer a read of {stream} as user {access.user!r} "
            "(is JetStream enabled, and may this user create consumers on it?)"
        ) from None
    except APIError as exc:
        raise BusError(f"NATS refused a read of {stream}: {exc.description}") from None
    try:
        info = await sub.consumer_info()
        delivered = info.delivered.consumer_seq if info.delivered else 0
        if info.num_pending == 0 and not delivered:
            return Window([])
        decode = decode_job_event if stream == VOICE_JOBS else decode_call_event
        records: list[Record] = []
        skipped = 0
        while True:
            try:
                msg = await sub.next_msg(timeout=NEXT_MSG_TIMEOUT_S)
            except (NatsTimeoutError, TimeoutError):
                raise BusError(f"reading {stream} stalled: no message within the timeout") from None
            meta = msg.metadata
            try:
                records.append(Record(decode(msg.data), meta.timestamp, _traceparent(msg)))
            except DecodeError:
                skipped += 1
            if meta.num_pending == 0:
                return Window(records, skipped)
    finally:
        with contextlib.suppress(NatsError):  # else the server drops it after INACTIVE_S
            await sub.unsubscribe()


def _traceparent(msg: Msg) -> str:
    """W3C header names are case-insensitive; NATS headers are not."""
    for key, value in (msg.headers or {}).items():
        if key.lower() == TRACEPARENT:
            return value
    return ""
