"""Dispatcher errors: each has a fixed code; none carries a secret or request data."""


class DispatcherError(Exception):
    retryable = False


class ConfigurationError(DispatcherError, ValueError):
    """The settings cannot work; the message names the variables to change."""


class WebhookRejectedError(DispatcherError):
    """A webhook request we refuse; ``status`` is the HTTP answer, ``code`` a fixed word."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
