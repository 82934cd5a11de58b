"""The operator recipes of docs/operations/nats-cli.md, run verbatim with the real ``nats``.

Each ``<!-- recipe: NAME -->`` block of the page is executed by bash with the real NATS
CLI on PATH against a real stack, so the documented commands cannot drift from what works.
"""

import asyncio
import datetime as dt
import json
import os
import re
import subprocess
from collections.abc import Iterator

import pytest
from livekit import api
from nats.js import JetStreamContext

from core_voice_cli.binaries import find_binary
from core_voice_contracts import subjects
from core_voice_contracts.events import JobDispatched, JobRejected, RejectReason
from core_voice_contracts.permissions import Role
from tests.harness.dispatcher import (
    Rig,
    count,
    create_agent,
    eventually,
    named_dispatches,
    running_rig,
    unique,
)
from tests.harness.events import outcome_of
from tests.harness.repo import repo_path

pytestmark = pytest.mark.integration

DOC = repo_path("docs", "operations", "nats-cli.md")


def recipes() -> dict[str, str]:
    """Recipe name -> the bash block under its marker."""
    pattern = re.compile(r"<!-- recipe: ([\w-]+) -->\n```bash\n(.*?)\n```", re.DOTALL)
    return dict(pattern.findall(DOC.read_text()))


def run_recipe(rig: Rig, name: str, *, tty: bool = False, **env: str) -> str:
    """Run a documented recipe with bash, the real ``nats`` first on PATH; return stdout."""
    script = recipes()[name]
    nats_dir = str(find_binary("nats").parent)
    # As an operator runs them: the operator's login in NATS_URL/NATS_USER/NATS_PASSWORD.
    full_env = dict(os.environ, **rig.nats.env(Role.OPERATOR), **env)
    full_env["PATH"] = f"{nats_dir}:{full_env.get('PATH', '')}"
    argv = ["bash", "-euc", script]
    if tty:  # `nats stream view` pages only on a terminal: give it one
        argv = ["script", "-qec", f"bash -euc {_quote(script)}", "/dev/null"]
    done = subprocess.run(
        argv,
        check=False,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, (name, done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout + done.stderr


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("dispatcher-cli")) as running:
        yield running


def test_the_page_has_every_recipe_the_issue_asks_for() -> None:
    assert {"view", "view-interactive", "replay-window", "redispatch-one"} <= recipes().keys()


async def room_for(lk: api.LiveKitAPI, agent_id: str, name: str) -> str:
    created = await lk.room.create_room(
        api.CreateRoomRequest(name=name, metadata=json.dumps({"agent_id": agent_id}))
    )
    return f"job-{created.sid}"


async def test_view_shows_the_jobs_of_an_agent(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    agent_id = unique("view")
    create_agent(rig, agent_id)
    job_id = await room_for(lk, agent_id, f"room-{agent_id}")
    assert isinstance(await outcome_of(js, job_id), JobDispatched)
    out = await asyncio.to_thread(run_recipe, rig, "view", AGENT_ID=agent_id, SINCE="1h")
    assert "VOICE_JOBS" in out and f"voice.jobs.dispatched.{agent_id}" in out
    assert out.count(job_id) >= 2  # requested and dispatched
    assert "Unprocessed" in out or "Pending" in out  # nats consumer info of the dispatcher
    paged = await asyncio.to_thread(
        run_recipe, rig, "view-interactive", tty=True, AGENT_ID=agent_id
    )
    assert job_id in paged


async def test_replaying_a_window_redrives_rejected_jobs_and_dispatches_nothing_twice(
    rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext
) -> None:
    known, late = unique("known"), unique("late")
    create_agent(rig, known)
    done_job = await room_for(lk, known, f"room-{known}")
    assert isinstance(await outcome_of(js, done_job), JobDispatched)
    # Rooms for an agent that does not exist yet: rejected, visibly.
    late_jobs = [await room_for(lk, late, f"room-{late}-{i}") for i in range(2)]
    for job_id in late_jobs:
        rejected = await outcome_of(js, job_id)
        assert isinstance(rejected, JobRejected) and rejected.reason == RejectReason.UNKNOWN_AGENT

    create_agent(rig, late)  # the fix; now replay the window
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    out = await asyncio.to_thread(run_recipe, rig, "replay-window", SINCE="10m", UNTIL=until)
    assert "dispatcher-replay-" in out

    for job_id in late_jobs:
        assert isinstance(await outcome_of(js, job_id, kinds=(JobDispatched,)), JobDispatched)

    async def replay_removed() -> bool:  # the dispatcher removes a finished replay
        consumers = await js.consumers_info("VOICE_JOBS")
        return not any(c.name.startswith("dispatcher-replay") for c in consumers)

    await eventually(replay_removed)
    for i in range(2):
        assert len(await named_dispatches(lk, f"room-{late}-{i}")) == 1
    # The already dispatched room was re-driven too, and still has one dispatch.
    assert len(await named_dispatches(lk, f"room-{known}")) == 1
    assert await count(js, subjects.job_dispatched(known)) == 1


async def test_redispatching_one_job(rig: Rig, lk: api.LiveKitAPI, js: JetStreamContext) -> None:
    agent_id = unique("one")
    job_id = await room_for(lk, agent_id, f"room-{agent_id}")
    other = await room_for(lk, agent_id, f"room-{agent_id}-other")
    for job in (job_id, other):
        assert isinstance(await outcome_of(js, job), JobRejected)
    create_agent(rig, agent_id)
    await asyncio.to_thread(run_recipe, rig, "redispatch-one", AGENT_ID=agent_id, JOB_ID=job_id)
    dispatched = await outcome_of(js, job_id, kinds=(JobDispatched,))
    assert isinstance(dispatched, JobDispatched) and not dispatched.already_existed
    assert len(await named_dispatches(lk, f"room-{agent_id}")) == 1
    # Only that job: the other rejected room stays without a dispatch.
    assert await named_dispatches(lk, f"room-{agent_id}-other") == []
