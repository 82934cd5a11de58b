"""Waiting for something another process or task will make true, with a deadline."""

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def until(
    check: Callable[[], object | Awaitable[object]], timeout: float = 5.0, interval: float = 0.01
) -> None:
    """Poll ``check`` (plain or async) until it is truthy; fail the test after ``timeout``
    seconds. An async check is awaited: a coroutine object itself would always be truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"not true after {timeout} s: {getattr(check, '__name__', check)}")
        await asyncio.sleep(interval)
