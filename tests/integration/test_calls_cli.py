"""`corevoice calls` against a real NATS with JetStream and its per-role users.

Events are published as the services publish them: job events as the dispatcher's user,
call events as the worker's, each with a ``traceparent`` header, encoded by the
contracts' codec. The command reads them back as the operator, in process (the same
`execute` that `main` runs) and as a subprocess for the exit codes and the secrets.
"""

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import pytest
from nats.js import JetStreamContext

from core_voice_cli.calls import execute
from core_voice_cli.main import build_parser
from core_voice_cli.servers import NatsServer
from core_voice_contracts import subjects
from core_voice_contracts.bus import ENV_PASSWORD, ENV_URL, connect, publish
from core_voice_contracts.events import (
    CallEnded,
    CallFailed,
    CallStarted,
    JobAccepted,
    JobDispatched,
    JobRejected,
    JobRequested,
    RejectReason,
    TurnLatency,
    call_outcome_msg_id,
    call_started_msg_id,
    job_accepted_msg_id,
)
from core_voice_contracts.permissions import Role
from core_voice_contracts.streams import VOICE_CALLS, VOICE_JOBS
from tests.harness.repo import repo_path

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
AGENT, OTHER_AGENT, TENANT = f"tl-{RUN}", f"tl-{RUN}-b", f"acme-{RUN}"
TRACE = uuid.uuid4().hex
WEBHOOK_LEAD_S = 1.0
"""JobRequested.at is set this far before its publish, so the stored step (JetStream's
own timestamp) is told apart from the event's time."""


def traceparent(span: int) -> dict[str, str]:
    return {"traceparent": f"00-{TRACE}-{span:016x}-01"}


class Ids(TypedDict):
    job_id: str
    room_name: str
    agent_id: str


@dataclass(frozen=True)
class Scenario:
    ended: str
    failed: str
    active: str
    rejected_job: str
    ended_room: str
    ended_job: str
    published: float
    """time.monotonic() when the last event was published."""


async def _call(
    jobs: JetStreamContext,
    worker: JetStreamContext,
    n: int,
    agent: str,
    *,
    end: str | None,
) -> tuple[str, str, str]:
    """One call's events, as the dispatcher and a worker pool publish them."""
    call_id, job_id, room = f"AJ_{RUN}_{n}", f"job-RM_{RUN}_{n}", f"room-{RUN}-{n}"
    now = dt.datetime.now(dt.UTC)
    webhook = now - dt.timedelta(seconds=WEBHOOK_LEAD_S)
    ids = Ids(job_id=job_id, room_name=room, agent_id=agent)
    await publish(
        jobs,
        subjects.job_requested(agent),
        JobRequested(at=webhook, room_sid=f"RM_{RUN}_{n}", **ids),
        msg_id=job_id,
        headers=traceparent(1),
    )
    await publish(
        jobs,
        subjects.job_dispatched(agent),
        JobDispatched(
            dispatch_id=f"AD_{n}",
            worker_agent_name="core-voice",
            requested_at=webhook,
            tenant_id=TENANT,
            **ids,
        ),
        headers=traceparent(2),
    )
    await publish(
        worker,
        subjects.job_accepted(agent),
        JobAccepted(call_id=call_id, worker_id="pool-a", **ids),
        msg_id=job_accepted_msg_id(call_id),
        headers=traceparent(3),
    )
    await publish(
        worker,
        subjects.call_started(agent),
        CallStarted(call_id=call_id, tenant_id=TENANT, config_version=2, worker_id="pool-a", **ids),
        msg_id=call_started_msg_id(call_id),
        headers=traceparent(4),
    )
    if end == "ended":
        turns = [TurnLatency(stt_final_s=0.1, llm_ttft_s=0.2, tts_ttfb_s=0.05, e2e_s=0.6)]
        event: CallEnded | CallFailed = CallEnded(
            call_id=call_id,
            tenant_id=TENANT,
            config_version=2,
            duration_s=4.5,
            greeting_latency_s=0.7,
            end_reason="caller_left",
            config_versions=[2, 3],
            turn_metrics=turns,
            **ids,
        )
        await publish(
            worker,
            subjects.call_ended(agent),
            event,
            msg_id=call_outcome_msg_id(call_id),
            headers=traceparent(5),
        )
    elif end == "failed":
        event = CallFailed(
            call_id=call_id,
            tenant_id=TENANT,
            error="no_caller",
            detail="no caller within 5 s",
            **ids,
        )
        await publish(
            worker,
            subjects.call_failed(agent),
            event,
            msg_id=call_outcome_msg_id(call_id),
            headers=traceparent(6),
        )
    return call_id, job_id, room


@pytest.fixture(scope="module")
async def scenario(nats_server: NatsServer) -> AsyncIterator[Scenario]:
    dispatcher_nc, jobs = await connect(nats_server.access(Role.DISPATCHER), name="pytest-disp")
    worker_nc, worker = await connect(
        nats_server.access(Role.WORKER), name="pytest-worker", ensure=False
    )
    try:
        ended, ended_job, ended_room = await _call(jobs, worker, 1, AGENT, end="ended")
        failed, _, _ = await _call(jobs, worker, 2, AGENT, end="failed")
        active, _, _ = await _call(jobs, worker, 3, OTHER_AGENT, end=None)
        rejected_job = f"job-RM_{RUN}_4"
        ids = Ids(job_id=rejected_job, room_name=f"room-{RUN}-4", agent_id=AGENT)
        await publish(
            jobs,
            subjects.job_requested(AGENT),
            JobRequested(room_sid="RM_4", **ids),
            msg_id=rejected_job,
        )
        await publish(
            jobs,
            subjects.job_rejected(AGENT),
            JobRejected(reason=RejectReason.DISABLED_AGENT, **ids),
        )
        # Not an event: a reader must skip it, not stop on it.
        await worker.publish(subjects.call_started(AGENT), b"{not json")
        published = time.monotonic()
        yield Scenario(ended, failed, active, rejected_job, ended_room, ended_job, published)
    finally:
        await dispatcher_nc.drain()
        await worker_nc.drain()


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


async def calls(env: dict[str, str], *argv: str) -> Run:
    """The command in this process: `main` parses and runs exactly this."""
    args: argparse.Namespace = build_parser().parse_args(["calls", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = await execute(args, env, out, err)
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture
def operator_env(nats_server: NatsServer) -> dict[str, str]:
    return nats_server.env(Role.OPERATOR)


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()[1:]]


async def test_lists_calls_newest_first_with_outcomes(
    scenario: Scenario, operator_env: dict[str, str]
) -> None:
    run = await calls(operator_env, "--agent", AGENT)
    assert run.code == 0, run.err
    assert run.out.splitlines()[0].split() == [
        *("STARTED", "(UTC)", "CALL", "AGENT", "TENANT", "VERSION"),
        *("OUTCOME", "REASON", "DURATION", "S", "WORST", "TURN", "S"),
    ]
    listed = rows(run.out)
    assert [r[1] for r in listed] == [scenario.failed, scenario.ended]  # not the rejected job
    failed, ended = listed
    assert ended[2:] == [AGENT, TENANT, "2,3", "ended", "caller_left", "4.50", "0.600"]
    assert failed[2:] == [AGENT, TENANT, "2", "failed", "no_caller", "0.00", "-"]
    assert " in the window not events: skipped)" in run.err  # the poison message


async def test_filters_by_outcome_tenant_and_all(
    scenario: Scenario, operator_env: dict[str, str]
) -> None:
    rejected = await calls(operator_env, "--agent", AGENT, "--outcome", "rejected")
    assert [r[1] for r in rows(rejected.out)] == [scenario.rejected_job]
    assert rows(rejected.out)[0][2:7] == [AGENT, "-", "-", "rejected", "disabled_agent"]
    everything = await calls(operator_env, "--agent", AGENT, "--all")
    assert {r[1] for r in rows(everything.out)} == {
        scenario.ended,
        scenario.failed,
        scenario.rejected_job,
    }
    tenant = await calls(operator_env, "--tenant", TENANT)
    assert {r[1] for r in rows(tenant.out)} == {scenario.ended, scenario.failed, scenario.active}
    active = await calls(operator_env, "--tenant", TENANT, "--outcome", "active")
    assert [r[1] for r in rows(active.out)] == [scenario.active]
    limited = await calls(operator_env, "--tenant", TENANT, "--limit", "1")
    assert len(rows(limited.out)) == 1
    assert "(1 newest of 3 shown; see --limit)" in limited.err
    nothing = await calls(operator_env, "--agent", f"nobody-{RUN}")
    assert (nothing.code, nothing.out.strip()) == (0, "no calls in the last 24h")


async def test_json_for_machines(scenario: Scenario, operator_env: dict[str, str]) -> None:
    run = await calls(operator_env, "--agent", AGENT, "--json")
    docs = json.loads(run.out)
    ended = next(d for d in docs if d["call_id"] == scenario.ended)
    assert ended["outcome"] == "ended"
    assert ended["job_id"] == scenario.ended_job
    assert ended["config_versions"] == [2, 3]
    assert ended["worst_turn_s"] == 0.6
    assert ended["trace_id"] == TRACE


async def test_show_a_call_by_its_id_job_or_room(
    scenario: Scenario, operator_env: dict[str, str]
) -> None:
    run = await calls(operator_env, "show", scenario.ended)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert f"trace     {TRACE}" in lines
    assert "versions  2 -> 3" in lines
    steps = {line.split()[0]: line.split() for line in lines if line.split()[:1]}
    for name in ("webhook", "stored", "dispatched", "offered", "joined", "greeting", "ended"):
        assert steps[name][1].endswith("Z") and steps[name][2].startswith("+"), steps[name]
    assert steps["webhook"][2] == "+0.000"
    # JetStream stored JobRequested about WEBHOOK_LEAD_S after its event time.
    assert 0.9 < float(steps["stored"][2]) < 3.0
    assert "caller_left," in steps["ended"]
    assert ["1", "0.100", "-", "0.200", "0.050", "0.600", "-"] in [line.split() for line in lines]
    by_job = await calls(operator_env, "show", scenario.ended_job)
    by_room = await calls(operator_env, "show", scenario.ended_room)
    assert by_job.out == by_room.out
    assert by_job.out.splitlines()[0] == run.out.splitlines()[0] == f"call      {scenario.ended}"


async def test_show_a_failed_call_a_running_one_and_a_rejected_job(
    scenario: Scenario, operator_env: dict[str, str]
) -> None:
    failed = json.loads((await calls(operator_env, "show", scenario.failed, "--json")).out)
    assert (failed["outcome"], failed["reason"], failed["detail"]) == (
        "failed",
        "no_caller",
        "no caller within 5 s",
    )
    assert failed["steps"][-1]["name"] == "failed"
    active = await calls(operator_env, "show", scenario.active)
    assert any(line.startswith("outcome   active, running for") for line in active.out.splitlines())
    rejected = await calls(operator_env, "show", scenario.rejected_job)
    assert "outcome   rejected (disabled_agent)" in rejected.out.splitlines()
    assert "trace     -" in rejected.out.splitlines()  # published without a traceparent
    missing = await calls(operator_env, "show", f"AJ_{RUN}_none")
    assert missing.code == 1
    assert missing.err.splitlines()[-1] == (
        f"corevoice calls: no call, job or room 'AJ_{RUN}_none' in the last 24h "
        "(widen with --since)"
    )


async def test_reads_only_the_window_and_leaves_no_consumer(
    scenario: Scenario, operator_env: dict[str, str], nats_server: NatsServer
) -> None:
    nc, js = await connect(nats_server.access(Role.OPERATOR), name="pytest-observer", ensure=False)
    try:
        before = {s: await js.consumers_info(s) for s in (VOICE_JOBS, VOICE_CALLS)}
        await asyncio.sleep(max(0.0, scenario.published + 1.5 - time.monotonic()))
        recent = await calls(operator_env, "--tenant", TENANT, "--since", "1s")
        assert recent.out.strip() == "no calls in the last 1s"
        after = {s: await js.consumers_info(s) for s in (VOICE_JOBS, VOICE_CALLS)}
    finally:
        await nc.drain()
    for stream, consumers in before.items():
        durable = {c.name for c in after[stream] if c.config.durable_name}
        assert durable == {c.name for c in consumers if c.config.durable_name}


async def test_falls_back_to_the_stack_login_file(
    scenario: Scenario, operator_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "nats-operator.env").write_text(
        "".join(f"{k}={v}\n" for k, v in operator_env.items())
    )
    run = await calls({}, "show", scenario.ended, "--data-dir", str(tmp_path))
    assert run.code == 0, run.err
    assert f"trace     {TRACE}" in run.out.splitlines()


def corevoice(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """The installed command as an operator runs it (this environment's, by path)."""
    exe = Path(sys.executable).parent / "corevoice"
    keep = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    return subprocess.run(
        [str(exe), "calls", *argv],
        env={**keep, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=repo_path(),
    )


def test_command_shows_a_call(scenario: Scenario, operator_env: dict[str, str]) -> None:
    done = corevoice(operator_env, "show", scenario.ended)
    assert done.returncode == 0, done.stderr
    assert f"call      {scenario.ended}" in done.stdout.splitlines()


def test_refused_login_and_unreachable_server_exit_2_in_one_line(
    operator_env: dict[str, str], nats_server: NatsServer
) -> None:
    wrong = "wrong-" + operator_env[ENV_PASSWORD]
    refused = corevoice({**operator_env, ENV_PASSWORD: wrong})
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr == (
        f"corevoice calls: NATS at {nats_server.url} refused the login of user 'operator'\n"
    )
    url_password = operator_env[ENV_URL].replace("://", f"://operator:{wrong}@")
    down = corevoice(
        {ENV_URL: url_password.replace(f":{nats_server.port}", ":1"), ENV_PASSWORD: wrong}
    )
    assert down.returncode == 2
    assert (
        down.stderr
        == "corevoice calls: cannot reach NATS at nats://127.0.0.1:1: connection refused\n"
    )
    assert len(down.stderr.splitlines()) == 1
    for done in (refused, down):
        assert wrong not in done.stdout + done.stderr
        assert operator_env[ENV_PASSWORD] not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
