"""Child processes that are always stopped: the harness for `corevoice up` and tests.

Each process runs in its own session (process group), logs to a file, and is stopped by
pid (SIGTERM, then SIGKILL after a grace period) together with anything it spawned.
"""

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO


class ProcessFailedError(RuntimeError):
    """A managed process exited or never became ready; the log tail is in the message."""


_LISTEN_PORTS = (10000, 32767)
"""Below Linux's default ephemeral range (32768-60999). A port the kernel hands out for
bind(0) comes from that range, and so does the source port of every outgoing connection:
between choosing it and the server binding it, a client anywhere on the machine could take
it (a nats-server's route port was lost that way in CI)."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago, outside the ephemeral range."""
    low, high = _LISTEN_PORTS
    eph_low, eph_high = _ephemeral_range()
    for _ in range(200):
        port = random.randint(low, high)
        if eph_low <= port <= eph_high:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        fallback: int = sock.getsockname()[1]
        return fallback


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def http_ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310 (loopback URL we built)
                return 200 <= int(resp.status) < 300
        except (OSError, urllib.error.URLError):
            return False

    return check


class ManagedProcess:
    """One child process with a log file, a readiness check and a guaranteed stop."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.ready = ready
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ProcessFailedError(f"{self.name} is not started")
        return self._proc.pid

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        return self

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> "ManagedProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise ProcessFailedError(f"{self.name} exited early\n{self.log_tail()}")
            if self.ready is None or self.ready():
                return self
            time.sleep(0.05)
        raise ProcessFailedError(f"{self.name} not ready after {timeout}s\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, sig: signal.Signals) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds; return the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                proc.wait(timeout=5)
        # Children that outlived the leader (e.g. job processes) go with the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode


class ProcessGroup:
    """Processes started in order and stopped in reverse order, whatever happens."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []

    def start(self, process: ManagedProcess, *, timeout: float = 30.0) -> ManagedProcess:
        self.processes.append(process)
        return process.start().wait_ready(timeout)

    def get(self, name: str) -> ManagedProcess:
        for p in self.processes:
            if p.name == name:
                return p
        raise KeyError(name)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_until_signal(
    what: str,
    *,
    start: Callable[[], object],
    stop: Callable[[], None],
    processes: Callable[[], Sequence[ManagedProcess]],
    started: Callable[[], str],
    log_dir: Path,
) -> int:
    """`corevoice up`'s foreground life: ``start``, print what ``started`` returns, then
    wait for SIGINT/SIGTERM; 1 if a process exits on its own or fails to start. ``stop``
    runs whatever happens."""
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(f"starting {what} ...", flush=True)
    try:
        start()
        print(started(), flush=True)
        while not stopping:
            dead = [p.name for p in processes() if not p.running()]
            if dead:
                print(f"stopping: {', '.join(dead)} exited (see {log_dir})", flush=True)
                return 1
            time.sleep(0.5)
        print("stopping ...", flush=True)
        return 0
    except ProcessFailedError as exc:
        print(f"failed to start: {exc}", flush=True)
        return 1
    finally:
        stop()
        print("stopped.", flush=True)
