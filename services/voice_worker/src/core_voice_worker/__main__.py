"""``python -m core_voice_worker start``: run a worker of the shared pool.

Exits 0 after a drain (SIGTERM), 1 if the pool could not start (NATS unreachable for
WORKER_STARTUP_TIMEOUT_S): an orchestrator then restarts it instead of counting it as
done; 2 if the settings are unusable (one log line names the variables).
"""

import sys

from livekit.agents import cli

from core_voice_contracts.logs import setup_logging
from core_voice_contracts.settings import SettingsError, exit_settings, load_settings
from core_voice_worker.call_trace import configure_worker_tracing
from core_voice_worker.server import create_server
from core_voice_worker.settings import WorkerSettings

if __name__ == "__main__":
    try:
        settings = load_settings(WorkerSettings)
    except SettingsError as exc:
        # livekit-agents' cli sets up logging only inside run_app: ours says why we stop.
        setup_logging("voice_worker")
        exit_settings(str(exc))
    configure_worker_tracing()
    server = create_server(settings)
    try:
        cli.run_app(server)  # its command line ends with sys.exit(0) whatever happened
    except SystemExit:
        if server.runtime.start_error:
            sys.exit(1)
        raise
