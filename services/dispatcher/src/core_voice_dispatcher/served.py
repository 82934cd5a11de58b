"""Was a job taken by a worker? Looked up in VOICE_JOBS when this process cannot say.

A dispatcher learns that a worker took a job from its `JobAccepted` on core NATS
(`capacity.follow_accepted_jobs`). One that was cut off from the bus when the event went
out (its NATS node partitioned away) has no record of it. When JetStream then delivers
the job again after the call, the room is gone and the job would be recorded
``room_gone`` beside the call that happened. So a job delivered again with its room gone
is looked up here first: the worker stored its `JobAccepted` after the job, on the
accepted subject of the job's agent (all agents' for a job routed by the dialed number).
"""

import logging

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from core_voice_contracts import subjects
from core_voice_contracts.codec import decode_job_event
from core_voice_contracts.errors import DecodeError
from core_voice_contracts.events import JobAccepted, JobRequested
from core_voice_contracts.streams import VOICE_JOBS

log = logging.getLogger(__name__)

MAX_READS = 500
"""Accepted events read per look-up at most: every one stored after the job, for its
agent. The look-up runs only for a redelivered job whose room is gone (rare); the bound
keeps a very busy agent from making it long."""


async def accepted_in_stream(
    js: JetStreamContext, job: JobRequested, after_seq: int, max_reads: int = MAX_READS
) -> bool | None:
    """True if a worker's `JobAccepted` for ``job`` is stored after stream sequence
    ``after_seq`` (the job's own); False if none is within ``max_reads``; None if the
    stream could not be read."""
    subject = (
        subjects.JOBS_ACCEPTED_ALL
        if job.agent_id == subjects.UNROUTED
        else subjects.job_accepted(job.agent_id)
    )
    seq = after_seq + 1
    for _ in range(max_reads):
        try:
            raw = await js.get_msg(VOICE_JOBS, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return False
        except (NatsError, TimeoutError) as exc:
            log.warning(
                "accepted look-up failed",
                extra={"job_id": job.job_id, "error": type(exc).__name__},
            )
            return None
        if raw.seq is None:
            return False
        seq = raw.seq + 1
        try:
            event = decode_job_event(raw.data or b"")
        except DecodeError:
            continue
        if isinstance(event, JobAccepted) and event.job_id == job.job_id:
            return True
    return False
