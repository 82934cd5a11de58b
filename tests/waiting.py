"""Waiting for something another process or task will make true, with a deadline."""

import asyncio
from collections.abc import Callable


async def until(check: Callable[[], object], timeout: float = 5.0, interval: float = 0.01) -> None:
    """Poll ``check`` until it is truthy; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() >= deadline:
            raise AssertionError(f"not true after {timeout} s: {getattr(check, '__name__', check)}")
        await asyncio.sleep(interval)
