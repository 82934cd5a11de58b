"""`corevoice calls`: recent calls and one call's timeline, read from the event streams.

What a self-hosted voice stack usually cannot answer after the fact: which calls ran,
how each went, and where its seconds went (webhook -> stored -> dispatched -> offered
-> joined -> greeting -> each turn -> end), with the trace id to look the call up in a
tracing backend. Everything comes from the VOICE_JOBS and VOICE_CALLS streams, read with
the operator's NATS login (`stream_window`); nothing is stored by this command.

    corevoice calls --since 2h --agent support-bot --outcome failed
    corevoice calls show AJ_c5Qw2dXmQ8nE
"""

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from core_voice_cli.binaries import repo_root
from core_voice_cli.stream_window import BusError, access_from_env, read_window
from core_voice_cli.timeline import CALL_OUTCOMES, Outcome, Timeline, build_timelines, find

EXIT_NOT_FOUND = 1
EXIT_BUS = 2
"""Exit code when the bus cannot be read (argparse uses 2 for bad usage as well)."""
DEFAULT_SINCE = "24h"
DEFAULT_LIMIT = 50
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SINCE_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


class Since(NamedTuple):
    """How far back the window reaches, as typed (for messages) and as a duration."""

    text: str
    delta: dt.timedelta


def parse_since(text: str) -> Since:
    """``90s``, ``15m``, ``24h``, ``7d``."""
    match = _SINCE_RE.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration like 15m, 24h or 7d: {text!r}")
    return Since(text.strip(), dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)]))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return value


def iso(at: dt.datetime | None) -> str:
    """UTC, ISO 8601, milliseconds: sortable, unambiguous across operators' time zones."""
    if at is None:
        return "-"
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _secs(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# --- selection -----------------------------------------------------------------------


def select(
    timelines: Sequence[Timeline],
    *,
    agent: str | None = None,
    tenant: str | None = None,
    outcome: Outcome | None = None,
    include_jobs: bool = False,
    limit: int | None = None,
) -> list[Timeline]:
    """The list's rows, newest first. Jobs that never became a call are rows only with
    ``include_jobs`` (``--all``) or when asked for by their outcome (``--outcome
    rejected``): the list is about calls, and a flood of rejected rooms would hide them."""
    rows = [
        t
        for t in timelines
        if (agent is None or t.agent_id == agent)
        and (tenant is None or t.tenant_id == tenant)
        and (outcome is None or t.outcome is outcome)
        and (include_jobs or outcome is not None or t.outcome in CALL_OUTCOMES)
    ]
    rows.sort(key=lambda t: t.first_at, reverse=True)
    return rows[:limit] if limit is not None else rows


# --- rendering -------------------------------------------------------------------------


def table(header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    """Aligned plain text: columns two spaces apart, no trailing blanks."""
    lines = [header, *rows] if header is not None else list(rows)
    widths = [max(len(c) for c in col) for col in zip(*lines, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in lines
    )


def _versions(timeline: Timeline) -> str:
    return ",".join(str(v) for v in timeline.config_versions) or "-"


def render_list(rows: Sequence[Timeline]) -> str:
    header = (
        *("STARTED (UTC)", "CALL", "AGENT", "TENANT", "VERSION"),
        *("OUTCOME", "REASON", "DURATION S", "WORST TURN S"),
    )
    body = [
        (
            iso(t.first_at),
            t.id,
            t.agent_id or "-",
            t.tenant_id or "-",
            _versions(t),
            t.outcome.value,
            t.reason or "-",
            _secs(t.duration_s, 2),
            _secs(t.worst_turn_s, 3),
        )
        for t in rows
    ]
    return table(header, body)


def render_show(timeline: Timeline, now: dt.datetime) -> str:
    """One call: who and what, its steps with times and offsets, its turns, its end."""
    trace = timeline.trace_ids
    trace_text = trace[0] if trace else "-"
    if len(trace) > 1:
        trace_text += f" (and {', '.join(trace[1:])}: the events are not in one trace)"
    status = timeline.outcome.value
    if timeline.reason:
        status += f" ({timeline.reason})"
    running = timeline.running_s(now)
    if running is not None:
        status += f", running for {running:.1f} s"
    head = [
        ("call", timeline.call_id or "- (the job never became a call)"),
        ("job", timeline.job_id or "-"),
        ("room", timeline.room_name or "-"),
        ("agent", timeline.agent_id or "-"),
        ("tenant", timeline.tenant_id or "-"),
        ("campaign", timeline.campaign_id or "-"),
        ("worker", timeline.worker_id or "-"),
        ("trace", trace_text),
        ("outcome", status),
        ("versions", " -> ".join(str(v) for v in timeline.config_versions) or "-"),
    ]
    out = [table(None, head), ""]
    origin = timeline.webhook_at or timeline.first_at
    steps = [
        (
            s.name,
            iso(s.at),
            "-" if s.at is None else f"{(s.at - origin).total_seconds():+.3f} s",
            s.detail,
        )
        for s in timeline.steps()
    ]
    out.append(table(("STEP", "TIME (UTC)", "OFFSET", "DETAIL"), steps))
    turns = timeline.turns
    if turns:
        rows = [
            (
                str(i),
                _secs(t.stt_final_s),
                _secs(t.end_of_turn_s),
                _secs(t.llm_ttft_s),
                _secs(t.tts_ttfb_s),
                _secs(t.e2e_s),
                str(t.config_version) if t.config_version else "-",
            )
            for i, t in enumerate(turns, 1)
        ]
        out += ["", table(("TURN", "STT S", "EOT S", "LLM S", "TTS S", "E2E S", "VERSION"), rows)]
    elif timeline.outcome is Outcome.ENDED:
        out += ["", "no turns: the caller never spoke after the greeting"]
    return "\n".join(out)


def summary_json(t: Timeline) -> dict[str, object]:
    return {
        "id": t.id,
        "call_id": t.call_id,
        "job_id": t.job_id,
        "room_name": t.room_name,
        "agent_id": t.agent_id,
        "tenant_id": t.tenant_id or None,
        "campaign_id": t.campaign_id,
        "config_versions": t.config_versions,
        "outcome": t.outcome.value,
        "reason": t.reason or None,
        "started_at": iso(t.first_at),
        "duration_s": t.duration_s,
        "worst_turn_s": t.worst_turn_s,
        "trace_id": t.trace_id,
    }


def timeline_json(t: Timeline, now: dt.datetime) -> dict[str, object]:
    origin = t.webhook_at or t.first_at
    return {
        **summary_json(t),
        "worker_id": t.worker_id or None,
        "detail": t.detail or None,
        "running_s": t.running_s(now),
        "greeting_latency_s": t.greeting_latency_s,
        "trace_ids": t.trace_ids,
        "steps": [
            {
                "name": s.name,
                "at": None if s.at is None else iso(s.at),
                "offset_s": None if s.at is None else round((s.at - origin).total_seconds(), 6),
                "detail": s.detail or None,
            }
            for s in t.steps()
        ],
        "turns": [
            {
                "stt_final_s": turn.stt_final_s,
                "end_of_turn_s": turn.end_of_turn_s,
                "llm_ttft_s": turn.llm_ttft_s,
                "tts_ttfb_s": turn.tts_ttfb_s,
                "e2e_s": turn.e2e_s,
                "config_version": turn.config_version,
            }
            for turn in t.turns
        ],
    }


# --- the commands ----------------------------------------------------------------------


async def execute(
    args: argparse.Namespace,
    env: Mapping[str, str],
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Both commands; async so tests run them in their own loop against a real bus."""
    data_dir = Path(args.data_dir) if args.data_dir else repo_root() / ".data" / "stack"
    now = dt.datetime.now(dt.UTC)
    since: Since = args.since
    try:
        access = access_from_env(env, data_dir / "nats-operator.env")
        read = await read_window(access, now - since.delta)
    except BusError as exc:
        print(f"corevoice calls: {exc}", file=err)
        return EXIT_BUS
    if read.skipped:
        plural = "s" if read.skipped != 1 else ""
        print(f"({read.skipped} message{plural} in the window not events: skipped)", file=err)
    timelines = build_timelines(read.records)
    if args.call_id is not None:
        return _show(timelines, args, now, out, err)
    return _list(timelines, args, out, err)


def _list(timelines: list[Timeline], args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    matching = select(
        timelines,
        agent=args.agent,
        tenant=args.tenant,
        outcome=args.outcome,
        include_jobs=args.all,
    )
    rows = matching[: args.limit]
    if args.json:
        print(json.dumps([summary_json(t) for t in rows], indent=2), file=out)
    elif rows:
        print(render_list(rows), file=out)
    else:
        print(f"no calls in the last {args.since.text}", file=out)
    if len(rows) < len(matching):
        print(f"({len(rows)} newest of {len(matching)} shown; see --limit)", file=err)
    return 0


def _show(
    timelines: list[Timeline], args: argparse.Namespace, now: dt.datetime, out: TextIO, err: TextIO
) -> int:
    found = find(timelines, args.call_id)
    if not found:
        print(
            f"corevoice calls: no call, job or room {args.call_id!r} in the last "
            f"{args.since.text} (widen with --since)",
            file=err,
        )
        return EXIT_NOT_FOUND
    if args.json:
        docs = [timeline_json(t, now) for t in found]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2), file=out)
    else:
        print("\n\n".join(render_show(t, now) for t in found), file=out)
    return 0


def main_calls(args: argparse.Namespace) -> int:
    return asyncio.run(execute(args, os.environ))


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options both commands take; ``show`` keeps what was given before its name."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--since",
        metavar="DURATION",
        type=parse_since,
        default=argparse.SUPPRESS if suppress else DEFAULT_SINCE,
        help=f"how far back to read: 90s, 15m, 24h, 7d (default {DEFAULT_SINCE})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print JSON for machines",
    )
    parser.add_argument(
        "--data-dir",
        default=default,
        help="the `corevoice up` data dir whose nats-operator.env is used when NATS_URL "
        "is not set (default .data/stack)",
    )


def add_parser(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register ``calls`` (the list) and ``calls show CALL_ID`` (one timeline)."""
    parser = subparsers.add_parser(
        "calls",
        help="recent calls from the event streams; `calls show ID` for one call's timeline",
        description=(
            "List recent calls from the VOICE_JOBS and VOICE_CALLS streams, newest first, "
            "read with the operator's NATS login (NATS_URL, NATS_USER, NATS_PASSWORD, "
            "NATS_CA, else .data/stack/nats-operator.env). Exit 2 when NATS cannot be read."
        ),
    )
    _common(parser, suppress=False)
    parser.add_argument("--agent", help="only this agent's calls")
    parser.add_argument("--tenant", help="only this tenant's calls")
    parser.add_argument(
        "--outcome",
        type=Outcome,
        choices=list(Outcome),
        metavar="OUTCOME",
        help="only calls (or jobs) with this outcome: " + ", ".join(o.value for o in Outcome),
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="also list jobs that never became a call (rejected, expired, pending)",
    )
    parser.add_argument(
        "--limit",
        type=_positive,
        default=DEFAULT_LIMIT,
        help=f"at most this many rows, newest first (default {DEFAULT_LIMIT})",
    )
    parser.set_defaults(func=main_calls, call_id=None)
    commands = parser.add_subparsers(dest="calls_command", metavar="show")
    show = commands.add_parser(
        "show",
        help="one call's timeline: steps with times, turns, versions, end, trace id",
        description=(
            "Show one call's timeline. CALL_ID is the call id (LiveKit's job id, "
            "`call_id` in call events), or a job id or room name; a job that never "
            "became a call (rejected, expired) is shown by its job id or room."
        ),
    )
    show.add_argument("call_id", metavar="CALL_ID")
    _common(show, suppress=True)
