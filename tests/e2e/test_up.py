"""`corevoice up` starts everything and a signal stops everything it started."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent just has not reaped it yet).
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1].split()[0] != "Z"


def _children(pid: int) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return {int(x) for x in out.stdout.split()}


@pytest.mark.parametrize(
    ("sig", "prometheus"),
    [(signal.SIGINT, False), (signal.SIGTERM, True)],
    ids=["INT", "TERM+prom"],
)
def test_up_serves_and_a_signal_leaves_no_process_behind(
    tmp_path: Path, sig: signal.Signals, prometheus: bool
) -> None:
    out = tmp_path / "up.out"
    with out.open("wb") as sink:
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "core_voice_cli.main",
                "up",
                "--free-ports",
                "--data-dir",
                str(tmp_path / "d"),
                *(["--with-prometheus"] if prometheus else []),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops everything" not in out.read_text():
            assert up.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        text = out.read_text()
        assert 'demo agent           "demo" (created)' in text
        pids = {
            line.split()[0]: int(line.split()[1])
            for line in (tmp_path / "d" / "pids").read_text().splitlines()
        }
        assert set(pids) == {
            "nats-server",
            "livekit-server",
            "config-sync",
            "dispatcher",
            "telemetry",
            "voice-worker",
            *(["prometheus"] if prometheus else []),
        }
        if prometheus:
            # The URL it prints is a Prometheus that scrapes the four services.
            url = re.search(r"Prometheus +(http://\S+)", text)
            assert url, text
            jobs = {
                "corevoice-config-sync",
                "corevoice-dispatcher",
                "corevoice-telemetry",
                "corevoice-voice-worker",
            }
            up_jobs: set[str] = set()
            deadline = time.monotonic() + 30  # discovery, then a first scrape (2 s interval)
            while up_jobs != jobs and time.monotonic() < deadline:
                time.sleep(0.5)
                targets = httpx.get(f"{url[1]}/api/v1/targets", timeout=5).json()["data"]
                up_jobs = {
                    t["labels"]["job"] for t in targets["activeTargets"] if t["health"] == "up"
                }
            assert up_jobs == jobs, targets
        descendants = set(pids.values()) | {c for pid in pids.values() for c in _children(pid)}
        assert all(_alive(p) for p in pids.values())

        up.send_signal(sig)
        assert up.wait(timeout=60) == 0, out.read_text()
    finally:
        if up.poll() is None:
            up.kill()
    assert "stopped." in out.read_text()
    left = sorted(p for p in descendants if _alive(p))
    assert left == [], f"still running: {left}"
