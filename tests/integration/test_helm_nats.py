"""The chart's NATS users, started for real: each service's credentials do its job and
nothing more.

`helm template` renders the chart's auth.conf (the users and permissions it gives a NATS
server, from files/nats-permissions.json); a nats-server runs with exactly that file, its
passwords from the environment as the chart's NATS pod gets them. Each service role then
connects as its own user, sets up its streams (what it does at start), publishes what it
needs to without a violation and is refused representative subjects it must not touch.
"""

import asyncio
import os
import secrets
import subprocess
from collections.abc import Iterator

import nats
import pytest
import yaml

from core_voice_cli.binaries import find_binary
from core_voice_cli.chart_files import chart_dir
from core_voice_cli.procs import ManagedProcess, free_port, http_ready
from core_voice_contracts import subjects
from core_voice_contracts.bus import NatsAccess, connect
from core_voice_contracts.permissions import SERVICE_ROLES, Role, inbox_prefix
from core_voice_contracts.streams import VOICE_CALLS, VOICE_JOBS
from tests.harness.nats import watched

pytestmark = pytest.mark.integration

# (role, subjects it publishes in its job, subjects it must be refused)
DUTIES: dict[Role, tuple[list[str], list[str]]] = {
    Role.CONFIG_SYNC: (
        [subjects.config_changed("sales"), subjects.routing_changed("tenant-a")],
        [subjects.job_requested("sales"), subjects.call_failed("sales"),
         f"$JS.API.STREAM.DELETE.{VOICE_JOBS}"],
    ),
    Role.DISPATCHER: (
        [subjects.job_requested("sales"), subjects.job_dispatched("sales"),
         subjects.call_failed("sales")],
        [subjects.CONFIG_GET, subjects.config_changed("sales"), subjects.job_accepted("sales"),
         f"$JS.API.STREAM.DELETE.{VOICE_JOBS}"],
    ),
    Role.WORKER: (
        [subjects.job_accepted("sales"), subjects.call_started("sales"),
         subjects.call_ended("sales"), subjects.WORKER_STATUS],
        [subjects.job_requested("sales"), subjects.config_changed("sales"),
         subjects.ROUTING_RESOLVE, f"$JS.API.STREAM.PURGE.{VOICE_CALLS}"],
    ),
    Role.TELEMETRY: (
        [],
        [subjects.call_ended("sales"), subjects.CONFIG_GET, subjects.ROUTING_RESOLVE,
         f"$JS.API.STREAM.UPDATE.{VOICE_JOBS}"],
    ),
    Role.OPERATOR: (
        [subjects.job_requested("sales"), f"$JS.API.STREAM.INFO.{VOICE_JOBS}"],
        [subjects.CONFIG_GET],
    ),
}  # fmt: skip


def chart_auth_conf() -> str:
    """The chart's auth.conf, as `helm template` renders it."""
    out = subprocess.run(
        [str(find_binary("helm")), "template", "cv", str(chart_dir()),
         "--show-only", "templates/nats-auth.yaml"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    conf: str = yaml.safe_load(out.stdout)["data"]["auth.conf"]
    return conf


class ChartNats:
    def __init__(self, url: str, passwords: dict[Role, str]) -> None:
        self.url = url
        self.passwords = passwords

    def access(self, role: Role, password: str | None = None) -> NatsAccess:
        return NatsAccess(
            self.url, role=role, user=role.value, password=password or self.passwords[role]
        )


@pytest.fixture(scope="module")
def chart_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartNats]:
    base = tmp_path_factory.mktemp("helm-nats")
    (base / "auth.conf").write_text(chart_auth_conf())
    (base / "nats.conf").write_text("include ./auth.conf\n")
    # nats-server lexes an environment variable's value like a config value: one starting
    # with a digit is read as a number and the server refuses to start ("Expected a digit
    # but got 'n'"; CI hit it). Passwords for the chart start with a letter
    # (docs/deployment.md).
    passwords = {role: "p" + secrets.token_urlsafe(24) for role in Role}
    env = {f"NATS_PASSWORD_{role.value.upper()}": pw for role, pw in passwords.items()}
    port, monitor = free_port(), free_port()
    argv = [
        str(find_binary("nats-server")), "-c", str(base / "nats.conf"), "-js",
        "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor), "-sd", str(base / "data"),
    ]  # fmt: skip
    process = ManagedProcess(
        "nats-server",
        argv,
        log_dir=base,
        env={**os.environ, **env},
        ready=http_ready(f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true"),
    )
    process.start().wait_ready(20)
    try:
        yield ChartNats(f"nats://127.0.0.1:{port}", passwords)
    finally:
        process.stop()


async def test_a_wrong_password_is_refused(chart_nats: ChartNats) -> None:
    wrong = chart_nats.access(Role.WORKER, password="not-it")
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            wrong.url, allow_reconnect=False, max_reconnect_attempts=0, **wrong.options()
        )


async def test_each_service_sets_up_its_streams(chart_nats: ChartNats) -> None:
    # config_sync first: it owns the streams; the others look them up.
    for role in SERVICE_ROLES:
        nc, _ = await connect(chart_nats.access(role), name=f"helm-test-{role.value}")
        await nc.close()


@pytest.mark.parametrize("role", list(DUTIES))
async def test_credentials_do_the_job_and_nothing_more(chart_nats: ChartNats, role: Role) -> None:
    allowed, refused = DUTIES[role]
    async with watched(chart_nats.access(role)) as conn:
        for subject in allowed:
            await conn.nc.publish(subject, b"{}")
        for subject in refused:
            await conn.nc.publish(subject, b"{}")
        await conn.nc.flush()
        for subject in refused:
            assert await conn.refused(f'Publish to "{subject}"'), (subject, conn.errors)
        await asyncio.sleep(0.1)
        for subject in allowed:
            assert not [e for e in conn.errors if f'"{subject}"' in e], conn.errors
        if role != Role.WORKER:  # nobody listens in on the replies that carry provider keys
            inbox = f"{inbox_prefix(Role.WORKER)}.>"
            await conn.nc.subscribe(inbox)
            await conn.nc.flush()
            assert await conn.refused(f'Subscription to "{inbox}"'), conn.errors
