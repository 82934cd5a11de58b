"""The services' own metrics, in isolation: config_sync's route-template labelling, the
dispatcher's event-name folding, the pool's turn stages, the pool-link messages that
carry them, and when the pool's mirror reports a version held (`ConfigHeld`).

The same against the real services, NATS and livekit-server:
tests/integration/test_service_metrics.py.
"""

import datetime as dt
import uuid

import httpx
import pytest
from litestar import Litestar, Router, get
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core_voice_config_sync.metrics import ConfigSyncMetrics, MetricsMiddleware
from core_voice_contracts.events import ChangeKind, ConfigChanged, TurnLatency
from core_voice_contracts.pool_link import LinkGreeting, LinkTurn, decode_body, encode_frame
from core_voice_dispatcher.metrics import DispatcherMetrics
from core_voice_worker.metrics import PoolMetrics
from core_voice_worker.mirror import ConfigMirror, Held
from tests.fakes.config_sync_table import ConfigSyncTable

pytestmark = pytest.mark.unit


def series(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


# --- config_sync: route templates, never paths -------------------------------------------


@get("/agents/{agent_id:str}")
async def _agent(agent_id: str) -> str:
    return agent_id


def _app() -> Litestar:
    return Litestar([Router(path="/api/v1", route_handlers=[_agent])])


async def test_requests_are_labelled_by_route_template_and_unknown_paths_fold() -> None:
    metrics = ConfigSyncMetrics()
    transport = httpx.ASGITransport(app=MetricsMiddleware(_app(), metrics))
    ids = [uuid.uuid4().hex for _ in range(200)]
    async with httpx.AsyncClient(transport=transport, base_url="http://cs") as client:
        for agent_id in ids:
            assert (await client.get(f"/api/v1/agents/{agent_id}")).status_code == 200
            assert (await client.get(f"/elsewhere/{agent_id}")).status_code == 404
        assert (await client.post(f"/api/v1/agents/{ids[0]}")).status_code == 405
        scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    found = series(scraped.text, "corevoice_config_sync_http_requests_total")
    assert found == {
        frozenset(
            {"route": "/api/v1/agents/{agent_id}", "method": "GET", "status": "200"}.items()
        ): 200,
        frozenset({"route": "unmatched", "method": "GET", "status": "404"}.items()): 200,
        frozenset({"route": "unmatched", "method": "POST", "status": "405"}.items()): 1,
    }
    assert not any(agent_id in scraped.text for agent_id in ids)


async def test_metrics_are_per_app() -> None:
    one, two = ConfigSyncMetrics(), ConfigSyncMetrics()
    one.error("decode")
    assert 'type="decode"' in one.exposition().decode()
    assert 'type="decode"' not in two.exposition().decode()


# --- dispatcher: event names are LiveKit's or "other" ------------------------------------


def test_webhook_events_outside_livekits_names_fold_into_other() -> None:
    metrics = DispatcherMetrics()
    metrics.webhook("room_started", "accepted")
    metrics.webhook("x\r\nevil", "ignored")
    metrics.webhook(uuid.uuid4().hex, "ignored")
    metrics.webhook("unknown", "bad_signature")
    found = series(
        generate_latest(metrics.registry).decode(), "corevoice_dispatcher_webhooks_total"
    )
    assert found == {
        frozenset({"event": "room_started", "outcome": "accepted"}.items()): 1,
        frozenset({"event": "other", "outcome": "ignored"}.items()): 2,
        frozenset({"event": "unknown", "outcome": "bad_signature"}.items()): 1,
    }


# --- the pool: turn stages and the link messages carrying them ---------------------------


def test_a_turn_observes_each_measured_stage_once() -> None:
    metrics = PoolMetrics("w1")
    metrics.turn(TurnLatency(stt_final_s=0.1, end_of_turn_s=None, llm_ttft_s=0.25, e2e_s=0.8))
    metrics.greeting(0.5)
    text = generate_latest(metrics.registry).decode()
    counts = series(text, "corevoice_worker_turn_latency_seconds_count")
    assert counts == {
        frozenset({"worker_id": "w1", "stage": "stt"}.items()): 1,
        frozenset({"worker_id": "w1", "stage": "llm_ttft"}.items()): 1,
        frozenset({"worker_id": "w1", "stage": "e2e"}.items()): 1,
    }
    assert series(text, "corevoice_worker_greeting_latency_seconds_count") == {
        frozenset({"worker_id": "w1"}.items()): 1
    }


def test_turn_and_greeting_messages_cross_the_link_intact() -> None:
    turn = LinkTurn(call_id="AJ_1", turn=TurnLatency(e2e_s=0.7, config_version=3))
    greeting = LinkGreeting(call_id="AJ_1", latency_s=0.4)
    for message in (turn, greeting):
        assert decode_body(encode_frame(message)[4:]) == message


# --- the mirror: which versions count as propagated --------------------------------------


def _changed(agent_id: str, version: int) -> ConfigChanged:
    return ConfigChanged(
        agent_id=agent_id,
        tenant_id="t1",
        version=version,
        kind=ChangeKind.UPDATED,
        at=dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=50),
    )


@pytest.fixture
def table() -> ConfigSyncTable:
    return ConfigSyncTable()


@pytest.fixture
def mirror(table: ConfigSyncTable) -> tuple[ConfigMirror, list[Held]]:
    held: list[Held] = []
    m = ConfigMirror(table, timeout=0.5)
    m.on_held = held.append
    m.reconciled()
    return m, held


async def test_an_announced_version_of_a_held_agent_is_reported_once_held(
    mirror: tuple[ConfigMirror, list[Held]], table: ConfigSyncTable
) -> None:
    m, held = mirror
    table.put("a1", 1)
    await m.config_for_call("a1", None)
    assert held == []  # a first fetch is no propagation
    table.put("a1", 2)
    change = _changed("a1", 2)
    m.announce(change)
    await m.settle()
    assert [(h.agent_id, h.version, h.changed_at, h.tenant_id) for h in held] == [
        ("a1", 2, change.at, "t1")
    ]
    assert held[0].held_at >= change.at.timestamp()
    m.announce(change)  # the feed replaying it (a reconnect): nothing new
    await m.settle()
    assert len(held) == 1


async def test_an_agent_not_held_is_not_reported(
    mirror: tuple[ConfigMirror, list[Held]], table: ConfigSyncTable
) -> None:
    m, held = mirror
    table.put("a2", 5)
    m.announce(_changed("a2", 5))
    await m.settle()
    await m.config_for_call("a2", None)
    assert held == []


async def test_a_refresh_fetched_before_its_announcement_is_reported_when_it_arrives(
    mirror: tuple[ConfigMirror, list[Held]], table: ConfigSyncTable
) -> None:
    m, held = mirror
    table.put("a3", 1)
    await m.config_for_call("a3", None)
    table.put("a3", 2)
    m.prefetch("a3", None)  # a job for it: the fetch brings v2 before the event does
    await m.settle()
    fetched_at = m.peek("a3", None)
    assert fetched_at is not None and fetched_at.config.version == 2
    assert held == []
    change = _changed("a3", 2)
    m.announce(change)
    assert [(h.version, h.changed_at, h.held_at) for h in held] == [
        (2, change.at, fetched_at.held_at)
    ]
