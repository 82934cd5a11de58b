"""The dashboards' proof: every panel of every dashboard in deploy/grafana returns data from
a real Prometheus scraping the running stack, after real calls.

Real nats-server, livekit-server, the four services and Prometheus (the Debian package) as
processes. The traffic is what an operator's first hour holds: an agent created, two calls
with real audio (one turn each), an edit between them and one after (config propagation),
and a room naming an agent nobody created (a rejection). Then every panel query runs through
Prometheus' HTTP API with the dashboard variables set to "All", and must return a finite
value. The rules must be loaded and evaluate without error, and every scrape target be up.
"""

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
import yaml
from livekit import api

from core_voice_cli.binaries import repo_root
from core_voice_cli.dashboards.catalogue import metric_names
from core_voice_cli.demo import demo_agent
from core_voice_cli.rooms import call_room
from core_voice_cli.stack import Stack
from tests.harness.nats import assert_no_permission_violations
from tests.harness.stack import GREETING_V1, GREETING_V2, api_client, call

pytestmark = pytest.mark.e2e

VARIABLES = {
    "tenant": ".*",
    "agent": ".*",
    # Grafana picks max(4 x scrape interval, step); here: a window that holds the whole run,
    # so a call made a minute before the query still shows.
    "__rate_interval": "5m",
    "__range": "10m",
}
DATA_DEADLINE_S = 45.0
"""Telemetry and the services publish within a scrape or two (2 s); the rest is slack."""


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}: {self.expr}"


def substitute(expr: str) -> str:
    """The query Grafana would send with every variable on "All"."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in VARIABLES, f"unknown dashboard variable ${name} in {expr}"
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def dashboard_targets() -> list[Target]:
    targets = []
    for path in sorted((repo_root() / "deploy" / "grafana").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                targets.append(
                    Target(dashboard["title"], panel["title"], target["refId"], target["expr"])
                )
    assert len(targets) > 40, "the dashboards lost their panels"
    return targets


def alert_names() -> set[str]:
    rules = yaml.safe_load((repo_root() / "deploy" / "prometheus" / "alerts.yml").read_text())
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("prometheus"), prometheus=True) as running:
        yield running
    assert_no_permission_violations(running.log_dir)


def prometheus_url(stack: Stack) -> str:
    assert stack.prometheus is not None
    return stack.prometheus.url


async def query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/query", params={"query": expr})
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


async def reject_unknown_agent(stack: Stack) -> None:
    """A room naming an agent that does not exist: the dispatcher rejects its job."""
    room = f"prom-unknown-{uuid.uuid4().hex[:8]}"
    metadata = json.dumps({"agent_id": f"no-such-agent-{uuid.uuid4().hex[:6]}"})
    async with api.LiveKitAPI(
        stack.livekit.http_url, stack.livekit.api_key, stack.livekit.api_secret
    ) as lk:
        await lk.room.create_room(call_room(room, metadata))
        await asyncio.sleep(1.0)  # the webhook is posted when the room starts
        await lk.room.delete_room(api.DeleteRoomRequest(room=room))


async def explain(client: httpx.AsyncClient, stack: Stack, target: Target) -> str:
    """Which series of a query without data Prometheus has never seen, and whether any
    service exports it: a metric nobody built yet, or traffic this test does not make."""
    exported = ""
    async with httpx.AsyncClient(timeout=5) as plain:
        for url in (
            stack.config_sync_url,
            stack.dispatcher_url,
            stack.telemetry_url,
            f"http://127.0.0.1:{stack.ports.worker_health}",
        ):
            exported += (await plain.get(f"{url}/metrics")).text
    notes = []
    for name in sorted(metric_names(target.expr)):
        history = await query(client, f'{{__name__="{name}"}}[{VARIABLES["__rate_interval"]}]')
        if not history:
            where = "exported without samples" if name in exported else "exported by no service"
            notes.append(f"{name}: no series in Prometheus ({where})")
            continue
        # A series whose first sample already holds its only increment: rate() sees none.
        for series in history[:4]:
            values = [v for _, v in series["values"]]
            labels = {k: v for k, v in series["metric"].items() if k not in ("job", "instance")}
            notes.append(f"{labels}: {len(values)} samples, first {values[0]}, last {values[-1]}")
    return f"{target}\n      " + "\n      ".join(notes)


async def test_every_dashboard_panel_has_data_from_the_running_stack(stack: Stack) -> None:
    started = time.monotonic()
    agent_id = f"prom-{uuid.uuid4().hex[:8]}"
    agent = msgspec.structs.replace(demo_agent(), id=agent_id, greeting=GREETING_V1)
    async with api_client(stack) as client:
        created = await client.post("/api/v1/agents", content=msgspec.json.encode(agent))
        assert created.status_code == 201, created.text
        # Read it now and again later: a labelled series' first sample already holds its
        # first increment, which rate() cannot see; the second read is an increase.
        assert (await client.get(f"/api/v1/agents/{agent_id}")).status_code == 200

    first = await call(stack, agent_id, f"prom-1-{agent_id}")
    assert first.ok, first.error

    async with api_client(stack) as client:
        edited = await client.patch(
            f"/api/v1/agents/{agent_id}", content=json.dumps({"greeting": GREETING_V2})
        )
        assert edited.status_code == 200, edited.text

    second = await call(stack, agent_id, f"prom-2-{agent_id}")
    assert second.ok, second.error
    await reject_unknown_agent(stack)
    async with api_client(stack) as client:
        assert (await client.get(f"/api/v1/agents/{agent_id}")).status_code == 200
        # A second edit: the first one's propagation created the histogram's series (the
        # pools held no config of the new agent before its first call), this one is the
        # increase the propagation panels can see.
        edited = await client.patch(
            f"/api/v1/agents/{agent_id}", content=json.dumps({"greeting": GREETING_V1})
        )
        assert edited.status_code == 200, edited.text
    traffic_s = time.monotonic() - started

    targets = dashboard_targets()
    missing: list[Target] = targets
    async with httpx.AsyncClient(base_url=prometheus_url(stack), timeout=10) as prom:
        deadline = time.monotonic() + DATA_DEADLINE_S
        while True:
            missing = [t for t in missing if not finite(await query(prom, substitute(t.expr)))]
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(2.0)
        explained = [await explain(prom, stack, t) for t in missing]
        assert not missing, f"{len(missing)} of {len(targets)} panel queries without data:\n  " + (
            "\n  ".join(explained)
        )
        print(f"traffic {traffic_s:.1f}s; {len(targets)} panel queries have data")

        # Every service is scraped, and the alert rules are loaded and evaluate cleanly.
        active = (await prom.get("/api/v1/targets")).json()["data"]["activeTargets"]
        assert {t["labels"]["job"] for t in active} == {
            "corevoice-config-sync",
            "corevoice-dispatcher",
            "corevoice-telemetry",
            "corevoice-voice-worker",
        }
        assert all(t["health"] == "up" for t in active), [
            (t["scrapeUrl"], t["lastError"]) for t in active if t["health"] != "up"
        ]
        groups = (await prom.get("/api/v1/rules")).json()["data"]["groups"]
        rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
        assert set(rules) == alert_names()
        assert all(r["health"] == "ok" for r in rules.values()), {
            name: r.get("lastError") for name, r in rules.items() if r["health"] != "ok"
        }
        # A healthy stack with a worker pool: the no-workers rule's condition is false.
        assert rules["CoreVoiceNoWorkers"]["state"] == "inactive"


def test_substitute_sets_every_variable_to_all() -> None:
    expr = 'sum(rate(x{tenant=~"$tenant", agent=~"${agent}"}[$__rate_interval])) + y[$__range]'
    assert substitute(expr) == 'sum(rate(x{tenant=~".*", agent=~".*"}[5m])) + y[10m]'
    with pytest.raises(AssertionError):
        substitute("z{a=~'$unknown'}")
