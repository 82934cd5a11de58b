"""The bus with authentication on: each service's NATS user can do its job and nothing else.

One nats-server for the module (its permissions are what `corevoice up` renders from
`core_voice_contracts.permissions`) and config_sync on it. A refusal is what the server
says: a "Permissions Violation" error for the publish or the subscription, and nothing
delivered. The TLS tests generate their own CA and server certificate.
"""

import asyncio
import json
import os
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.msg import Msg

from core_voice_cli.binaries import find_binary
from core_voice_cli.servers import NatsServer
from core_voice_config_sync.errors import SettingsError
from core_voice_config_sync.settings import load_settings
from core_voice_contracts import codec, subjects
from core_voice_contracts.bus import NatsAccess, connect
from core_voice_contracts.events import ConfigFound, ConfigGetRequest
from core_voice_contracts.permissions import Role, inbox_prefix
from core_voice_contracts.streams import VOICE_CALLS, VOICE_CONFIG, VOICE_JOBS
from tests.certs import make_tls_files
from tests.harness.config_sync import ADMIN_TOKEN, ConfigSync, config_sync_service, refused_start
from tests.harness.config_sync_api import auth, new_agent_id
from tests.harness.nats import running_nats, watched

pytestmark = pytest.mark.integration

CANARY = "sk-canary-BUS-do-not-leak-7d1e"
OPENAI = {"provider": "openai", "model": "gpt-4o-mini"}


@pytest.fixture(scope="module")
def bus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A server of this module's own: its tests publish events nobody else should read."""
    with running_nats(tmp_path_factory.mktemp("nats-auth")) as server:
        yield server


@pytest.fixture(scope="module")
def service(
    bus_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConfigSync]:
    database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'config_sync.db'}"
    with config_sync_service(bus_server.access(Role.CONFIG_SYNC), database, tmp_path_factory) as cs:
        yield cs


@pytest.fixture(scope="module")
def agent_id(service: ConfigSync) -> str:
    """An agent with a provider key: what must reach the workers and nobody else."""
    agent = new_agent_id()
    body = {"id": agent, "name": "Keyed", "llm": OPENAI, "keys": {"openai": CANARY}}
    response = httpx.post(f"{service.base_url}/api/v1/agents", json=body, headers=auth(ADMIN_TOKEN))
    assert response.status_code == 201, response.text
    return agent


def config_request(agent_id: str) -> bytes:
    return codec.encode(ConfigGetRequest(agent_id=agent_id))


async def test_anonymous_and_wrong_password_connections_are_refused(bus_server: NatsServer) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(bus_server.url, allow_reconnect=False, max_reconnect_attempts=0)
    wrong = NatsAccess(bus_server.url, role=Role.WORKER, user="worker", password="not-it")
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            wrong.url, allow_reconnect=False, max_reconnect_attempts=0, **wrong.options()
        )


async def test_provider_keys_reach_the_worker_identity_and_no_other(
    bus_server: NatsServer, agent_id: str
) -> None:
    """The worker gets the key. Everybody else's ask is refused by the server, and an
    operator listening on every subject while the worker asks sees no key."""
    seen: list[bytes] = []

    async def spy(msg: Msg) -> None:
        seen.append(msg.data)

    async with watched(bus_server.access(Role.OPERATOR)) as operator:
        await operator.nc.subscribe(">", cb=spy)
        await operator.nc.flush()
        async with watched(bus_server.access(Role.WORKER)) as worker:
            reply = await worker.nc.request(subjects.CONFIG_GET, config_request(agent_id), 5)
        found = codec.decode_config_reply(reply.data)
        assert isinstance(found, ConfigFound), found
        assert found.config.keys.get("openai") == CANARY
        await asyncio.sleep(0.2)
        assert seen, "the operator's > subscription saw nothing at all"
        assert not [data for data in seen if CANARY.encode() in data]

    for role in (Role.OPERATOR, Role.DISPATCHER, Role.TELEMETRY, Role.CONFIG_SYNC):
        async with watched(bus_server.access(role)) as other:
            with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                await other.nc.request(subjects.CONFIG_GET, config_request(agent_id), 1)
            assert await other.refused(f'Publish to "{subjects.CONFIG_GET}"'), (role, other.errors)


async def test_nobody_may_listen_on_the_workers_or_config_syncs_replies(
    bus_server: NatsServer,
) -> None:
    for role in Role:
        for owner in (Role.WORKER, Role.CONFIG_SYNC):
            if role == owner:
                continue
            async with watched(bus_server.access(role)) as conn:
                subject = f"{inbox_prefix(owner)}.>"
                await conn.nc.subscribe(subject)
                await conn.nc.flush()
                assert await conn.refused(f'Subscription to "{subject}"'), (role, conn.errors)


# What each role may not do: (role, subject it must not publish to).
REFUSED_PUBLISHES = [
    (Role.WORKER, subjects.config_changed("sales")),
    (Role.WORKER, subjects.routing_changed("tenant-a")),
    (Role.WORKER, subjects.job_requested("sales")),
    (Role.WORKER, subjects.job_dispatched("sales")),
    (Role.WORKER, f"$JS.API.STREAM.DELETE.{VOICE_JOBS}"),
    (Role.WORKER, f"$JS.API.STREAM.PURGE.{VOICE_CALLS}"),
    (Role.WORKER, f"$JS.API.STREAM.UPDATE.{VOICE_JOBS}"),
    (Role.WORKER, subjects.ROUTING_RESOLVE),
    (Role.DISPATCHER, subjects.CONFIG_GET),
    (Role.DISPATCHER, subjects.config_changed("sales")),
    (Role.DISPATCHER, subjects.call_started("sales")),
    (Role.DISPATCHER, subjects.job_accepted("sales")),
    (Role.DISPATCHER, f"$JS.API.STREAM.DELETE.{VOICE_JOBS}"),
    (Role.TELEMETRY, subjects.job_requested("sales")),
    (Role.TELEMETRY, subjects.call_ended("sales")),
    (Role.TELEMETRY, subjects.config_changed("sales")),
    (Role.TELEMETRY, subjects.CONFIG_GET),
    (Role.TELEMETRY, subjects.ROUTING_RESOLVE),
    (Role.TELEMETRY, f"$JS.API.STREAM.UPDATE.{VOICE_JOBS}"),
    (Role.TELEMETRY, f"$JS.API.STREAM.DELETE.{VOICE_CALLS}"),
    (Role.TELEMETRY, f"$JS.API.CONSUMER.MSG.NEXT.{VOICE_JOBS}.dispatcher"),
    (Role.CONFIG_SYNC, subjects.job_requested("sales")),
    (Role.CONFIG_SYNC, subjects.call_failed("sales")),
    (Role.CONFIG_SYNC, f"$JS.API.STREAM.DELETE.{VOICE_JOBS}"),
    (Role.OPERATOR, subjects.CONFIG_GET),
]


@pytest.mark.parametrize(("role", "subject"), REFUSED_PUBLISHES)
async def test_each_service_is_refused_what_it_does_not_need(
    bus_server: NatsServer, role: Role, subject: str
) -> None:
    async with watched(bus_server.access(role)) as conn:
        await conn.nc.publish(subject, b"{}")
        await conn.nc.flush()
        assert await conn.refused(f'Publish to "{subject}"'), conn.errors


async def test_a_worker_cannot_delete_a_stream_and_telemetry_cannot_write_one(
    bus_server: NatsServer,
) -> None:
    """Through the JetStream API as a client library does it: the stream stays."""
    worker, _ = await connect(bus_server.access(Role.WORKER), name="t-w", ensure=False)
    telemetry, telemetry_js = await connect(
        bus_server.access(Role.TELEMETRY), name="t-t", ensure=False
    )
    try:
        with pytest.raises(nats.errors.TimeoutError):
            await worker.jetstream(timeout=1).delete_stream(VOICE_JOBS)
        with pytest.raises(nats.errors.TimeoutError):
            await telemetry_js.publish(subjects.call_ended("sales"), b"{}", timeout=1)
        info = await telemetry_js.stream_info(VOICE_JOBS)  # reading is allowed
        assert info.config.name == VOICE_JOBS
    finally:
        await worker.close()
        await telemetry.close()


async def test_each_service_can_do_its_job(bus_server: NatsServer, agent_id: str) -> None:
    """The allowed half, in one place (every other test runs the services themselves)."""
    tag = uuid.uuid4().hex[:8]
    worker, worker_js = await connect(bus_server.access(Role.WORKER), name="w", ensure=False)
    dispatcher, dispatcher_js = await connect(bus_server.access(Role.DISPATCHER), name="d")
    telemetry, telemetry_js = await connect(
        bus_server.access(Role.TELEMETRY), name="t", ensure=False
    )
    config_sync, config_sync_js = await connect(bus_server.access(Role.CONFIG_SYNC), name="c")
    try:
        ack = await config_sync_js.publish(subjects.routing_changed(f"ok-{tag}"), b"{}")
        assert ack.stream == VOICE_CONFIG
        ack = await worker_js.publish(subjects.call_started(f"ok-{tag}"), b"{}")
        assert ack.stream == VOICE_CALLS
        ack = await dispatcher_js.publish(subjects.job_requested(f"ok-{tag}"), b"{}")
        assert ack.stream == VOICE_JOBS
        sub = await telemetry_js.pull_subscribe(
            subjects.JOBS_ALL, durable="telemetry-jobs", stream=VOICE_JOBS
        )
        msgs = await sub.fetch(1, timeout=5)
        await msgs[0].ack()
    finally:
        for nc in (worker, dispatcher, telemetry, config_sync):
            await nc.close()


def nats_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_binary("nats")), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_the_nats_cli_with_the_operator_login_sees_streams_and_no_keys(
    bus_server: NatsServer, agent_id: str
) -> None:
    """What the README's new user ran: now refused; the operator's recipes still work."""
    login = bus_server.env(Role.OPERATOR)
    info = nats_cli(login, "stream", "info", VOICE_JOBS, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["config"]["name"] == VOICE_JOBS
    request = json.dumps({"type": "config.get.v1", "agent_id": agent_id})
    asked = nats_cli(login, "req", subjects.CONFIG_GET, request, "--timeout", "2s")
    assert f'Permissions Violation for Publish to "{subjects.CONFIG_GET}"' in asked.stderr
    assert CANARY not in asked.stdout + asked.stderr
    anonymous = nats_cli({"NATS_URL": bus_server.url}, "req", subjects.CONFIG_GET, request)
    assert anonymous.returncode != 0
    assert "Authorization Violation" in anonymous.stderr


# --- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    base = tmp_path_factory.mktemp("nats-tls")
    server = NatsServer(data_dir=base / "data", log_dir=base, tls=make_tls_files(base / "tls"))
    process = server.process().start().wait_ready(20)
    try:
        yield server
    finally:
        process.stop()


async def test_keys_travel_over_tls_end_to_end(
    tls_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """config_sync and a worker on a TLS-only server, with a CA the test made."""
    database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-tls') / 'config_sync.db'}"
    access = tls_server.access(Role.CONFIG_SYNC)
    assert access.url.startswith("tls://") and access.ca_file is not None
    with config_sync_service(access, database, tmp_path_factory) as service:
        agent = new_agent_id()
        body = {"id": agent, "name": "Keyed", "llm": OPENAI, "keys": {"openai": CANARY}}
        async with httpx.AsyncClient(base_url=service.base_url, headers=auth(ADMIN_TOKEN)) as api:
            assert (await api.post("/api/v1/agents", json=body)).status_code == 201
        nc, _ = await connect(tls_server.access(Role.WORKER), name="tls-worker", ensure=False)
        try:
            assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
            reply = await nc.request(subjects.CONFIG_GET, config_request(agent), 5)
        finally:
            await nc.close()
        found = codec.decode_config_reply(reply.data)
        assert isinstance(found, ConfigFound), found
        assert found.config.keys.get("openai") == CANARY


async def test_a_tls_server_refuses_plaintext_and_unknown_cas(
    tls_server: NatsServer, tmp_path: Path
) -> None:
    """A client asking for nats:// is told TLS is required (it gets no plaintext session)
    and, without the CA, cannot verify the server; nor can one trusting another CA."""
    access = tls_server.access(Role.WORKER)
    plain = access.url.replace("tls://", "nats://")
    with pytest.raises(ssl.SSLCertVerificationError):
        await nats.connect(
            plain,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            user="worker",
            password=access.password or "",
        )
    other_ca = make_tls_files(tmp_path / "other", ca_name="someone else").ca
    stranger = NatsAccess(
        access.url,
        role=Role.WORKER,
        user="worker",
        password=access.password,
        ca_file=str(other_ca),
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        await nats.connect(
            stranger.url, allow_reconnect=False, max_reconnect_attempts=0, **stranger.options()
        )


def test_config_sync_will_not_send_keys_in_clear_to_another_host(tmp_path: Path) -> None:
    """A plaintext NATS_URL to a remote host stops config_sync before it starts, naming
    the fix; a tls:// URL or the explicit opt-out passes that check."""
    tokens = {"admin_token": "a" * 40, "runtime_token": "r" * 40}
    with pytest.raises(SettingsError, match="CONFIG_SYNC_ALLOW_PLAINTEXT_KEYS"):
        load_settings(nats_url="nats://10.1.2.3:4222", **tokens).nats_access()
    assert load_settings(nats_url="tls://10.1.2.3:4222", **tokens).nats_access().tls
    assert load_settings(nats_url="nats://127.0.0.1:4222", **tokens).nats_access().loopback
    allowed = load_settings(nats_url="nats://nats:4222", allow_plaintext_keys=True, **tokens)
    assert not allowed.nats_access().tls

    # And as a process: exit 2 with the reason, no traceback, nothing served.
    env = {
        **os.environ,
        "NATS_URL": "nats://10.1.2.3:4222",
        "CONFIG_SYNC_ADMIN_TOKEN": "a" * 40,
        "CONFIG_SYNC_RUNTIME_TOKEN": "r" * 40,
        "CONFIG_SYNC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
    }
    done = refused_start(env, tmp_path)
    assert "CONFIG_SYNC_ALLOW_PLAINTEXT_KEYS" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
