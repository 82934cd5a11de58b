"""A PostgreSQL server a test may stop and start (outages)."""

from dataclasses import dataclass

from core_voice_cli.procs import ManagedProcess
from core_voice_cli.servers import PostgresServer


@dataclass
class RestartablePostgres:
    server: PostgresServer
    process: ManagedProcess

    def stop(self) -> None:
        self.process.stop()

    def start(self) -> None:
        self.process = self.server.process().start().wait_ready(60)
