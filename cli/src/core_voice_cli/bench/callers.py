"""Caller bots for the density benchmark: K synthetic calls at once from one process.

Each bot places a real call (`synthetic_call.run_call`: WebRTC, espeak-ng speech,
pocketsphinx on the agent's audio) and talks on a fixed cadence: after the greeting it
says a phrase every ``--period`` seconds (from a random phase, so bots do not speak in
step), waiting for each reply first, until ``--duration`` is over. A fixed cadence makes
the work per call-minute the same at every concurrency, so CPU per call-minute is
comparable across runs; a reply later than its slot only delays the next phrase. A call
that fails early is replaced by a new one while time remains. The LiveKit server comes
from LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET; the report is one JSON document
(`CallersReport`) on stdout, logs go to stderr.

    python -m core_voice_cli.bench.callers --calls 5 --agent bench-a --duration 60 \\
        --say "what are your opening hours" --expect "we are open from nine to five"
"""

import argparse
import asyncio
import logging
import os
import random
import sys
import time
from collections.abc import Sequence

import msgspec

from core_voice_cli.synthetic_call import CallOptions, run_call
from core_voice_contracts.room import RoomMetadata, encode_room_metadata

log = logging.getLogger(__name__)

GREETING_TIMEOUT_S = 30.0
"""A call start under load is slow (a new job process takes 2-5 s to start on 2 busy cores)."""
REPLY_TIMEOUT_S = 10.0
MIN_CALL_S = 3.0
"""A replacement call is placed only if at least this long (plus one period) remains."""


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    at: float
    """time.time() when the caller started saying its phrase."""
    latency_s: float
    """End of the caller's speech -> start of the agent's reply."""
    heard: str


class CallRecord(msgspec.Struct, frozen=True, kw_only=True):
    bot: int
    room: str
    agent_id: str
    ok: bool
    error: str | None = None
    started_at: float
    """time.time() before the room was created."""
    ended_at: float
    greeting_latency_s: float | None = None
    turns: list[Turn] = msgspec.field(default_factory=list)
    late_turns: int = 0
    """Turns that started after their slot because the previous reply came late."""


class CallersReport(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    calls: list[CallRecord]


REPORT_DECODER = msgspec.json.Decoder(CallersReport)


class _Cadence:
    """``between_turns`` for one call: wait for the turn's slot, note when it started."""

    def __init__(self, period: float, phase: float) -> None:
        self.period = period
        self.phase = phase
        self.first_at: float | None = None
        self.started: list[float] = []
        self.late = 0

    async def __call__(self, turn: int) -> None:
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now + self.phase
        slot = self.first_at + turn * self.period
        if slot > now:
            await asyncio.sleep(slot - now)
        elif turn:
            self.late += 1
        self.started.append(time.time())


async def bot(
    index: int,
    *,
    agents: Sequence[str],
    say: Sequence[str],
    expect: Sequence[str],
    start_at: float,
    duration: float,
    period: float,
    spacing: float,
    prefix: str,
    livekit: tuple[str, str, str],
) -> list[CallRecord]:
    """Calls from one bot until ``start_at + duration`` (wall clock)."""
    url, api_key, api_secret = livekit
    rng = random.Random(index)
    agent_id = agents[index % len(agents)]
    metadata = encode_room_metadata(RoomMetadata(agent_id=agent_id))
    end = start_at + duration
    await asyncio.sleep(max(0.0, start_at + index * spacing - time.time()))
    records: list[CallRecord] = []
    while True:
        left = end - time.time()
        turns = int((left - MIN_CALL_S) // period)
        if turns < 1:
            return records
        cadence = _Cadence(period, rng.uniform(0, period))
        room = f"{prefix}-{index}-{len(records)}"
        began = time.time()
        result = await run_call(
            CallOptions(
                url=url,
                api_key=api_key,
                api_secret=api_secret,
                room=room,
                identity=f"caller-{index}",
                say=[say[(index + t) % len(say)] for t in range(turns)],
                phrases=expect,
                greeting_timeout=GREETING_TIMEOUT_S,
                reply_timeout=REPLY_TIMEOUT_S,
                create_room_metadata=metadata,
                between_turns=cadence,
            )
        )
        records.append(
            CallRecord(
                bot=index,
                room=room,
                agent_id=agent_id,
                ok=result.ok,
                error=result.error,
                started_at=began,
                ended_at=time.time(),
                greeting_latency_s=result.greeting_latency_s,
                turns=[
                    Turn(at=at, latency_s=reply.latency_s, heard=reply.heard)
                    for at, reply in zip(cadence.started, result.replies, strict=False)
                ],
                late_turns=cadence.late,
            )
        )
        if not result.ok:
            log.warning("call failed", extra={"room": room, "error": result.error})


async def main(args: argparse.Namespace) -> CallersReport:
    livekit = (
        os.environ.get("LIVEKIT_URL", "ws://127.0.0.1:7880"),
        os.environ.get("LIVEKIT_API_KEY", "devkey"),
        os.environ.get("LIVEKIT_API_SECRET", "secret"),
    )
    start_at = args.start_at or time.time()
    per_bot = await asyncio.gather(
        *(
            bot(
                args.first_index + i,
                agents=args.agent,
                say=args.say,
                expect=args.expect,
                start_at=start_at,
                duration=args.duration,
                period=args.period,
                spacing=args.spacing,
                prefix=args.prefix,
                livekit=livekit,
            )
            for i in range(args.calls)
        )
    )
    return CallersReport(pid=os.getpid(), calls=[c for calls in per_bot for c in calls])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core_voice_cli.bench.callers", description=__doc__)
    p.add_argument("--calls", type=int, required=True, help="concurrent calls (bots)")
    p.add_argument("--first-index", type=int, default=0, help="number of the first bot")
    p.add_argument("--agent", action="append", required=True, help="agent id (repeatable)")
    p.add_argument("--say", action="append", required=True, help="a phrase (repeatable)")
    p.add_argument("--expect", action="append", required=True, help="what the agent may say")
    p.add_argument("--duration", type=float, required=True, help="seconds from --start-at")
    p.add_argument("--period", type=float, default=8.0, help="seconds between phrases")
    p.add_argument("--spacing", type=float, default=0.2, help="seconds between bot starts")
    p.add_argument("--start-at", type=float, default=0.0, help="wall-clock start (default now)")
    p.add_argument("--prefix", default="density", help="room name prefix")
    return p


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    report = asyncio.run(main(parser().parse_args()))
    sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
