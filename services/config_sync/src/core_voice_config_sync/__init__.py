"""config_sync: the single owner of Core Voice agent configuration.

It keeps agents and their immutable config versions in a database, serves the admin
REST API and the runtime-config read path (HTTP and the ``voice.config.get`` NATS micro
service), and announces every committed change as ``ConfigChanged`` through a
transactional outbox. Run it with ``python -m core_voice_config_sync``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("core-voice-config-sync")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
