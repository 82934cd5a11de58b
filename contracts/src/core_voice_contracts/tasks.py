"""`TaskSet`: the background tasks a service owns, cancelled and awaited on shutdown.

Every service runs long-lived tasks (consumers, relays, heartbeats); a task nobody holds
can be garbage-collected mid-flight, and one that dies silently leaves a process that
answers /healthz while doing nothing. One implementation, shared through contracts (the
one package every service depends on, as with `logs`), keeps the tasks referenced, logs a
death once, and records it (name and exception type, never the message: it may carry a
value) for /healthz to report. Modelled on livekit-agents' ``utils.aio.TaskSet``.

    tasks = TaskSet()
    tasks.spawn(relay.run(), name="outbox-relay")
    ...
    health = {"dead_tasks": tasks.dead}   # [] while all is well
    await tasks.cancel_all()              # or drain(timeout): let them finish first
"""

import asyncio
import collections
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import msgspec

log = logging.getLogger(__name__)

MAX_DEAD = 32
"""Deaths remembered: enough to diagnose, bounded for a task that dies in a loop."""


class DeadTask(msgspec.Struct, frozen=True, kw_only=True):
    """A task that ended with an exception: its name and the exception's type name."""

    name: str
    error: str


class TaskSet:
    """Owns tasks until they finish; `dead` lists the ones that raised, oldest first."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dead: collections.deque[DeadTask] = collections.deque(maxlen=MAX_DEAD)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Start ``coro`` as a task named ``name`` (the name /healthz shows if it dies)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        """The tasks still running."""
        return frozenset(self._tasks)

    @property
    def dead(self) -> list[DeadTask]:
        """Tasks that raised (up to `MAX_DEAD`, oldest first); a cancelled task is not dead."""
        return list(self._dead)

    def __len__(self) -> int:
        return len(self._tasks)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self._dead.append(DeadTask(name=task.get_name(), error=type(exc).__name__))
        log.error("background task died", extra={"task": task.get_name()}, exc_info=exc)

    async def drain(self, timeout: float) -> None:
        """Let the tasks end on their own (they watch a stop event) for up to ``timeout``
        s, then cancel the rest."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        await self.cancel_all()

    async def cancel_all(self, timeout: float = 5.0) -> None:
        """Cancel every task and wait up to ``timeout`` s for them to finish unwinding."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(tasks, timeout=timeout)
