"""The shared `TaskSet`: it holds tasks, records deaths for /healthz, cancels on shutdown."""

import asyncio

import pytest

from core_voice_contracts.tasks import MAX_DEAD, DeadTask, TaskSet

pytestmark = pytest.mark.unit


async def _boom() -> None:
    raise RuntimeError("secret-value")


async def test_a_dead_task_is_recorded_by_name_and_type_only() -> None:
    tasks = TaskSet()
    task = tasks.spawn(_boom(), name="relay")
    await asyncio.wait([task])
    await asyncio.sleep(0)
    assert tasks.dead == [DeadTask(name="relay", error="RuntimeError")]
    assert len(tasks) == 0


async def test_cancelled_and_finished_tasks_are_not_dead() -> None:
    tasks = TaskSet()
    done = tasks.spawn(asyncio.sleep(0), name="quick")
    tasks.spawn(asyncio.sleep(3600), name="forever")
    await asyncio.wait([done])
    await asyncio.sleep(0)
    assert len(tasks) == 1
    await tasks.cancel_all()
    assert len(tasks) == 0
    assert tasks.dead == []


async def test_the_record_is_bounded() -> None:
    tasks = TaskSet()
    spawned = [tasks.spawn(_boom(), name=f"t{i}") for i in range(MAX_DEAD + 5)]
    await asyncio.wait(spawned)
    await asyncio.sleep(0)
    assert len(tasks.dead) == MAX_DEAD
    assert tasks.dead[-1].name == f"t{MAX_DEAD + 4}"


async def test_drain_lets_tasks_finish_then_cancels_the_rest() -> None:
    tasks = TaskSet()
    stop = asyncio.Event()
    finished = tasks.spawn(stop.wait(), name="watches-stop")
    stuck = tasks.spawn(asyncio.sleep(3600), name="stuck")
    stop.set()
    await tasks.drain(0.05)
    assert finished.done() and not finished.cancelled()
    assert stuck.cancelled() and len(tasks) == 0
