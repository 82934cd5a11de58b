"""Waiting for started processes to go quiet before measuring them.

A worker pool's forkserver imports every provider plugin when it starts (seconds of
CPU each; ten pools starting together on two cores take over a minute). Anything
measured before that settles measures start-up, not the thing asked about.
"""

import time

import psutil


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the process trees rooted at ``pids`` (gone processes skipped)."""
    total = 0.0
    for pid in pids:
        for proc in tree(pid):
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def wait_idle(
    pids: list[int], *, per_tree: float = 0.05, window: float = 2.0, timeout: float = 300.0
) -> float:
    """Block until the trees together use under ``per_tree`` of a core each over
    ``window`` seconds; return how long that took (raises TimeoutError)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = cpu_seconds(pids)
        time.sleep(window)
        if (cpu_seconds(pids) - before) / window < per_tree * len(pids):
            return time.monotonic() - started
    raise TimeoutError(f"processes still busy after {timeout:g} s")
