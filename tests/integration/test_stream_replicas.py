"""NATS_STREAM_REPLICAS: the streams at R3 on a real 3-node cluster, scaled up from R1 in
place, and refused with a clear error on a single server (nothing changed, nothing lost)."""

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from core_voice_cli.procs import ManagedProcess
from core_voice_cli.servers import NatsServer, nats_cluster
from core_voice_contracts import subjects
from core_voice_contracts.bus import connect, publish
from core_voice_contracts.events import JobRequested
from core_voice_contracts.permissions import Role
from core_voice_contracts.settings import SettingsError, load_settings
from core_voice_contracts.streams import (
    VOICE_CALLS,
    VOICE_CONFIG,
    VOICE_JOBS,
    StreamSetupError,
    ensure_streams,
)
from core_voice_telemetry.settings import TelemetrySettings

pytestmark = pytest.mark.integration

STREAMS = (VOICE_JOBS, VOICE_CALLS, VOICE_CONFIG)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NatsServer]]:
    base = tmp_path_factory.mktemp("nats-cluster")
    nodes = nats_cluster(base, base)
    processes: list[ManagedProcess] = []
    try:
        processes = [node.process().start() for node in nodes]
        for process in processes:
            process.wait_ready(30)
        yield nodes
    finally:
        for process in processes:
            process.stop()


def _job(n: int) -> JobRequested:
    return JobRequested(job_id=f"job-r-{n}", room_name="r", room_sid="RM_r", agent_id="replicas")


async def _connect_until_meta_leader(
    node: NatsServer, role: Role, replicas: int
) -> tuple[Client, JetStreamContext]:
    """A freshly formed cluster elects its JetStream meta leader a moment after the
    nodes report healthy; until then stream requests time out."""
    access = dataclasses.replace(node.access(role), stream_replicas=replicas)
    for _ in range(40):
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            return await connect(access, name=f"pytest-{role.value}")
        await asyncio.sleep(0.25)
    raise AssertionError("no JetStream meta leader after 10 s")


async def test_owners_create_the_streams_at_r3_on_a_cluster(cluster: list[NatsServer]) -> None:
    nc, js = await _connect_until_meta_leader(cluster[0], Role.DISPATCHER, 3)
    try:
        for name in STREAMS:
            info = await js.stream_info(name)
            assert info.config.num_replicas == 3
            assert info.cluster is not None
            assert len(info.cluster.replicas or []) == 2  # the leader and two followers
    finally:
        await nc.drain()


async def test_an_r1_stream_is_scaled_to_r3_in_place_keeping_its_messages(
    cluster: list[NatsServer],
) -> None:
    # An install that ran at R1 (the default) and now sets NATS_STREAM_REPLICAS=3.
    nc, js = await _connect_until_meta_leader(cluster[1], Role.OPERATOR, 3)
    try:
        await js.delete_stream(VOICE_JOBS)
        await ensure_streams(js, 1)
        assert (await js.stream_info(VOICE_JOBS)).config.num_replicas == 1
        for n in range(5):
            await publish(js, subjects.job_requested("replicas"), _job(n), msg_id=f"r-{n}")
        # A worker (no update rights) restarting first changes nothing...
        worker, _ = await _connect_until_meta_leader(cluster[2], Role.WORKER, 3)
        await worker.drain()
        assert (await js.stream_info(VOICE_JOBS)).config.num_replicas == 1
        # ...the dispatcher's restart brings the definition, replicas included, up to date.
        dispatcher, _ = await _connect_until_meta_leader(cluster[2], Role.DISPATCHER, 3)
        await dispatcher.drain()
        info = await js.stream_info(VOICE_JOBS)
        assert info.config.num_replicas == 3
        assert info.state.messages == 5
    finally:
        await nc.drain()


async def test_r3_on_a_single_server_is_refused_naming_the_setting_and_changes_nothing(
    bus: tuple[Client, JetStreamContext],
) -> None:
    _, js = bus
    await ensure_streams(js)
    before = await js.stream_info(VOICE_JOBS)
    with pytest.raises(StreamSetupError) as refused:
        await ensure_streams(js, 3)
    message = str(refused.value)
    assert "NATS_STREAM_REPLICAS" in message
    assert "3 replica" in message
    after = await js.stream_info(VOICE_JOBS)
    assert after.config.num_replicas == 1
    assert after.state.messages >= before.state.messages


def test_the_setting_is_read_from_the_environment_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NATS_STREAM_REPLICAS", "3")
    assert load_settings(TelemetrySettings).nats_access().stream_replicas == 3
    assert load_settings(TelemetrySettings).nats_access().env()["NATS_STREAM_REPLICAS"] == "3"
    monkeypatch.setenv("NATS_STREAM_REPLICAS", "7")
    with pytest.raises(SettingsError, match="NATS_STREAM_REPLICAS"):
        load_settings(TelemetrySettings)
