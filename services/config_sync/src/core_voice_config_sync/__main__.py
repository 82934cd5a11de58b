"""``python -m core_voice_config_sync [serve]``: run the service until SIGTERM/SIGINT.

Configuration comes from the environment (see `settings.Settings`); exit status is 0
after a clean stop and 2 if the settings are unusable. Other arguments are operator
commands (`cli`): ``tenant create``, ``token create``, ``keys reencrypt``, ...
"""

import asyncio
import signal
import sys

import uvloop

from core_voice_config_sync.app import serve
from core_voice_config_sync.cli import run_command
from core_voice_config_sync.errors import SettingsError
from core_voice_config_sync.settings import load_settings
from core_voice_contracts.logs import setup_logging
from core_voice_contracts.settings import exit_settings
from core_voice_contracts.tracing import configure_tracing


async def _main() -> None:
    settings = load_settings()
    settings.nats_access()  # refuses a key-carrying connection in clear before anything runs
    setup_logging("config_sync", settings.log_level)
    configure_tracing("config_sync")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv != ["serve"]:
        setup_logging("config_sync", "WARNING")
        return run_command(argv)
    setup_logging("config_sync")
    try:
        # uvloop: lower per-message latency on the NATS read path and cheaper wake-ups
        # from aiosqlite's worker thread on every database round trip.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_main())
    except SettingsError as exc:  # the loader's, or a cross-field check's (keys, NATS)
        exit_settings(exc.detail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
