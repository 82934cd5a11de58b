"""Reading job events back from the VOICE_JOBS stream."""

import asyncio

from nats.js import JetStreamContext

from core_voice_contracts import codec, subjects
from core_voice_contracts.events import JobDispatched, JobEvent, JobExpired, JobRejected


async def job_events(
    js: JetStreamContext, subject: str, want: int, timeout: float = 15.0
) -> list[JobEvent]:
    """Read the stream for ``subject`` from the start until ``want`` events are there."""
    sub = await js.subscribe(subject, ordered_consumer=True)
    out: list[JobEvent] = []
    try:
        async with asyncio.timeout(timeout):
            while len(out) < want:
                msg = await sub.next_msg(timeout=timeout)
                out.append(codec.decode_job_event(msg.data))
    finally:
        await sub.unsubscribe()
    return out


async def outcome_of(
    js: JetStreamContext,
    job_id: str,
    timeout: float = 15.0,
    kinds: tuple[type[JobEvent], ...] = (JobDispatched, JobExpired, JobRejected),
) -> JobEvent:
    """The first event of ``job_id`` of one of ``kinds`` (any agent), read from the start."""
    sub = await js.subscribe(subjects.JOBS_ALL, ordered_consumer=True)
    try:
        async with asyncio.timeout(timeout):
            while True:
                event = codec.decode_job_event((await sub.next_msg(timeout=timeout)).data)
                if event.job_id == job_id and isinstance(event, kinds):
                    return event
    finally:
        await sub.unsubscribe()
