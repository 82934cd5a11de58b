"""free_port hands out listening ports outside the kernel's ephemeral range.

A port from bind(0) is also a candidate source port for any outgoing connection on the
machine; one chosen for a nats-server route was taken that way before the server bound it.
"""

import socket

import pytest

from core_voice_cli import procs

pytestmark = pytest.mark.unit


def test_ports_are_outside_the_ephemeral_range_and_bindable() -> None:
    low, high = procs._ephemeral_range()
    ports = {procs.free_port() for _ in range(50)}
    assert len(ports) > 40  # random, so parallel test workers rarely pick the same one
    for port in ports:
        assert not low <= port <= high
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        monkeypatch.setattr(procs, "_LISTEN_PORTS", (taken, taken))
        monkeypatch.setattr(procs, "_ephemeral_range", lambda: (1, 2))
        # Only the taken port is in range: free_port falls back to one the kernel picks.
        assert procs.free_port() != taken
