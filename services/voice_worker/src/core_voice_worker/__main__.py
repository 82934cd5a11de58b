"""``python -m core_voice_worker start``: run a worker of the shared pool."""

from livekit.agents import cli

from core_voice_worker.server import create_server
from core_voice_worker.settings import WorkerSettings

if __name__ == "__main__":
    cli.run_app(create_server(WorkerSettings()))
