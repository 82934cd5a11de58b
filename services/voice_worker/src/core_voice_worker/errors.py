"""Errors of the voice worker: a base class with a ``retryable`` flag and a fixed code."""


class WorkerError(Exception):
    """Base class. ``code`` is what goes into `CallFailed.error` (never user data)."""

    code = "worker_error"
    retryable = False


class SpeechError(WorkerError):
    """Offline speech (espeak-ng / pocketsphinx) could not run."""

    code = "speech_error"


class ConfigUnavailableError(WorkerError):
    """No runtime config could be had for the agent (unknown agent or config_sync down)."""

    code = "config_unavailable"
    retryable = True


class ProviderConfigError(WorkerError):
    """The runtime config names a provider, model or option this worker cannot build."""

    code = "provider_config"
