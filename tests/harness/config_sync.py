"""config_sync as a real process for tests: its tokens, key ring, start and stop.

The environment comes from `core_voice_cli.stack.config_sync_env`, the one builder the
stack and the bench use too.
"""

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core_voice_cli.procs import ManagedProcess, free_port, http_ready
from core_voice_cli.servers import PostgresServer
from core_voice_cli.stack import config_sync_env
from core_voice_config_sync.crypto import generate_key
from core_voice_contracts.bus import NatsAccess

ADMIN_TOKEN = "admin-token-canary-7f3a-5c0e2b9d81a4"
RUNTIME_TOKEN = "runtime-token-canary-91bc-e6d3f0a7"


def keyring(*ids: str) -> str:
    """A ``CONFIG_SYNC_ENCRYPTION_KEYS`` value with fresh keys under ``ids``."""
    return ",".join(f"{key_id}:{generate_key()}" for key_id in ids or ("k1",))


@dataclass
class ConfigSync:
    """A running config_sync process and how to reach it."""

    process: ManagedProcess
    base_url: str
    env: dict[str, str]
    nats: NatsAccess

    def command(self, *args: str) -> dict[str, Any]:
        """Run an operator command against the same database; its JSON output."""
        done = subprocess.run(
            [sys.executable, "-m", "core_voice_config_sync", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result


def process_env(
    *, nats: NatsAccess, database_url: str, port: int, encryption_keys: str | None = None
) -> dict[str, str]:
    """The environment of a test's config_sync process: this process's, NATS, the tokens."""
    return {
        **os.environ,
        **nats.env(),
        **config_sync_env(
            port=port,
            database_url=database_url,
            admin_token=ADMIN_TOKEN,
            runtime_token=RUNTIME_TOKEN,
            encryption_keys=encryption_keys,
            log_level="DEBUG",
        ),
    }


def sqlite_env(nats: NatsAccess, directory: Path, **extra: str) -> dict[str, str]:
    """``process_env`` on a SQLite file in ``directory`` and a free port, ``extra`` over it."""
    env = process_env(
        nats=nats,
        database_url=f"sqlite+aiosqlite:///{directory / 'config_sync.db'}",
        port=free_port(),
    )
    return {**env, **extra}


def refused_start(env: dict[str, str], cwd: Path) -> "subprocess.CompletedProcess[str]":
    """config_sync started with ``env`` must refuse: exit 2 (the caller checks the reason)."""
    done = subprocess.run(
        [sys.executable, "-m", "core_voice_config_sync"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    return done


def start_config_sync(
    *,
    nats: NatsAccess,
    database_url: str,
    log_dir: Path,
    name: str = "config-sync",
    encryption_keys: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> ConfigSync:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = process_env(
        nats=nats, database_url=database_url, port=port, encryption_keys=encryption_keys
    )
    env.update(extra_env or {})
    process = ManagedProcess(
        name,
        [sys.executable, "-m", "core_voice_config_sync"],
        env=env,
        log_dir=log_dir,
        cwd=log_dir,
        ready=http_ready(f"{base_url}/healthz"),
    )
    process.start().wait_ready(30)
    return ConfigSync(process=process, base_url=base_url, env=env, nats=nats)


def fresh_database(database_url: str, postgres: PostgresServer | None, directory: Path) -> str:
    """Another empty database on the same backend as ``database_url``."""
    if database_url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{directory / f'{uuid.uuid4().hex[:8]}.db'}"
    assert postgres is not None
    return postgres.create_database(f"cs_{uuid.uuid4().hex[:12]}")


@contextlib.contextmanager
def config_sync_service(
    nats: NatsAccess, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConfigSync]:
    """config_sync as its own process; it must stop cleanly and never log its tokens."""
    running = start_config_sync(
        nats=nats,
        database_url=database_url,
        log_dir=tmp_path_factory.mktemp("config_sync"),
        encryption_keys=keyring("k1"),
    )
    try:
        yield running
    finally:
        assert running.process.stop() == 0, running.process.log_tail()
        log = running.process.log_path.read_text(errors="replace")
        assert ADMIN_TOKEN not in log
        assert RUNTIME_TOKEN not in log
