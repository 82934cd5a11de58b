"""Dispatcher errors: each maps to one HTTP status, and none is ever a 5xx for bad input."""


class DispatcherError(Exception):
    retryable = False


class WebhookRejectedError(DispatcherError):
    """A webhook request we refuse; ``status`` is the HTTP answer, ``code`` a fixed word."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
