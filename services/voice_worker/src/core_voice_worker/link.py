"""Both ends of the pool's local link (`core_voice_contracts.pool_link`).

`LinkServer` runs in the pool process: it answers each job's config request from the
mirror, pushes newer versions to running calls, takes their events for publishing, and
reports a call whose job went away without a terminal event (its process died).
`PoolLink` is the job's end: one connection per call, opened at job entry.
"""

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import os
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import CallEnded, CallFailed, CallFailure, CallStarted
from core_voice_contracts.pool_link import (
    HEADER,
    MAX_FRAME_BYTES,
    LinkAccepted,
    LinkAgentGone,
    LinkConfig,
    LinkConfigUpdate,
    LinkGetConfig,
    LinkGreeting,
    LinkMessage,
    LinkPublish,
    LinkRefused,
    LinkTurn,
    decode_body,
    encode_frame,
)
from core_voice_contracts.runtime_config import RuntimeConfig
from core_voice_worker.call_events import CallEventPublisher, CallEventT
from core_voice_worker.metrics import ErrorType, PoolMetrics
from core_voice_worker.mirror import ConfigMirror, ConfigRefusedError, Key

log = logging.getLogger(__name__)

ANSWER_NOW_S = 0.005
"""How long a call's first question blocks its job process for the answer (`ask_now`)."""


class LinkClosedError(ConnectionError):
    """The other end of the link went away."""


async def read_message(reader: asyncio.StreamReader) -> LinkMessage:
    """One frame; raises `LinkClosedError` at EOF and `DecodeError` for garbage."""
    try:
        header = await reader.readexactly(HEADER.size)
        (size,) = HEADER.unpack(header)
        if size > MAX_FRAME_BYTES:
            raise DecodeError("pool link message", f"frame of {size} bytes is too large")
        body = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise LinkClosedError("link closed") from exc
    return decode_body(body)


# --- the pool's end --------------------------------------------------------------------


@dataclass(eq=False)
class CallConnection:
    """One job's connection; also the mirror's watcher of that call's config."""

    writer: asyncio.StreamWriter
    call: LinkGetConfig | None = None
    started: CallStarted | None = None
    versions: list[int] = field(default_factory=list)
    ended: bool = False
    opened: float = field(default_factory=time.monotonic)
    traceparent: str = ""
    """The call's trace context (from its events), for a loss the pool reports."""

    @property
    def key(self) -> Key | None:
        return None if self.call is None else (self.call.agent_id, self.call.campaign_id)

    def send(self, message: LinkMessage) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode_frame(message))

    def on_config(self, config: RuntimeConfig, stale: bool) -> None:
        self.send(LinkConfigUpdate(config=config, stale=stale))

    def on_gone(self, agent_id: str, reason: CallFailure) -> None:
        self.send(LinkAgentGone(agent_id=agent_id, reason=reason.value))


class LinkServer:
    def __init__(
        self,
        path: Path,
        mirror: ConfigMirror,
        publisher: CallEventPublisher,
        *,
        worker_id: str,
        on_call_opened: Callable[[int], None] | None = None,
        metrics: PoolMetrics | None = None,
        accepted_at: Callable[[str], dt.datetime | None] | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else PoolMetrics(worker_id)
        self._accepted_at = accepted_at
        """When LiveKit assigned this pool a call (by call id), for `CallStarted.accepted_at`."""
        self.path = path
        self._mirror = mirror
        self._publisher = publisher
        self._worker_id = worker_id
        self._on_call_opened = on_call_opened
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        """The connections' handler tasks: asyncio's server starts them, not the pool's
        `TaskSet`; they are kept to be awaited on stop, when each reports its call's end."""
        self.calls: set[CallConnection] = set()
        self.lost_calls = 0

    def call_count(self) -> int:
        """Connections serving a call (a prewarmed job process connects before its call)."""
        return sum(1 for conn in self.calls if conn.call is not None)

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.calls):
                conn.writer.close()
            # Their ends are reported (a call cut off here counts as lost) before this returns.
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = CallConnection(writer)
        self.calls.add(conn)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        try:
            while True:
                message = await read_message(reader)
                await self._handle(conn, message)
                await writer.drain()
        except LinkClosedError:
            pass
        except DecodeError:
            self.metrics.error(ErrorType.LINK_PROTOCOL)
            log.warning("bad link message; closing the connection")
        finally:
            self.calls.discard(conn)
            if conn.key is not None:
                self._mirror.unwatch(conn.key, conn)
            if conn.call is not None and not conn.ended:
                self._lost(conn)
            writer.close()

    async def _handle(self, conn: CallConnection, message: LinkMessage) -> None:
        match message:
            case LinkGetConfig(req=req):
                conn.call = message
                key = (message.agent_id, message.campaign_id)
                self._mirror.watch(key, conn)
                if self._on_call_opened is not None:
                    self._on_call_opened(self.call_count())
                try:
                    entry = await self._mirror.config_for_call(*key)
                except ConfigRefusedError as exc:
                    conn.send(
                        LinkRefused(
                            req=req,
                            error=exc.error.value,
                            detail=exc.detail,
                            retryable=exc.retryable,
                        )
                    )
                    return
                conn.versions.append(entry.config.version)
                conn.send(LinkConfig(req=req, config=entry.config, stale=entry.stale))
            case LinkPublish(req=req, event=event, traceparent=traceparent):
                match event:
                    case CallStarted():
                        event = self._with_accepted_at(event)
                        conn.started = event
                    case CallEnded() | CallFailed():
                        conn.ended = True
                conn.traceparent = traceparent or conn.traceparent
                self._publisher.submit(event, traceparent=traceparent)
                conn.send(LinkAccepted(req=req))
            case LinkTurn(turn=turn):
                self.metrics.turn(turn)
            case LinkGreeting(latency_s=latency_s):
                self.metrics.greeting(latency_s)
            case _:
                log.warning("unexpected link message", extra={"type": type(message).__name__})

    def _with_accepted_at(self, event: CallStarted) -> CallStarted:
        """The pool saw LiveKit's assignment itself: its time is the call's
        ``accepted_at`` (the job process only knows when it started)."""
        accepted = self._accepted_at(event.call_id) if self._accepted_at is not None else None
        if accepted is None:
            return event
        return msgspec.structs.replace(event, accepted_at=accepted)

    def _lost(self, conn: CallConnection) -> None:
        """The job went away without reporting its end: its process died (or was killed
        at the drain deadline). The pool is alive, so the pool reports it."""
        assert conn.call is not None
        call, started = conn.call, conn.started
        self.lost_calls += 1
        log.warning(
            "call lost: job ended without a terminal event",
            extra={"call_id": call.call_id, "agent_id": call.agent_id},
        )
        self._publisher.submit(
            CallFailed(
                call_id=call.call_id,
                job_id=call.job_id,
                room_name=call.room_name,
                agent_id=call.agent_id,
                tenant_id=started.tenant_id if started else "",
                config_version=started.config_version if started else 0,
                campaign_id=call.campaign_id,
                worker_id=self._worker_id,
                error=CallFailure.JOB_CRASHED,
                detail="the call's job process ended without reporting the call's end",
                duration_s=time.monotonic() - conn.opened,
                config_versions=conn.versions,
            ),
            traceparent=conn.traceparent,
        )


# --- the job's end ---------------------------------------------------------------------


def preconnect(path: str) -> socket.socket | None:
    """Connect while the job process is still idle (prewarm), so a call's first request
    needs no connection setup; None if the pool cannot be reached (the call then tries
    again and reports why)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def ask_now(
    sock: socket.socket, request: LinkGetConfig, wait: float
) -> tuple[LinkMessage | None, list[LinkMessage]]:
    """Send ``request`` and wait up to ``wait`` seconds for its answer, blocking.

    A call's first question is answered from the pool's memory in well under a
    millisecond; asked through a job process's event loop, which is busy starting the
    job, the answer waited its turn for milliseconds. Returns the answer (None if it did
    not come in time: the caller then awaits it normally) and any pushes read before it.
    """
    sock.setblocking(True)
    try:
        sock.sendall(encode_frame(request))
        early: list[LinkMessage] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if not readable:
                break
            sock.settimeout(1.0)  # the rest of a frame the pool wrote whole
            message = decode_body(_recv_exact(sock, HEADER.unpack(_recv_exact(sock, 4))[0]))
            sock.settimeout(None)
            if getattr(message, "req", None) == request.req:
                return message, early
            early.append(message)
        return None, early
    finally:
        sock.setblocking(False)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    if size > MAX_FRAME_BYTES:
        raise DecodeError("pool link message", f"frame of {size} bytes is too large")
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise LinkClosedError("link closed")
        data += chunk
    return bytes(data)


class PoolLink:
    """A call's connection to its pool: config in, pushes in, events out."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, next_req: int = 1
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(next_req)
        self._pending: dict[int, asyncio.Future[LinkMessage]] = {}
        self._reader_task = asyncio.get_running_loop().create_task(
            self._read(), name="pool-link.read"
        )
        self.on_update: Callable[[RuntimeConfig, bool], None] | None = None
        self.on_gone: Callable[[str, str], None] | None = None

    @classmethod
    async def connect(cls, path: str, sock: socket.socket | None = None) -> "PoolLink":
        """Over ``sock`` when a prewarmed job process has one (`preconnect`)."""
        if sock is not None:
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        else:
            reader, writer = await asyncio.open_unix_connection(path)
        return cls(reader, writer)

    @classmethod
    async def open_call(
        cls,
        path: str,
        sock: socket.socket | None,
        request: LinkGetConfig,
        *,
        timeout: float,
        on_update: Callable[[RuntimeConfig, bool], None],
        on_gone: Callable[[str, str], None],
    ) -> "tuple[PoolLink, LinkConfig | LinkRefused]":
        """The call's link and its config: over a prewarmed ``sock`` answered at once
        (`ask_now`) when the pool has it, else asked and awaited like any request."""
        answer: LinkMessage | None = None
        early: list[LinkMessage] = []
        if sock is not None:
            answer, early = ask_now(sock, request, ANSWER_NOW_S)
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        else:
            reader, writer = await asyncio.open_unix_connection(path)
        link = cls(reader, writer, next_req=request.req + 1)
        link.on_update, link.on_gone = on_update, on_gone
        for message in early:
            link._dispatch(message)
        if answer is None:
            answer = await link._ask(request, request.req, timeout, send=sock is None)
        if isinstance(answer, LinkConfig | LinkRefused):
            return link, answer
        raise LinkClosedError(f"unexpected answer {type(answer).__name__}")

    async def get_config(
        self,
        *,
        call_id: str,
        job_id: str,
        room_name: str,
        agent_id: str,
        campaign_id: str | None,
        timeout: float,
    ) -> LinkConfig | LinkRefused:
        req = next(self._ids)
        reply = await self._ask(
            LinkGetConfig(
                req=req,
                call_id=call_id,
                job_id=job_id,
                room_name=room_name,
                agent_id=agent_id,
                campaign_id=campaign_id,
            ),
            req,
            timeout,
        )
        if isinstance(reply, LinkConfig | LinkRefused):
            return reply
        raise LinkClosedError(f"unexpected answer {type(reply).__name__}")

    async def publish(
        self, event: CallEventT, *, timeout: float = 5.0, traceparent: str = ""
    ) -> None:
        """Hand ``event`` to the pool, to publish in the trace ``traceparent`` names;
        returns once the pool holds it."""
        req = next(self._ids)
        await self._ask(LinkPublish(req=req, event=event, traceparent=traceparent), req, timeout)

    def tell(self, message: LinkTurn | LinkGreeting) -> None:
        """Send ``message``, which has no answer; best effort (a closed link drops it)."""
        if not self._writer.is_closing():
            self._writer.write(encode_frame(message))

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._reader_task.cancel()
        await asyncio.gather(self._reader_task, return_exceptions=True)

    async def _ask(
        self, message: LinkMessage, req: int, timeout: float, *, send: bool = True
    ) -> LinkMessage:
        if self._reader_task.done():
            raise LinkClosedError("link closed")
        future: asyncio.Future[LinkMessage] = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        try:
            if send:
                self._writer.write(encode_frame(message))
                await self._writer.drain()
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(req, None)

    def _dispatch(self, message: LinkMessage) -> None:
        match message:
            case LinkConfig(req=req) | LinkRefused(req=req) | LinkAccepted(req=req):
                future = self._pending.get(req)
                if future is not None and not future.done():
                    future.set_result(message)
            case LinkConfigUpdate(config=config, stale=stale):
                if self.on_update is not None:
                    self.on_update(config, stale)
            case LinkAgentGone(agent_id=agent_id, reason=reason):
                if self.on_gone is not None:
                    self.on_gone(agent_id, reason)
            case _:
                pass

    async def _read(self) -> None:
        try:
            while True:
                self._dispatch(await read_message(self._reader))
        except (LinkClosedError, DecodeError) as exc:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(LinkClosedError(str(exc)))
