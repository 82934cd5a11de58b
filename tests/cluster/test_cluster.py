"""The stack on a 3-node NATS cluster (R3) and 2 LiveKit nodes (Redis), with 2 config_sync
replicas on PostgreSQL, 2 dispatchers, 3 worker pools and telemetry, all real processes
on loopback (`core_voice_cli.cluster.ClusterStack`). Rooms arrive in bursts through both
LiveKit nodes while faults are injected; every assertion is made on what the streams
hold: one job per room, one outcome, one call, nothing lost, nothing twice.

Numbers are printed (``-s``) and recorded in docs/operations/scaling.md.
"""

import asyncio
import contextlib
import datetime as dt
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from core_voice_cli.cluster import ClusterStack, Service
from core_voice_cli.procs import ProcessFailedError
from core_voice_cli.servers import NatsServer
from core_voice_contracts.events import CallFailed, CallFailure, ConfigHeld
from core_voice_contracts.streams import VOICE_CALLS, VOICE_CONFIG, VOICE_JOBS
from tests.harness.cluster import (
    POOL_CAPACITY,
    Rooms,
    burst,
    create_agent,
    edit,
    ledger,
    livekit_apis,
    operator_bus,
    percentile,
    settled,
    watching,
)
from tests.harness.route_proxy import RouteProxies

pytestmark = pytest.mark.cluster

ENDS = ("rejected:", "expired:")
SPREAD_BURSTS = 5
SPREAD_ROOMS_PER_BURST = 40
"""200 rooms: more than the pools hold in the dispatcher's capacity wait, so most end
``no_capacity`` (a rejection with its reason), the rest are called. 300 (6 x 50) passed
twice and then overloaded the 2 cores: ~230 jobs waiting for capacity make the
dispatchers poll LiveKit ~230 times a second, and a pool then on the thread executor (its
calls in its own process) missed livekit-rtc's FFI deadline, which panics and drains the
pool; at 200 that happened once more, and the pools now run the process executor, the
default (docs/operations/scaling.md)."""
EDIT_LAG_P99_UNDER_FAULTS_S = 1.0
"""Edits made through the faults, outside the seconds of a NATS node election (a
config_sync replica killed, PostgreSQL restarted, ...): the issue's 1 s target; measured
49-347 ms on the process executor (docs/operations/scaling.md)."""
HEAL_WITHIN_S = 90.0
"""After the cut ends: routes back, and both streams' replicas current. 5.0-8.7 s in most
runs; 35 s once, with the machine loaded by the bursts (docs/operations/scaling.md)."""
SPREAD_EDIT_LAG_P99_S = 2.0
"""The spread test's edits land at the peak of a 40-room burst, on a 2-core machine where
~25 processes start calls: p99 309-749 ms in three runs, 1,007 ms in one. The 1 s target
is asserted where the issue puts it, under the faults (`EDIT_LAG_P99_UNDER_FAULTS_S`)."""


def report(title: str, **numbers: object) -> None:
    print(f"\n[cluster] {title}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


async def pool_status(port: int) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=5) as client:
        answer: dict[str, object] = (await client.get(f"http://127.0.0.1:{port}/status")).json()
        return answer


async def test_rooms_in_bursts_across_both_livekit_nodes_spread_over_the_pools(
    cluster: ClusterStack,
) -> None:
    agent_id = await create_agent(cluster)
    nc, js = await operator_bus(cluster)
    rooms = Rooms()
    since = dt.datetime.now(dt.UTC)
    try:
        async with watching(nc) as watch, livekit_apis(cluster) as lks:
            began = time.monotonic()
            edits = []
            for n in range(SPREAD_BURSTS):
                await burst(lks, agent_id, rooms, SPREAD_ROOMS_PER_BURST)
                edits.append(await edit(cluster, agent_id, n))
                await asyncio.sleep(2.0)
            book, waited = await settled(js, agent_id, rooms.job_ids, timeout=120)
            elapsed = time.monotonic() - began
            statuses = [await pool_status(p.port) for p in cluster.pools]
        assert not rooms.failed, rooms.failed[:5]
        assert book.problems(rooms.job_ids) == []
        outcomes = [book.outcome(j) for j in rooms.job_ids]
        unsettled = [o for o in outcomes if o != "called" and not o.startswith(ENDS)]
        assert unsettled == []
        assert len(rooms.sids) == SPREAD_BURSTS * SPREAD_ROOMS_PER_BURST
        per_pool: dict[str, int] = {}
        for call in book.started.values():
            per_pool[call.worker_id] = per_pool.get(call.worker_id, 0) + 1
        assert set(per_pool) == {f"pool-{n}" for n in range(1, 4)}, per_pool
        peaks = {str(s["worker_id"]): s["peak_calls"] for s in statuses}
        assert all(isinstance(p, int) and p <= POOL_CAPACITY for p in peaks.values()), peaks
        assert all(p <= POOL_CAPACITY for p in watch.peak().values()), watch.peak()
        lags = watch.lags(agent_id, since)
        last = max(v for v in edits if v is not None)
        assert watch.holders(agent_id, last) == {f"pool-{n}" for n in range(1, 4)}
        report(
            "spread",
            rooms=len(rooms.sids),
            called=outcomes.count("called"),
            other={o: outcomes.count(o) for o in set(outcomes) if o != "called"},
            per_pool=per_pool,
            peaks=peaks,
            edit_lag_p50_ms=round(percentile(lags, 0.5) * 1000, 1),
            edit_lag_p99_ms=round(percentile(lags, 0.99) * 1000, 1),
            lags_ms=sorted(round(lag * 1000) for lag in lags),
            settle_s=round(waited, 1),
            **book.timings(),
            elapsed_s=round(elapsed, 1),
        )
        assert percentile(lags, 0.99) < SPREAD_EDIT_LAG_P99_S
    finally:
        await nc.drain()


async def _monitor(node: NatsServer, path: str) -> dict[str, Any]:
    """A node's monitoring endpoint (``/varz``, ``/routez``, ``/jsz``)."""
    async with httpx.AsyncClient(timeout=5) as client:
        answer: dict[str, Any] = (
            await client.get(f"http://127.0.0.1:{node.monitor_port}{path}")
        ).json()
        return answer


async def _replicas_current(js: JetStreamContext) -> bool:
    for name in (VOICE_JOBS, VOICE_CALLS, VOICE_CONFIG):
        with contextlib.suppress(Exception):
            info = await js.stream_info(name)
            replicas = info.cluster.replicas if info.cluster is not None else None
            if replicas is None or len(replicas) != 2 or not all(r.current for r in replicas):
                return False
            continue
        return False
    return True


async def _restart(service: Service) -> None:
    """Start ``service`` again, as an orchestrator would: a process that exits at start
    (JetStream still electing after a fault) is started again, up to three times."""
    for attempt in range(3):
        try:
            await asyncio.to_thread(service.start)
        except ProcessFailedError:
            if attempt == 2:
                raise
            await asyncio.sleep(2.0)
        else:
            return


async def _edits(
    stack: ClusterStack, agent_id: str, stop: asyncio.Event, log: list[tuple[float, int | None]]
) -> None:
    """An edit every 0.7 s until ``stop``: (time, version or None) in ``log``."""
    n = 0
    while not stop.is_set():
        n += 1
        log.append((time.monotonic(), await edit(stack, agent_id, n)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.7)


async def test_a_partitioned_nats_node_is_cut_off_and_the_cluster_heals(
    cluster: ClusterStack, route_proxies: RouteProxies
) -> None:
    agent_id = await create_agent(cluster)
    nc, js = await operator_bus(cluster)
    rooms = Rooms()
    isolated = cluster.nats_nodes[2]
    assert isolated.cluster_port is not None
    try:
        async with livekit_apis(cluster) as lks:
            arriving = asyncio.create_task(burst(lks, agent_id, rooms, 30, per_s=5))
            await asyncio.sleep(1.0)
            server_id = (await _monitor(isolated, "/varz"))["server_id"]
            cut_at = time.monotonic()
            route_proxies.isolate(isolated.cluster_port, server_id)
            # The majority side's view: JetStream led from there once it has elected.
            elected_s: float | None = None
            meta: dict[str, Any] = {}
            while time.monotonic() - cut_at < 9.0:
                await asyncio.sleep(0.25)
                meta = (await _monitor(cluster.nats_nodes[0], "/jsz"))["meta_cluster"]
                leader = meta.get("leader")
                if elected_s is None and leader and leader != isolated.server_name:
                    elected_s = time.monotonic() - cut_at
            routes_cut = (await _monitor(isolated, "/routez"))["num_routes"]
            majority = (await _monitor(cluster.nats_nodes[0], "/routez"))["num_routes"]
            route_proxies.heal()
            healed_at = time.monotonic()
            await arriving
            routes_back_s: float | None = None
            while time.monotonic() - healed_at < HEAL_WITHIN_S:
                if routes_back_s is None:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await _monitor(isolated, "/routez"))["num_routes"] > 0:
                            routes_back_s = time.monotonic() - healed_at
                if routes_back_s is not None and await _replicas_current(js):
                    break
                await asyncio.sleep(0.5)
            heal_s = time.monotonic() - healed_at
        book, waited = await settled(js, agent_id, rooms.job_ids, timeout=60)
        outcomes = [book.outcome(j) for j in rooms.job_ids]
        report(
            "partition",
            isolated=isolated.server_name,
            isolated_for_s=round(healed_at - cut_at, 1),
            routes_while_cut=routes_cut,
            majority_routes=majority,
            meta_leader_while_cut=meta.get("leader"),
            meta_leader_elected_after_s=None if elected_s is None else round(elected_s, 1),
            routes_refused=route_proxies.refused,
            routes_back_after_s=None if routes_back_s is None else round(routes_back_s, 1),
            healed_in_s=round(heal_s, 1),
            rooms=len(rooms.sids),
            outcomes={o: outcomes.count(o) for o in set(outcomes)},
            served_but_recorded_room_gone=len(book.contradicted(rooms.job_ids)),
            longest_stall_s=round(book.stall_s(rooms.job_ids), 1),
            settle_s=round(waited, 1),
        )
        assert routes_cut == 0  # cut off from both peers...
        assert majority > 0  # ...while the other two still talk
        assert elected_s is not None  # the majority leads JetStream without the cut node
        assert routes_back_s is not None and await _replicas_current(js)  # healed
        assert not rooms.failed, rooms.failed[:5]
        assert book.problems(rooms.job_ids) == []
        assert book.contradicted(rooms.job_ids) == []  # no room_gone beside a call
        assert [o for o in outcomes if o != "called" and not o.startswith(ENDS)] == []
    finally:
        await nc.drain()


async def test_faults_mid_burst_lose_nothing_and_duplicate_nothing(
    cluster: ClusterStack,
) -> None:
    """Five faults in turn, each while rooms arrive and edits are made; then a pool
    SIGTERMed (drains) and another SIGKILLed (``worker_lost``) under calls."""
    agent_id = await create_agent(cluster)
    nc, js = await operator_bus(cluster)
    phases: dict[str, Rooms] = {}
    recovery: dict[str, float] = {}
    windows: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    edit_log: list[tuple[float, int | None]] = []
    stop_edits = asyncio.Event()
    editing: asyncio.Task[None] | None = None
    since = dt.datetime.now(dt.UTC)
    try:
        async with watching(nc) as watch, livekit_apis(cluster) as lks:
            editing = asyncio.create_task(_edits(cluster, agent_id, stop_edits, edit_log))

            async def phase(name: str, fault: Callable[[], Awaitable[None]], count: int) -> None:
                rooms = phases[name] = Rooms()
                arriving = asyncio.create_task(burst(lks, agent_id, rooms, count, per_s=8))
                await asyncio.sleep(1.0)
                began = dt.datetime.now(dt.UTC)
                await fault()
                windows[name] = (began, dt.datetime.now(dt.UTC))
                await arriving

            async def kill_nats() -> None:
                process = cluster.nats_processes[1]
                assert process is not None
                process.signal(signal.SIGKILL)
                process.stop()
                await asyncio.sleep(3.0)
                await asyncio.to_thread(cluster.start_nats_node, 1)
                # The election's seconds last until the node has caught up: every
                # stream's replicas current again (the edits' lag is measured apart).
                restarted = time.monotonic()
                for _ in range(240):
                    if await _replicas_current(js):
                        break
                    await asyncio.sleep(0.25)
                recovery["nats_restart_to_replicas_current_s"] = round(
                    time.monotonic() - restarted, 1
                )

            async def kill_dispatcher() -> None:
                process = cluster.dispatchers[0].process
                assert process is not None
                process.signal(signal.SIGKILL)
                process.stop()
                await asyncio.sleep(3.0)
                await _restart(cluster.dispatchers[0])

            async def kill_config_sync() -> None:
                process = cluster.config_syncs[0].process
                assert process is not None
                process.signal(signal.SIGKILL)
                process.stop()
                await asyncio.sleep(3.0)
                await _restart(cluster.config_syncs[0])

            async def restart_postgres() -> None:
                assert cluster.postgres_process is not None
                await asyncio.to_thread(cluster.postgres_process.stop)
                await asyncio.sleep(2.0)
                await asyncio.to_thread(cluster.start_postgres)

            await phase("nats node SIGKILL + restart", kill_nats, 24)
            await phase("dispatcher SIGKILL", kill_dispatcher, 24)
            await phase("config_sync SIGKILL", kill_config_sync, 16)
            await phase("PostgreSQL restart", restart_postgres, 16)
            stop_edits.set()
            await editing
            # Every pool holds the last edit made before the pool faults.
            last = max(v for _, v in edit_log if isinstance(v, int))
            for _ in range(50):
                if watch.holders(agent_id, last) >= {"pool-1", "pool-2", "pool-3"}:
                    break
                await asyncio.sleep(0.2)
            holders = watch.holders(agent_id, last)

            # The pools: rooms arrive, then pool-1 is SIGTERMed and pool-2 SIGKILLed
            # while they hold calls.
            rooms = phases["pools: SIGTERM pool-1, SIGKILL pool-2"] = Rooms()
            await burst(lks, agent_id, rooms, 12, per_s=6)
            # Kill pool-2 while it holds a started call, pool-1 while it has any. Calls
            # last ~3 s and LiveKit picks the pool: more rooms come until both hold one.
            for attempt in range(90):
                if attempt and attempt % 10 == 0:
                    await burst(lks, agent_id, rooms, 4, per_s=6)
                book = await ledger(js, agent_id)
                started_on_2 = [
                    c
                    for c in book.started.values()
                    if c.worker_id == "pool-2"
                    and c.job_id in rooms.job_ids
                    and not book.call_ends[c.job_id]
                ]
                try:  # a pool starting calls on 2 loaded cores can be slow to answer
                    busy_1 = int(str((await pool_status(cluster.pools[0].port))["active_calls"]))
                except httpx.TransportError:  # (CI: a 5 s read timeout here)
                    continue
                if started_on_2 and busy_1 > 0:
                    break
                await asyncio.sleep(0.2)
            drained, killed = cluster.pools[0].process, cluster.pools[1].process
            assert drained is not None and killed is not None
            fault_at = dt.datetime.now(dt.UTC)
            # As Kubernetes does: SIGTERM to the pool's process alone (a second one, or
            # one to its job processes, would be a forced exit, not a drain).
            os.kill(drained.pid, signal.SIGTERM)
            drain_began = time.monotonic()
            killed.signal(signal.SIGKILL)
            killed.stop()
            await burst(lks, agent_id, rooms, 12, per_s=6)
            for _ in range(200):
                if not drained.running():
                    break
                await asyncio.sleep(0.2)
            drain_s = time.monotonic() - drain_began
            drain_code = await asyncio.to_thread(drained.stop)
        all_jobs = set().union(*(r.job_ids for r in phases.values()))
        book, waited = await settled(js, agent_id, all_jobs, timeout=120)
        lags = watch.lags(agent_id, since)
        # The seconds of a NATS node election: from the kill until 5 s after the
        # restarted node's streams were current again. An edit is in them if it was on
        # its way then: made in them, or made before the kill and not yet held by the
        # pool (its publish waited for the stream's new leader).
        kill_from, kill_to = windows["nats node SIGKILL + restart"]
        election = (kill_from, kill_to + dt.timedelta(seconds=5))

        def in_election(h: ConfigHeld) -> bool:
            return h.changed_at <= election[1] and h.at >= election[0]

        calm = [
            (h.at - h.changed_at).total_seconds()
            for h in watch.held
            if h.agent_id == agent_id and h.changed_at >= since and not in_election(h)
        ]
        edits_made = sum(1 for _, v in edit_log if isinstance(v, int))

        def during(at: dt.datetime) -> str:
            """The fault whose seconds (its start to 5 s after it) hold ``at``."""
            for name, (start, end) in windows.items():
                if start <= at <= end + dt.timedelta(seconds=5):
                    return name
            return "-"

        slowest = sorted(
            (
                (
                    round((h.at - h.changed_at).total_seconds() * 1000),
                    h.worker_id,
                    during(h.changed_at),
                )
                for h in watch.held
                if h.agent_id == agent_id and h.changed_at >= since and not in_election(h)
            ),
            reverse=True,
        )[:3]
        for name, phase_rooms in phases.items():
            outcomes = [book.outcome(j) for j in phase_rooms.job_ids]
            report(
                name,
                rooms=len(phase_rooms.sids),
                refused_by_livekit=len(phase_rooms.failed),
                outcomes={o: outcomes.count(o) for o in set(outcomes)},
                duplicates=len(book.problems(phase_rooms.job_ids)),
                problems=book.problems(phase_rooms.job_ids)[:3],
                served_but_recorded_room_gone=len(book.contradicted(phase_rooms.job_ids)),
                lost=sum(1 for o in outcomes if o in ("missing", "pending")),
                longest_stall_s=round(book.stall_s(phase_rooms.job_ids), 1),
            )
        pool_calls = [
            c for c in book.started.values() if c.job_id in phases[list(phases)[-1]].job_ids
        ]
        killed_calls = {  # running on pool-2 when it was killed
            c.call_id
            for c in pool_calls
            if c.worker_id == "pool-2"
            and c.at < fault_at
            and not any(e.at < fault_at for e in book.call_ends[c.job_id])
        }
        lost_reports = {
            e.call_id
            for ends in book.call_ends.values()
            for e in ends
            if isinstance(e, CallFailed) and e.error == CallFailure.WORKER_LOST
        }
        after = [c.worker_id for c in pool_calls if c.at > fault_at + dt.timedelta(seconds=1)]
        lost_before_start = [  # taken by the killed pool, its agent never in the room
            j
            for j in all_jobs
            if book.accepted[j] == {"pool-2"}
            and not book.calls[j]
            and any(
                isinstance(e, CallFailed) and e.error == CallFailure.WORKER_LOST
                for e in book.call_ends[j]
            )
        ]
        report(
            "edits and pools",
            edits=edits_made,
            edits_refused=len(edit_log) - edits_made,
            edit_lag_p50_ms=round(percentile(lags, 0.5) * 1000, 1),
            edit_lag_p99_ms=round(percentile(lags, 0.99) * 1000, 1),
            edit_lag_max_ms=round(max(lags, default=0) * 1000, 1),
            edit_lag_p99_outside_election_ms=round(percentile(calm, 0.99) * 1000, 1),
            slowest_outside_election=slowest,
            **recovery,
            holders_of_last=sorted(holders),
            drain_exit=drain_code,
            drain_s=round(drain_s, 1),
            killed_pool_calls=len(killed_calls),
            worker_lost_reported=len(killed_calls & lost_reports),
            calls_after_fault_by_pool={w: after.count(w) for w in set(after)},
            taken_by_killed_pool_lost_before_start=len(lost_before_start),
            settle_s=round(waited, 1),
        )
        assert holders >= {"pool-1", "pool-2", "pool-3"}
        assert percentile(calm, 0.99) < EDIT_LAG_P99_UNDER_FAULTS_S
        assert drain_code == 0
        assert killed_calls and killed_calls <= lost_reports
        assert set(after) <= {"pool-3"}
        for name, phase_rooms in phases.items():
            assert book.problems(phase_rooms.job_ids) == [], name
            assert book.contradicted(phase_rooms.job_ids) == [], name
            outcomes = [book.outcome(j) for j in phase_rooms.job_ids]
            assert [o for o in outcomes if o != "called" and not o.startswith(ENDS)] == [], name
    finally:
        stop_edits.set()
        if editing is not None:
            with contextlib.suppress(Exception):
                await editing
        await nc.drain()
