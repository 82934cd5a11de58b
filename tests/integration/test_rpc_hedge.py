"""A request held by a replica that dies is asked again: the answer comes from a live
replica within the hedge delay, not after the whole timeout (real nats-server, the
services' own users)."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from core_voice_cli.servers import NatsServer
from core_voice_contracts import subjects
from core_voice_contracts.bus import connect
from core_voice_contracts.codec import encode
from core_voice_contracts.events import ConfigGetError, ConfigNotFound
from core_voice_contracts.permissions import Role
from core_voice_contracts.rpc import HEDGE_AFTER_S, get_runtime_config, request_hedged
from tests.harness.nats import running_nats
from tests.waiting import until

pytestmark = pytest.mark.integration

QUEUE = "config-sync"


@pytest.fixture(scope="module")
def private_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """Its own server: no config_sync of another test answers ``voice.config.get`` here."""
    with running_nats(tmp_path_factory.mktemp("hedge")) as server:
        yield server


@pytest.fixture
async def clients(private_nats: NatsServer) -> AsyncIterator[tuple[Client, Client, Client]]:
    """The pool's connection and two config_sync replicas' connections."""
    worker, _ = await connect(private_nats.access(Role.WORKER), name="pool", ensure=False)
    replicas = [
        (await connect(private_nats.access(Role.CONFIG_SYNC), name=f"cs-{i}", ensure=False))[0]
        for i in (1, 2)
    ]
    try:
        yield worker, replicas[0], replicas[1]
    finally:
        for nc in (worker, *replicas):
            await nc.close()


async def _dying_then_live(
    dying: Client, live: Client, answer: bytes
) -> tuple[asyncio.Event, list[Msg]]:
    """``dying`` is the only replica until it receives a request, which it keeps
    unanswered as it leaves (a SIGKILLed replica); ``live`` then joins and answers."""
    held: list[Msg] = []
    received = asyncio.Event()

    async def hold(msg: Msg) -> None:
        held.append(msg)
        received.set()

    async def reply(msg: Msg) -> None:
        await msg.respond(answer)

    sub = await dying.subscribe(subjects.CONFIG_GET, queue=QUEUE, cb=hold)
    await dying.flush()

    async def swap() -> None:
        await received.wait()
        await sub.unsubscribe()
        await dying.flush()
        await live.subscribe(subjects.CONFIG_GET, queue=QUEUE, cb=reply)
        await live.flush()

    asyncio.get_running_loop().create_task(swap())
    return received, held


async def test_a_config_request_lost_with_its_replica_is_answered_by_the_other(
    clients: tuple[Client, Client, Client],
) -> None:
    worker, dying, live = clients
    answer = encode(ConfigNotFound(agent_id="a-1", reason="unknown agent"))
    _, held = await _dying_then_live(dying, live, answer)

    started = time.monotonic()
    reply = await get_runtime_config(worker, "a-1", timeout=2.0)
    took = time.monotonic() - started

    assert len(held) == 1, "the dying replica got the first copy"
    assert reply == ConfigNotFound(agent_id="a-1", reason="unknown agent")
    assert HEDGE_AFTER_S <= took < 1.0, f"answered after {took:.2f} s"


async def test_without_the_hedge_the_same_request_waits_out_the_timeout(
    clients: tuple[Client, Client, Client],
) -> None:
    """The control: what the pool saw before (an edit 1.3 s late in the cluster tests)."""
    worker, dying, live = clients
    _, held = await _dying_then_live(dying, live, b"{}")

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await request_hedged(worker, subjects.CONFIG_GET, b"{}", timeout=1.0, hedge_after=None)
    assert time.monotonic() - started >= 1.0
    assert len(held) == 1


async def test_a_request_nobody_answers_fails_once_at_its_timeout(
    clients: tuple[Client, Client, Client],
) -> None:
    """Both copies unanswered: one timeout error, raised at the timeout, not twice it."""
    worker, dying, _ = clients
    held: list[Msg] = []

    async def hold(msg: Msg) -> None:
        held.append(msg)

    await dying.subscribe(subjects.CONFIG_GET, queue=QUEUE, cb=hold)
    await dying.flush()

    started = time.monotonic()
    reply = await get_runtime_config(worker, "a-1", timeout=1.0)
    took = time.monotonic() - started

    assert reply == ConfigGetError(error="config_sync_timeout", retryable=True)
    assert 1.0 <= took < 1.5
    assert len(held) == 2, "asked twice: once, then the hedge"


async def test_a_quick_answer_is_asked_once(
    clients: tuple[Client, Client, Client],
) -> None:
    worker, replica, _ = clients
    asked: list[Msg] = []

    async def reply(msg: Msg) -> None:
        asked.append(msg)
        await msg.respond(encode(ConfigNotFound(agent_id="a-1", reason="unknown agent")))

    await replica.subscribe(subjects.CONFIG_GET, queue=QUEUE, cb=reply)
    await replica.flush()

    async def answered() -> bool:
        # In one loaded CI run the first request after the flush found no responder
        # (config_sync_unavailable): count only once the subscription answers.
        return isinstance(await get_runtime_config(worker, "a-1"), ConfigNotFound)

    await until(answered, 5, 0.05)
    await asyncio.sleep(HEDGE_AFTER_S + 0.1)
    asked.clear()
    for _ in range(20):
        assert isinstance(await get_runtime_config(worker, "a-1"), ConfigNotFound)
    await asyncio.sleep(HEDGE_AFTER_S + 0.1)
    assert len(asked) == 20
