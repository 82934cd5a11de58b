"""`corevoice up`: the whole stack on embedded defaults, until Ctrl-C.

No API keys: the demo agent runs on the offline providers. SIGINT/SIGTERM stop every
process this command started, in reverse order, by pid.
"""

import argparse
import sys
from pathlib import Path

import msgspec

from core_voice_cli.binaries import BinaryNotFoundError, find_binary, repo_root
from core_voice_cli.cluster import main_up_cluster
from core_voice_cli.demo import DEMO_AGENT_ID, DEMO_CALLER_PHRASES, demo_agent, seed_demo_agent
from core_voice_cli.procs import run_until_signal
from core_voice_cli.prometheus import PrometheusNotFoundError, prometheus_binary
from core_voice_cli.stack import LOOPBACK_BASE_URLS, Ports, Stack
from core_voice_contracts.runtime_config import ScriptedOptions


def _call_command(stack: Stack) -> str:
    """The smoke-test call for the demo agent, with its lines as the recognition grammar."""
    agent = demo_agent()
    rules = msgspec.convert(agent.llm.options, ScriptedOptions)
    expect = [agent.greeting, *(r.reply for r in rules.rules), rules.fallback]
    args = [
        f"--url {stack.livekit.url}",
        f"--agent-id {DEMO_AGENT_ID}",
        f'--say "{DEMO_CALLER_PHRASES[0]}"',
    ]
    args += [f'--expect "{line}"' for line in expect]
    corevoice = Path(sys.executable).parent / "corevoice"  # this environment's, by path
    return f"{corevoice} call \\\n      " + " \\\n      ".join(args)


def _summary(stack: Stack, seeded: str) -> str:
    return f"""
Core Voice is up (logs in {stack.log_dir}).

  NATS (JetStream)     {stack.nats.url}   monitor http://127.0.0.1:{stack.ports.nats_monitor}
  LiveKit server       {stack.livekit.url}   key {stack.livekit.api_key} (dev secret)
  config_sync API      {stack.config_sync_url}/api/v1/agents   OpenAPI {stack.config_sync_url}/schema
  dispatcher webhook   {stack.dispatcher_url}/webhook/livekit
  telemetry metrics    {stack.telemetry_url}/metrics
  voice worker pool    agent name "core-voice"   status http://127.0.0.1:{stack.ports.worker_health}/status
  service metrics      {stack.config_sync_url}/metrics  {stack.dispatcher_url}/metrics  http://127.0.0.1:{stack.ports.worker_health}/metrics
{_prometheus_line(stack)}
  admin token          {stack.base_dir / "admin-token"} (read it from there)
  NATS operator login  {stack.operator_env_file} (NATS_URL, NATS_USER, NATS_PASSWORD)
  process ids          {stack.base_dir / "pids"}
  demo agent           "{DEMO_AGENT_ID}" ({seeded}), offline providers, no API keys

Call the demo agent:
  {_call_command(stack)}

Recent calls and one call's timeline:
  {Path(sys.executable).parent / "corevoice"} calls   (then: calls show CALL_ID)

Watch the job stream (the bus refuses anonymous connections; source the operator login):
  (set -a && . {stack.operator_env_file} && {_nats_cli()} stream view VOICE_JOBS)

Ctrl-C stops everything.
"""


def _prometheus_line(stack: Stack) -> str:
    if stack.prometheus is None:
        return ""
    return (
        f"  Prometheus           {stack.prometheus.url}   scraping every service, alert rules "
        "loaded (dashboards: deploy/grafana, docs/dashboards.md)\n"
    )


def _nats_cli() -> str:
    """The pinned `nats` CLI by its path: a fresh shell does not have it on PATH."""
    try:
        return str(find_binary("nats"))
    except BinaryNotFoundError:
        return "nats"


def main_up(args: argparse.Namespace) -> int:
    if args.cluster:
        base = Path(args.data_dir) if args.data_dir else repo_root() / ".data" / "cluster"
        return main_up_cluster(base)
    base = Path(args.data_dir) if args.data_dir else repo_root() / ".data" / "stack"
    if args.with_prometheus:
        try:
            prometheus_binary()
        except PrometheusNotFoundError as exc:
            print(f"cannot start with --with-prometheus: {exc}", flush=True)
            return 1
    # The demo runs on one machine: its agents may use providers on this host (plain
    # http to loopback); everything else must be public https (CONFIG_SYNC_BASE_URL_ALLOW).
    stack = Stack(
        base,
        Ports() if args.free_ports else Ports.defaults(),
        base_url_allow=LOOPBACK_BASE_URLS,
        prometheus=args.with_prometheus,
    )

    def started() -> str:
        pidfile = stack.base_dir / "pids"
        pidfile.write_text("".join(f"{p.name} {p.pid}\n" for p in stack.group.processes))
        return _summary(stack, seed_demo_agent(stack.config_sync_url, stack.admin_token))

    return run_until_signal(
        "Core Voice",
        start=stack.start,
        stop=stack.stop,
        processes=lambda: stack.group.processes,
        started=started,
        log_dir=stack.log_dir,
    )


def add_parser(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser("up", help="start the whole stack on embedded defaults")
    parser.add_argument("--data-dir", help="where data and logs go (default .data/stack)")
    parser.add_argument(
        "--free-ports", action="store_true", help="use free ports instead of the well-known ones"
    )
    parser.add_argument(
        "--with-prometheus",
        action="store_true",
        help="also run Prometheus (Debian package) scraping every service, with the alert rules",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="3 NATS nodes (R3), 2 LiveKit nodes (Redis), PostgreSQL and replicated services, "
        "on free ports (docs/operations/scaling.md)",
    )
    parser.set_defaults(func=main_up)
