"""A worker pool runtime in this test process, on a test's NATS server (LiveKit unused)."""

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core_voice_cli.procs import free_port
from core_voice_cli.servers import NatsServer
from core_voice_contracts.permissions import Role
from core_voice_worker.pool import PoolRuntime
from core_voice_worker.settings import WorkerSettings


def pool_settings(nats: NatsServer, worker_id: str, **fields: Any) -> WorkerSettings:
    """Settings for a pool as the worker user on ``nats``, with a free health port."""
    return WorkerSettings(
        livekit_api_key="unused",
        livekit_api_secret="unused",
        nats_url=nats.url,
        nats_user=Role.WORKER.value,
        nats_password=nats.passwords[Role.WORKER.value],
        worker_id=worker_id,
        health_port=free_port(),
        **fields,
    )


@contextlib.asynccontextmanager
async def running_pool(settings: WorkerSettings, link_path: Path) -> AsyncIterator[PoolRuntime]:
    """The pool started, and stopped however the block ends."""
    runtime = PoolRuntime(settings, link_path=link_path)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
