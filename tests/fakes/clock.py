"""A clock a test moves by hand: for code that takes its time from a callable."""


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
