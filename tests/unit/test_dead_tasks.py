"""A background task that dies is reported by its service's /healthz (503, by name)."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client

from core_voice_config_sync.app import health_check
from core_voice_config_sync.db import create_engine
from core_voice_contracts.settings import load_settings
from core_voice_contracts.tasks import DeadTask, TaskSet
from core_voice_telemetry.app import make_app
from core_voice_telemetry.metrics import Metrics
from core_voice_worker.pool import PoolRuntime
from core_voice_worker.settings import WorkerSettings

pytestmark = pytest.mark.unit

DEAD = {"name": "doomed", "error": "RuntimeError"}


async def _die() -> None:
    raise RuntimeError("the task's message is not reported")


async def killed(tasks: TaskSet) -> TaskSet:
    """``tasks`` with one task that has just died."""
    done = tasks.spawn(_die(), name="doomed")
    await asyncio.wait([done])
    await asyncio.sleep(0)  # its done callback
    return tasks


async def test_config_sync(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'health.db'}")
    try:
        check = health_check(engine, Client(), {}, await killed(TaskSet()))
        health = await check()
    finally:
        await engine.dispose()
    assert health.status != "ok" and health.checks["tasks"] == "dead"
    assert health.dead_tasks == [DeadTask(**DEAD)]


async def test_telemetry() -> None:
    app = make_app(Metrics(), {"jobs": "ok"}, await killed(TaskSet()))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/healthz")
        assert resp.status == 503
        assert (await resp.json())["dead_tasks"] == [DEAD]


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[PoolRuntime]:
    settings = load_settings(
        WorkerSettings,
        {"LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s", "health_port": 0},
    )
    pool = PoolRuntime(settings, link_path=tmp_path / "link")
    await pool.health.start()
    try:
        yield pool
    finally:
        await pool.health.stop()
        await pool.tasks.cancel_all()


async def test_voice_worker(runtime: PoolRuntime) -> None:
    url = f"http://127.0.0.1:{runtime.health.port}/healthz"
    async with httpx.AsyncClient() as client:
        assert (await client.get(url)).json() == {"ok": True}
        await killed(runtime.tasks)
        resp = await client.get(url)
    assert resp.status_code == 503
    assert resp.json() == {"ok": False, "dead_tasks": [DEAD]}
