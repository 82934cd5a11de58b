"""The look-ups that decide a job (config_sync's route, the room, its dispatches, its
participants), and their prefetch while the job's webhook is being stored.

Started together as tasks so that they overlap: a job's decision costs the slowest of
them, not their sum. `Prefetches` starts them even earlier, from the webhook endpoint
(`webhook_endpoint.Prefetcher`), for the job's first delivery to claim.

Their tasks belong to one decision, not to the service, so no `TaskSet` holds them: the
decision (or an unclaimed prefetch's expiry) settles them with `settle_tasks`.
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from livekit import api
from livekit.protocol.models import ParticipantInfo, Room
from nats.aio.client import Client

from core_voice_contracts import subjects
from core_voice_contracts.codec import decode_job_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import JobDispatched, JobRequested
from core_voice_contracts.routing import RouteReply, RouteRequest, Target
from core_voice_contracts.rpc import resolve_route
from core_voice_dispatcher.livekit_client import LiveKitClient
from core_voice_dispatcher.outcomes import Dispatched
from core_voice_dispatcher.settings import DispatcherSettings

PREFETCH_TTL_S = 5.0
"""A prefetch its job's delivery did not claim by then (another replica got the message)
is dropped."""


def route_request(job: JobRequested) -> RouteRequest:
    return RouteRequest(
        room_key=job.room_sid or job.room_name,
        agent_id=None if job.agent_id == subjects.UNROUTED else job.agent_id,
        campaign_id=job.campaign_id,
        dialed_number=job.dialed_number,
        trunk_id=job.trunk_id,
    )


def discovers(job: JobRequested) -> bool:
    """No agent, campaign or number yet: the room's SIP caller will name the route."""
    return job.agent_id == subjects.UNROUTED and not job.campaign_id and not job.dialed_number


def job_id_of_dispatch(metadata: str) -> str | None:
    """The job id in a dispatch's metadata, if the dispatch is one of ours."""
    try:
        event = decode_job_event(metadata.encode())
    except DecodeError:
        return None
    return event.job_id if isinstance(event, JobRequested) else None


@dataclass(frozen=True, slots=True)
class Lookups:
    """The look-ups that decide a job, started together (None: not needed)."""

    route: "asyncio.Task[RouteReply] | None"
    room: "asyncio.Task[Room | None]"
    dispatches: "asyncio.Task[Dispatched | None] | None"
    participants: "asyncio.Task[list[ParticipantInfo]] | None"

    def tasks(self) -> list["asyncio.Task[Any]"]:
        found = (self.route, self.room, self.dispatches, self.participants)
        return [task for task in found if task is not None]


def settle_tasks(tasks: list["asyncio.Task[Any]"]) -> None:
    """Cancel what still runs; an unused look-up's failure is not news (retrieved)."""
    for task in tasks:
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()


class JobLookups:
    """Asks config_sync and LiveKit about one job."""

    def __init__(self, settings: DispatcherSettings, nc: Client, lk: LiveKitClient) -> None:
        self._settings = settings
        self._nc = nc
        self._lk = lk

    def start(self, job: JobRequested, *, fresh: bool = True) -> Lookups:
        """Start the look-ups ``job`` needs. LiveKit answers a dispatch listing for a room
        that is gone only after an internal 3 s timeout, so that listing starts at once
        only for a fresh job (its room is almost surely open)."""
        discover = discovers(job)
        return Lookups(
            route=None if discover else asyncio.create_task(self.route(job)),
            room=asyncio.create_task(self.live_room(job)),
            dispatches=asyncio.create_task(self.existing_dispatch(job)) if fresh else None,
            participants=(
                asyncio.create_task(self.participants(job))
                if discover or job.participant_identity
                else None
            ),
        )

    async def route(self, job: JobRequested) -> RouteReply:
        request = route_request(job)
        return await resolve_route(self._nc, request, timeout=self._settings.route_timeout_s)

    async def live_room(self, job: JobRequested) -> Room | None:
        """The job's room if it is still open (same sid: a reused name is another room)."""
        return await self._lk.live_room(job.room_name, job.room_sid)

    async def participants(self, job: JobRequested) -> list[ParticipantInfo]:
        listed = await self._lk.room.list_participants(
            api.ListParticipantsRequest(room=job.room_name)
        )
        return list(listed.participants)

    async def existing_dispatch(self, job: JobRequested) -> Dispatched | None:
        """This job's dispatch if LiveKit already holds it (whatever agent name it used)."""
        for dispatch in await self._lk.agent_dispatch.list_dispatch(job.room_name):
            if not dispatch.agent_name or job_id_of_dispatch(dispatch.metadata) != job.job_id:
                continue
            routed = decode_job_event(dispatch.metadata.encode())
            assert isinstance(routed, JobRequested)
            legacy = dispatch.agent_name != self._settings.worker_agent_name
            event = JobDispatched(
                job_id=job.job_id,
                room_name=job.room_name,
                agent_id=routed.agent_id,
                dispatch_id=dispatch.id,
                worker_agent_name=dispatch.agent_name,
                already_existed=True,
                requested_at=routed.at,
                target=(Target.LEGACY if legacy else Target.POOL).value,
                campaign_id=routed.campaign_id,
            )
            created_ns = dispatch.state.created_at
            age = max(0.0, time.time() - created_ns / 1e9) if created_ns else 0.0
            return Dispatched(event, dispatch.metadata, taken=bool(dispatch.state.jobs), age_s=age)
        return None


class Prefetches:
    """Look-ups started for jobs not yet delivered, by job id (the endpoint's `Prefetcher`).

    They then run while JetStream stores the job and delivers it to the consumer
    (~1.5-2.5 ms, far more under load), instead of after. Only a first, fresh delivery
    claims them (see `Dispatcher.decide`); if the message went to another replica, they
    are dropped after ``PREFETCH_TTL_S``. Nothing is created here: the dispatch itself is
    still made only by the durable consumer.
    """

    def __init__(self, lookups: JobLookups, limit: int) -> None:
        self._lookups = lookups
        self._limit = limit
        self._started: dict[str, tuple[JobRequested, Lookups]] = {}
        self.counts: Counter[str] = Counter()
        """``started``; ``used``, ``expired`` (another replica got the job) or ``dropped``
        (not stored: a duplicate or a bus failure): how prefetches ended (for /healthz)."""

    def prefetch(self, job: JobRequested) -> bool:
        """Start ``job``'s look-ups now, while its webhook is being stored."""
        if job.job_id in self._started or len(self._started) >= self._limit:
            return False
        self._started[job.job_id] = (job, self._lookups.start(job))
        self.counts["started"] += 1
        asyncio.get_running_loop().call_later(PREFETCH_TTL_S, self._forget, job.job_id, "expired")
        return True

    def drop(self, job_id: str) -> None:
        """Forget a prefetch whose job was not stored by the webhook that started it."""
        self._forget(job_id, "dropped")

    def claim(self, job: JobRequested, fresh: bool) -> Lookups | None:
        """``job``'s prefetched look-ups, if any and still good for this delivery."""
        claimed = self._started.pop(job.job_id, None)
        if claimed is None:
            return None
        prefetched_job, lookups = claimed
        if not fresh or prefetched_job != job:
            settle_tasks(lookups.tasks())
            return None
        self.counts["used"] += 1
        return lookups

    def _forget(self, job_id: str, ending: str) -> None:
        forgotten = self._started.pop(job_id, None)
        if forgotten is not None:
            self.counts[ending] += 1
            settle_tasks(forgotten[1].tasks())
