"""The per-worker call cap holds even when offers arrive together."""

import threading

import pytest

from core_voice_worker.capacity import CallCap

pytestmark = pytest.mark.unit


def test_simultaneous_offers_never_exceed_the_cap() -> None:
    cap = CallCap(limit=25)
    running = 20
    barrier = threading.Barrier(40)
    accepted: list[bool] = []
    lock = threading.Lock()

    def offer() -> None:
        barrier.wait()
        ok = cap.try_reserve(running)
        with lock:
            accepted.append(ok)

    threads = [threading.Thread(target=offer) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert accepted.count(True) == 5
    assert cap.load(running) == 1.0


def test_released_reservations_free_the_slot_and_load_follows() -> None:
    cap = CallCap(limit=4)
    assert cap.load(0) == 0.0
    assert cap.try_reserve(3)
    assert not cap.try_reserve(3)
    cap.release()
    assert cap.load(2) == 0.5
    assert cap.try_reserve(3)
