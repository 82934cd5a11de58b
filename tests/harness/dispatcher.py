"""The dispatcher rig: nats-server, livekit-server, config_sync and the dispatcher as
real processes, and the helpers that drive it (admin calls, webhooks, polling)."""

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
from livekit import api
from nats.js import JetStreamContext

from core_voice_cli.binaries import find_binary
from core_voice_cli.demo import demo_agent
from core_voice_cli.procs import ManagedProcess, http_ready
from core_voice_cli.servers import DEV_API_SECRET, NatsServer
from core_voice_cli.stack import WORKER_AGENT_NAME, Stack
from core_voice_contracts.admin_api import CampaignAgentSet, CampaignCreate
from core_voice_contracts.permissions import Role
from core_voice_contracts.streams import VOICE_JOBS
from tests.harness.nats import assert_no_permission_violations

SIP_WAIT_S = 1.5


@dataclass
class Rig:
    """nats-server + livekit-server + config_sync + dispatcher, all real processes."""

    base: Path
    nats: NatsServer
    stack: Stack
    overrides: dict[str, str] = field(default_factory=dict)
    """Dispatcher environment every (re)start of it gets."""
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def livekit_url(self) -> str:
        return self.stack.livekit.http_url

    @property
    def dispatcher_url(self) -> str:
        return self.stack.dispatcher_url

    @property
    def webhook_url(self) -> str:
        return f"{self.dispatcher_url}/webhook/livekit"

    def dispatcher_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.nats.env(Role.DISPATCHER))
        env.update(
            LIVEKIT_URL=self.stack.livekit.url,
            LIVEKIT_API_KEY=self.stack.livekit.api_key,
            LIVEKIT_API_SECRET=self.stack.livekit.api_secret,
            WORKER_AGENT_NAME=WORKER_AGENT_NAME,
            PYTHONUNBUFFERED="1",
            DISPATCHER_HTTP_PORT=str(self.stack.ports.dispatcher),
            DISPATCHER_SIP_WAIT_S=str(SIP_WAIT_S),
        )
        env.update(self.overrides)
        env.update(extra)
        return env

    def dispatcher_process(self, name: str = "dispatcher", **env: str) -> ManagedProcess:
        return ManagedProcess(
            name,
            [sys.executable, "-m", "core_voice_dispatcher"],
            log_dir=self.base / "logs",
            env=self.dispatcher_env(**env),
            ready=http_ready(f"{self.dispatcher_url}/healthz"),
        )

    def start(self, process: ManagedProcess, timeout: float = 60) -> ManagedProcess:
        self.processes.append(process)
        return process.start().wait_ready(timeout)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        assert_no_permission_violations(self.stack.log_dir)


def livekit_process(rig: Rig) -> ManagedProcess:
    """livekit-server for the rig; with keys of its own unless they are the dev ones."""
    server = rig.stack.livekit
    if server.api_secret == DEV_API_SECRET:
        return server.process()
    server.config_dir.mkdir(parents=True, exist_ok=True)
    config = server.config_dir / "livekit.yaml"
    config.write_text(f"{server.config_yaml()}keys:\n  {server.api_key}: {server.api_secret}\n")
    config.chmod(0o600)
    argv = [str(find_binary("livekit-server")), "--dev", "--config", str(config)]
    return ManagedProcess(
        "livekit-server", argv, log_dir=rig.base / "logs", ready=http_ready(server.http_url)
    )


@contextlib.contextmanager
def running_rig(
    base: Path,
    *,
    webhooks: bool = True,
    keys: tuple[str, str] | None = None,
    **dispatcher_env: str,
) -> Iterator[Rig]:
    """The rig, stopped however the block ends. Without ``webhooks`` LiveKit posts none
    (the test sends its own); ``keys`` replaces livekit-server's public dev key pair.

    No worker runs here, so the capacity watch is off unless a module turns it on: it
    would reject and delete every room after its wait (test_dispatcher_capacity.py).
    """
    dispatcher_env.setdefault("DISPATCHER_CAPACITY_WAIT_S", "0")
    stack = Stack(base, worker=False)
    nats = stack.nats
    if not webhooks:
        stack.livekit.webhook_urls = []
    if keys is not None:
        stack.livekit.api_key, stack.livekit.api_secret = keys
    rig = Rig(base, nats, stack, overrides=dispatcher_env)
    try:
        rig.start(nats.process(), 20)
        rig.start(livekit_process(rig), 30)
        rig.start(stack.config_sync_process())
        rig.start(rig.dispatcher_process())
        yield rig
    finally:
        rig.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin(rig: Rig, method: str, path: str, body: object) -> httpx.Response:
    """One call to config_sync's admin API (the real service), asserting success."""
    resp = httpx.request(
        method,
        f"{rig.stack.config_sync_url}/api/v1{path}",
        content=msgspec.json.encode(body),
        headers={
            "Authorization": f"Bearer {rig.stack.admin_token}",
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    assert resp.is_success, (method, path, resp.status_code, resp.text)
    return resp


def create_agent(rig: Rig, agent_id: str, **fields: object) -> None:
    body = msgspec.structs.replace(demo_agent(), id=agent_id, name=f"agent {agent_id}", **fields)
    admin(rig, "POST", "/agents", body)


def create_campaign(rig: Rig, campaign_id: str, weights: dict[str, int]) -> None:
    admin(rig, "POST", "/campaigns", CampaignCreate(id=campaign_id, name=campaign_id))
    for agent_id, weight in weights.items():
        admin(
            rig,
            "PUT",
            f"/campaigns/{campaign_id}/agents/{agent_id}",
            CampaignAgentSet(weight=weight),
        )


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 30.0, interval: float = 0.2
) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / interval)):
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"not true after {timeout} s: {check.__name__}")


async def count(js: JetStreamContext, subject: str) -> int:
    info = await js.stream_info(VOICE_JOBS, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def named_dispatches(lk: api.LiveKitAPI, room: str) -> list[api.AgentDispatch]:
    # LiveKit also lists its implicit dispatch for unnamed workers (agent_name "").
    return [d for d in await lk.agent_dispatch.list_dispatch(room) if d.agent_name]


def post(rig: Rig, body: bytes, authorization: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/webhook+json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return httpx.post(rig.webhook_url, content=body, headers=headers, timeout=10)
