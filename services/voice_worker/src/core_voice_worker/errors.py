"""Errors of the voice worker: a base class with a ``retryable`` flag and a fixed code."""


class WorkerError(Exception):
    """Base class. ``code`` is what goes into `CallFailed.error` (never user data)."""

    code = "worker_error"
    retryable = False


class SpeechError(WorkerError):
    """Offline speech (espeak-ng / pocketsphinx) could not run."""

    code = "speech_error"


class ProviderConfigError(WorkerError):
    """The runtime config names a provider, model or option this worker cannot build."""

    code = "provider_config"


class CallFailedError(WorkerError):
    """A call cannot go on: ``code`` is a `CallFailure` value, ``detail`` says more."""

    def __init__(self, code: str, detail: str = "", *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.retryable = retryable
