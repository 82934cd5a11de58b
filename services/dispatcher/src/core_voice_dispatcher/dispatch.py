"""The durable consumer that turns `JobRequested` into a LiveKit agent dispatch.

Idempotent by construction, so redelivery and stream replay are safe: a room that is
gone becomes `JobExpired` (never re-created), a room that already has this job's
dispatch is not dispatched again, and every outcome event has a stable message id.
"""

import asyncio
import contextlib
import logging

import aiohttp
from livekit import api
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from core_voice_contracts import subjects
from core_voice_contracts.bus import publish
from core_voice_contracts.codec import decode_job_event, encode
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import (
    ConfigFound,
    ConfigGetError,
    ConfigNotFound,
    JobDispatched,
    JobExpired,
    JobRejected,
    JobRequested,
    RejectReason,
)
from core_voice_contracts.rpc import get_runtime_config
from core_voice_contracts.streams import VOICE_JOBS
from core_voice_dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)

_RETRY_BASE_S = 0.5
_RETRY_MAX_S = 15.0


def consumer_config(settings: DispatcherSettings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=settings.consumer_name,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=subjects.JOBS_REQUESTED_ALL,
        max_deliver=settings.max_deliver,
        ack_wait=30.0,
        max_ack_pending=1000,
    )


def _job_id_of(metadata: str) -> str | None:
    try:
        event = decode_job_event(metadata.encode())
    except DecodeError:
        return None
    return event.job_id


class Dispatcher:
    def __init__(
        self,
        settings: DispatcherSettings,
        nc: Client,
        js: JetStreamContext,
        lk: api.LiveKitAPI,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.js = js
        self.lk = lk
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Fetch and handle jobs until `stop`; each batch is handled concurrently."""
        sub = await self.js.pull_subscribe(
            subjects.JOBS_REQUESTED_ALL,
            durable=self.settings.consumer_name,
            stream=VOICE_JOBS,
            config=consumer_config(self.settings),
        )
        while not self._stopping.is_set():
            try:
                msgs = await sub.fetch(batch=50, timeout=1.0)
            except TimeoutError:
                continue
            except NatsError:
                await asyncio.sleep(0.5)
                continue
            await asyncio.gather(*(self.handle(m) for m in msgs))
        with contextlib.suppress(NatsError):
            await sub.unsubscribe()

    def stop(self) -> None:
        self._stopping.set()

    async def handle(self, msg: Msg) -> None:
        try:
            event = decode_job_event(msg.data)
        except DecodeError:
            log.warning("poison job message terminated", extra={"subject": msg.subject})
            await msg.term()
            return
        if not isinstance(event, JobRequested):
            await msg.ack()
            return
        try:
            await self._dispatch(event, msg)
        except (api.TwirpError, aiohttp.ClientError, TimeoutError, NatsError) as exc:
            await self._retry_or_reject(event, msg, type(exc).__name__)

    async def _dispatch(self, job: JobRequested, msg: Msg) -> None:
        reply = await get_runtime_config(
            self.nc,
            job.agent_id,
            campaign_id=job.campaign_id,
            timeout=self.settings.config_timeout_s,
        )
        match reply:
            case ConfigNotFound(reason=reason):
                await self._reject(job, RejectReason.UNKNOWN_AGENT, reason)
                await msg.ack()
                return
            case ConfigGetError(error=error):
                await self._retry_or_reject(job, msg, error)
                return
            case ConfigFound():
                pass

        rooms = await self.lk.room.list_rooms(api.ListRoomsRequest(names=[job.room_name]))
        live = [r for r in rooms.rooms if not job.room_sid or r.sid == job.room_sid]
        if not live:
            expired = JobExpired(job_id=job.job_id, room_name=job.room_name, agent_id=job.agent_id)
            await publish(
                self.js, subjects.job_expired(job.agent_id), expired, msg_id=f"{job.job_id}-expired"
            )
            log.info("job expired", extra={"job_id": job.job_id})
            await msg.ack()
            return

        agent_name = self.settings.worker_agent_name
        existing = [
            d
            for d in await self.lk.agent_dispatch.list_dispatch(job.room_name)
            if d.agent_name == agent_name and _job_id_of(d.metadata) == job.job_id
        ]
        if existing:
            dispatch_id, already = existing[0].id, True
        else:
            created = await self.lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(
                    agent_name=agent_name, room=job.room_name, metadata=encode(job).decode()
                )
            )
            dispatch_id, already = created.id, False
        dispatched = JobDispatched(
            job_id=job.job_id,
            room_name=job.room_name,
            agent_id=job.agent_id,
            dispatch_id=dispatch_id,
            worker_agent_name=agent_name,
            already_existed=already,
        )
        await publish(
            self.js,
            subjects.job_dispatched(job.agent_id),
            dispatched,
            msg_id=f"{job.job_id}-dispatched",
        )
        log.info("job dispatched", extra={"job_id": job.job_id, "dispatch_id": dispatch_id})
        await msg.ack()

    async def _reject(self, job: JobRequested, reason: RejectReason, detail: str) -> None:
        rejected = JobRejected(
            job_id=job.job_id,
            room_name=job.room_name,
            agent_id=job.agent_id,
            reason=reason,
            detail=detail,
        )
        await publish(
            self.js, subjects.job_rejected(job.agent_id), rejected, msg_id=f"{job.job_id}-rejected"
        )
        log.info("job rejected", extra={"job_id": job.job_id, "reason": reason.value})

    async def _retry_or_reject(self, job: JobRequested, msg: Msg, error: str) -> None:
        delivered = msg.metadata.num_delivered
        if delivered >= self.settings.max_deliver:
            with contextlib.suppress(NatsError, TimeoutError):
                await self._reject(job, RejectReason.DISPATCH_FAILED, error)
            await msg.term()
            return
        delay = min(_RETRY_MAX_S, _RETRY_BASE_S * 2 ** (delivered - 1))
        log.warning(
            "dispatch retry", extra={"job_id": job.job_id, "error": error, "attempt": delivered}
        )
        await msg.nak(delay=delay)
