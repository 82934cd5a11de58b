"""The dispatcher's /healthz: a background task that died makes it degraded, by name."""

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from core_voice_contracts.tasks import TaskSet
from core_voice_dispatcher.app import dead_tasks, health_checks
from core_voice_dispatcher.webhook_endpoint import HEALTH_PATH, make_app

pytestmark = pytest.mark.unit


async def _boom() -> None:
    raise RuntimeError("a value that must not show")


async def _died(tasks: TaskSet, name: str) -> None:
    await asyncio.wait([tasks.spawn(_boom(), name=name)])
    await asyncio.sleep(0)


async def test_healthz_reports_a_dead_task_by_name_and_error_type() -> None:
    service, watches = TaskSet(), TaskSet()
    consumer = service.spawn(asyncio.sleep(3600), name="dispatch-consumer")
    owned = [service, watches]
    app = make_app(
        None,
        max_body_bytes=1024,
        health=lambda: health_checks(True, consumer, owned),
        details=lambda: dead_tasks(owned),
    )
    async with TestClient(TestServer(app)) as client:
        healthy = await client.get(HEALTH_PATH)
        assert healthy.status == 200
        assert await healthy.json() == {"status": "ok", "checks": {"nats": "ok", "consumer": "ok"}}

        await _died(watches, "capacity-job-1")
        degraded = await client.get(HEALTH_PATH)
        assert degraded.status == 503
        body = await degraded.json()
    await service.cancel_all()
    assert body["status"] == "degraded"
    assert body["checks"] == {"nats": "ok", "consumer": "ok", "tasks": "dead"}
    assert body["dead_tasks"] == [{"name": "capacity-job-1", "error": "RuntimeError"}]
    assert "must not show" not in str(body)


async def test_a_stopped_consumer_is_degraded_and_a_cancelled_task_is_not_dead() -> None:
    service = TaskSet()
    consumer = service.spawn(asyncio.sleep(3600), name="dispatch-consumer")
    await service.cancel_all()
    assert health_checks(False, consumer, [service]) == {
        "nats": "disconnected",
        "consumer": "stopped",
    }
