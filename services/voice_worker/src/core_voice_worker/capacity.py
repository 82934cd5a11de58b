"""A hard per-worker call cap.

livekit-agents reports load on an interval, so two job offers arriving together can
both pass a load threshold. The cap is therefore also enforced when an offer arrives,
counting offers accepted but not yet running.
"""

import threading


class CallCap:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._reserved = 0

    def try_reserve(self, running: int) -> bool:
        """Reserve a slot if ``running`` + reserved is under the limit."""
        with self._lock:
            if running + self._reserved >= self.limit:
                return False
            self._reserved += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - 1)

    def load(self, running: int) -> float:
        with self._lock:
            return min(1.0, (running + self._reserved) / self.limit)
