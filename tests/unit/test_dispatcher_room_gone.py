"""A job delivered again with its room gone (`Dispatcher._room_gone`): a dispatch made
here whose `JobDispatched` the bus refused is recorded as dispatched, not ``room_gone``;
an acceptance not in the stream yet is looked for again until the last attempt."""

import datetime as dt
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from core_voice_contracts.codec import encode
from core_voice_contracts.events import JobDispatched, JobExpired, JobRequested
from core_voice_dispatcher.dispatch import Dispatcher
from core_voice_dispatcher.livekit_client import LiveKitClient
from core_voice_dispatcher.metrics import DispatcherMetrics
from core_voice_dispatcher.outcomes import Dispatched, Outcome, Retry
from core_voice_dispatcher.settings import DispatcherSettings

pytestmark = pytest.mark.unit

JOB = JobRequested(job_id="job-RM_1", room_name="room-1", room_sid="RM_1", agent_id="a-1")
EVENT = JobDispatched(
    job_id=JOB.job_id,
    room_name=JOB.room_name,
    agent_id="a-1",
    dispatch_id="AD_1",
    worker_agent_name="core-voice",
)


@dataclass
class FakeJs:
    """The bus: refuses publishes while ``down``; its VOICE_JOBS holds no acceptance."""

    down: bool = True
    published: list[bytes] = field(default_factory=list)

    async def publish(self, subject: str, payload: bytes, **_: Any) -> Any:
        if self.down:
            raise NatsTimeoutError
        self.published.append(payload)
        return SimpleNamespace(duplicate=False, seq=len(self.published))

    async def get_msg(self, *_: Any, **__: Any) -> Any:
        raise NotFoundError


@dataclass
class FakeMsg:
    num_delivered: int
    data: bytes = encode(JOB)
    subject: str = "voice.jobs.requested.a-1"
    headers: dict[str, str] | None = None
    settled: list[str] = field(default_factory=list)

    @property
    def metadata(self) -> Any:
        return SimpleNamespace(
            num_delivered=self.num_delivered,
            timestamp=dt.datetime.now(dt.UTC),
            sequence=SimpleNamespace(stream=7),
        )

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append("nak")


def dispatcher(js: FakeJs) -> Dispatcher:
    settings = DispatcherSettings(
        LIVEKIT_API_KEY="k",
        LIVEKIT_API_SECRET="unit-test-secret-0123456789abcdef",
        CAPACITY_WAIT_S=0,
    )
    lk = cast(LiveKitClient, SimpleNamespace(metrics=DispatcherMetrics()))
    return Dispatcher(settings, cast(Any, None), cast(JetStreamContext, js), lk)


def deciding(d: Dispatcher, outcome: Outcome) -> None:
    async def decide(job: JobRequested, msg: Msg) -> Outcome:
        return outcome

    d.decide = decide  # type: ignore[method-assign]


async def test_a_dispatch_whose_record_was_refused_is_recorded_when_its_room_is_gone() -> None:
    js = FakeJs(down=True)
    d = dispatcher(js)
    deciding(d, Dispatched(EVENT, metadata="{}"))
    first = FakeMsg(num_delivered=1)
    await d.handle(cast(Msg, first))
    assert first.settled == ["nak"] and js.published == []  # left to a redelivery

    js.down = False
    again = FakeMsg(num_delivered=2)
    outcome = await d._room_gone(JOB, cast(Msg, again))
    assert isinstance(outcome, Dispatched) and outcome.event == EVENT and outcome.taken
    assert d.served_lookups == {"unstored_dispatch": 1}

    deciding(d, outcome)
    await d.handle(cast(Msg, again))
    assert again.settled == ["ack"] and len(js.published) == 1  # JobDispatched, once
    assert isinstance(await d._room_gone(JOB, cast(Msg, again)), Retry)  # forgotten once stored


async def test_an_acceptance_not_in_the_stream_is_looked_for_until_the_last_attempt() -> None:
    d = dispatcher(FakeJs(down=False))
    assert isinstance(await d._room_gone(JOB, cast(Msg, FakeMsg(num_delivered=1))), JobExpired)
    for attempt in range(2, d.settings.max_deliver):
        outcome = await d._room_gone(JOB, cast(Msg, FakeMsg(num_delivered=attempt)))
        assert outcome == Retry(outcome.reason, "accepted_not_seen"), attempt  # type: ignore[union-attr]
    last = await d._room_gone(JOB, cast(Msg, FakeMsg(num_delivered=d.settings.max_deliver)))
    assert isinstance(last, JobExpired) and last.detail == "room_gone"
    assert d.served_lookups == {"not_found": d.settings.max_deliver - 1}
