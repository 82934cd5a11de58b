"""Synthetic call: join a LiveKit room as a caller, hear the agent, talk, check the replies.

Operators smoke-test the worker pool with it (``corevoice call``) and tests use it as a
real caller over real WebRTC. It needs only LiveKit credentials: the caller's speech is
synthesized with espeak-ng and the agent's speech is recognized with pocketsphinx, which
is exact on synthetic speech when given the phrases the agent may say (``phrases``).

    result = asyncio.run(run_call(CallOptions(
        url="ws://127.0.0.1:7880", api_key="devkey", api_secret="secret", room="smoke-1",
        say=["what are your opening hours"], phrases=["hello how can i help", "we open at nine"],
    )))
    assert result.ok, result.error
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
import wave
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import aiohttp
import numpy as np
from livekit import api, rtc

from core_voice_cli.rooms import call_room
from core_voice_contracts.room import RoomMetadata, encode_room_metadata
from core_voice_worker.speech import RECOGNIZER_RATE, PhraseRecognizer, normalize, synthesize

__all__ = ["CallOptions", "CallResult", "Reply", "add_parser", "main_call", "run_call"]

logger = logging.getLogger(__name__)

SEND_RATE = 48_000
"""The caller publishes at WebRTC's native rate, so nothing resamples on the way out."""
LISTEN_RATE = RECOGNIZER_RATE
"""The agent's audio is read at the recognizer's rate; the FFI resamples natively."""
FRAME_MS = 20
SOURCE_QUEUE_MS = 200
"""Small on purpose: the mic always has silence queued, so this is added caller latency."""
PREROLL_S = 0.3
"""Audio kept before the energy gate opens, so soft first consonants reach the recognizer."""
FINISH_GRACE_S = 5.0


@dataclass(frozen=True, kw_only=True)
class CallOptions:
    """What to call and what to say. ``phrases`` is the recognition grammar: what the agent
    may say (empty = free-form recognition, which is poor on synthetic speech)."""

    url: str
    api_key: str
    api_secret: str = field(repr=False)
    room: str
    identity: str = "synthetic-caller"
    say: Sequence[str] = ()
    phrases: Sequence[str] = ()
    greeting_timeout: float = 5.0
    """Seconds from joining until the greeting must have started."""
    reply_timeout: float = 10.0
    """Seconds from the end of each spoken phrase until the reply must have started."""
    create_room_metadata: str | None = None
    """Create the room with this metadata before joining (what routes it to an agent)."""
    delete_room: bool = True
    """Delete the room afterwards, only if this call created it."""
    record_path: Path | None = None
    """Save the agent's audio as received (16 kHz mono WAV; gaps in sending are not kept)."""
    any_participant: bool = False
    """Listen to any remote audio, not only to participants of kind AGENT."""
    energy_threshold: float = 300.0
    """RMS (int16 scale) above which agent audio counts as speech."""
    end_silence: float = 0.6
    """Quiet that ends an agent utterance."""
    max_utterance: float = 30.0
    between_turns: Callable[[int], Awaitable[None]] | None = field(default=None, repr=False)
    """Awaited before the caller says ``say[i]`` (tests edit the agent or signal the
    worker mid-call here)."""


class Reply(NamedTuple):
    said: str
    heard: str
    latency_s: float
    """End of the caller's speech -> start of the agent's audio."""


@dataclass(frozen=True, kw_only=True)
class CallResult:
    ok: bool
    room: str
    greeting_text: str | None = None
    greeting_latency_s: float | None = None
    """Caller joined the room -> start of the agent's first audio."""
    replies: list[Reply] = field(default_factory=list)
    error: str | None = None
    agent_joined_at: float | None = None
    """Wall-clock time the caller saw the agent arrive (benchmarks compare it with the
    dispatch's time)."""
    greeting_at: float | None = None
    """Wall-clock time the agent's first audio started."""

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "room": self.room,
            "greeting_text": self.greeting_text,
            "greeting_latency_s": self.greeting_latency_s,
            "replies": [r._asdict() for r in self.replies],
            "error": self.error,
        }


@dataclass(frozen=True)
class Utterance:
    started_at: float
    """time.monotonic() of the first frame above the threshold."""
    ended_at: float
    """time.monotonic() of the last frame above the threshold."""
    pcm: bytes


@dataclass(frozen=True)
class _Started:
    at: float


class _Segmenter:
    """Splits the agent's audio into utterances with an energy gate.

    An RMS gate rather than a VAD: the agent's audio is clean speech over digital silence,
    and the gate's onset time is what the latencies are measured against. ``tick`` ends an
    utterance by the clock too, because a sender may stop sending frames when it stops
    talking, and then no quiet frame would ever arrive.
    """

    def __init__(self, *, threshold: float, end_silence: float, max_utterance: float) -> None:
        self.events: asyncio.Queue[_Started | Utterance] = asyncio.Queue()
        self._threshold = threshold
        self._end_silence = end_silence
        self._max_utterance = max_utterance
        self._preroll_bytes = int(PREROLL_S * LISTEN_RATE) * 2
        self._recent = b""
        self._current: bytearray | None = None
        self._started_at = 0.0
        self._last_loud = 0.0

    def push(self, pcm: bytes, now: float) -> None:
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
        loud = samples.size > 0 and float(np.sqrt(np.mean(samples * samples))) >= self._threshold
        if self._current is None:
            if loud:
                self._current = bytearray(self._recent)
                self._current += pcm
                self._recent = b""
                self._started_at = self._last_loud = now
                self.events.put_nowait(_Started(now))
            else:
                self._recent = (self._recent + pcm)[-self._preroll_bytes :]
            return
        self._current += pcm
        if loud:
            self._last_loud = now
        self.tick(now)

    def tick(self, now: float) -> None:
        if self._current is None:
            return
        if (
            now - self._last_loud >= self._end_silence
            or now - self._started_at >= self._max_utterance
        ):
            utt = Utterance(self._started_at, self._last_loud, bytes(self._current))
            self._current = None
            self.events.put_nowait(utt)


class _Mic:
    """Feeds the published track without gaps: silence when idle, speech when asked.

    A phone line carries audio continuously; agents' VAD and end-of-turn detection expect
    a live track, and speech queued behind silence then plays in order.
    """

    def __init__(self, source: rtc.AudioSource) -> None:
        self._source = source
        self._samples = source.sample_rate * FRAME_MS // 1000
        self._pending: deque[tuple[bytes, asyncio.Future[float] | None]] = deque()

    async def run(self) -> None:
        silence = bytes(self._samples * 2)
        while True:
            chunk, done = self._pending.popleft() if self._pending else (silence, None)
            frame = rtc.AudioFrame(chunk, self._source.sample_rate, 1, self._samples)
            await self._source.capture_frame(frame)  # returns once queued: paces in real time
            if done is not None and not done.done():
                done.set_result(time.monotonic() + self._source.queued_duration)

    async def say(self, pcm: bytes) -> float:
        """Play ``pcm``; return the time.monotonic() at which its last sample plays out."""
        step = self._samples * 2
        chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
        if not chunks:
            return time.monotonic()
        chunks[-1] = chunks[-1].ljust(step, b"\0")
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pending.extend((c, None) for c in chunks[:-1])
        self._pending.append((chunks[-1], done))
        return await done


class _CallFailedError(Exception):
    """Ends the call early; the message becomes ``CallResult.error``."""


class _Call:
    """One connected caller: the room, the mic, the agent's audio and its utterances."""

    def __init__(self, opts: CallOptions) -> None:
        self.opts = opts
        self.room = rtc.Room()
        self.segmenter = _Segmenter(
            threshold=opts.energy_threshold,
            end_silence=opts.end_silence,
            max_utterance=opts.max_utterance,
        )
        self.recording = bytearray() if opts.record_path is not None else None
        self.agent_identity: str | None = None
        self.agent_joined_at: float | None = None
        self._source = rtc.AudioSource(SEND_RATE, 1, queue_size_ms=SOURCE_QUEUE_MS)
        self.mic = _Mic(self._source)
        self._stream: rtc.AudioStream | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.room.on("track_subscribed", self._on_track_subscribed)
        self.room.on("participant_connected", self._on_participant_connected)

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        if self.agent_joined_at is None and self._is_agent(participant):
            self.agent_joined_at = time.time()

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _is_agent(self, participant: rtc.RemoteParticipant) -> bool:
        return (
            self.opts.any_participant
            or participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        )

    def _on_track_subscribed(
        self,
        track: rtc.Track,
        _publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if self._stream is not None or track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        if not self._is_agent(participant):
            logger.info(
                "ignoring audio of a participant that is not an agent",
                extra={"participant": participant.identity},
            )
            return
        self.agent_identity = participant.identity
        self._stream = rtc.AudioStream(track, sample_rate=LISTEN_RATE, num_channels=1)
        self._spawn(self._listen(self._stream), "synthetic-call-listen")

    async def _listen(self, stream: rtc.AudioStream) -> None:
        async for event in stream:
            pcm = bytes(event.frame.data)
            self.segmenter.push(pcm, time.monotonic())
            if self.recording is not None:
                self.recording += pcm

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self.segmenter.tick(time.monotonic())

    async def connect(self) -> float:
        """Join and start talking silence; return the time.monotonic() of joining."""
        token = (
            api.AccessToken(self.opts.api_key, self.opts.api_secret)
            .with_identity(self.opts.identity)
            .with_name("Synthetic caller")
            .with_grants(api.VideoGrants(room_join=True, room=self.opts.room))
            .to_jwt()
        )
        await self.room.connect(self.opts.url, token)
        joined = time.monotonic()
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self._source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        self._spawn(self.mic.run(), "synthetic-call-mic")
        self._spawn(self._tick(), "synthetic-call-tick")
        await self.room.local_participant.publish_track(track, options)
        return joined

    async def next_utterance(self, *, after: float, start_by: float) -> Utterance | None:
        """The first utterance starting at or after ``after``, if it starts by ``start_by``.

        Utterances that started earlier (the tail of a previous turn, or the agent talking
        over the caller) are skipped, so they are not taken for the answer.
        """
        events = self.segmenter.events
        while True:
            remaining = start_by - time.monotonic()
            if remaining <= 0:
                return None
            try:
                event = await asyncio.wait_for(events.get(), remaining)
            except TimeoutError:
                return None
            if isinstance(event, _Started) and event.at >= after:
                break
        finish_by = time.monotonic() + self.opts.max_utterance + FINISH_GRACE_S
        while True:
            try:
                event = await asyncio.wait_for(events.get(), finish_by - time.monotonic())
            except TimeoutError:
                raise _CallFailedError("the agent's audio stopped mid-utterance") from None
            if isinstance(event, Utterance):
                return event

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._stream is not None:
            await self._stream.aclose()
        await self.room.disconnect()
        await self._source.aclose()


async def run_call(opts: CallOptions) -> CallResult:
    """Place one synthetic call; failures of the agent are a result, not an exception.

    Raises only for local problems (espeak-ng or pocketsphinx missing, bad options).
    """
    recognizer, speech = await asyncio.to_thread(_prepare, opts)
    lkapi: api.LiveKitAPI | None = None
    created = False
    call: _Call | None = None
    greeting: tuple[str, float] | None = None
    replies: list[Reply] = []

    wall = time.time() - time.monotonic()
    greeting_at: float | None = None

    def result(error: str | None = None) -> CallResult:
        return CallResult(
            ok=error is None,
            room=opts.room,
            greeting_text=greeting[0] if greeting else None,
            greeting_latency_s=greeting[1] if greeting else None,
            replies=list(replies),
            error=error,
            agent_joined_at=call.agent_joined_at if call is not None else None,
            greeting_at=greeting_at,
        )

    try:
        if opts.create_room_metadata is not None:
            lkapi = api.LiveKitAPI(opts.url, opts.api_key, opts.api_secret)
            created = await _create_room(lkapi, opts.room, opts.create_room_metadata)
        call = _Call(opts)
        joined = await call.connect()

        utt = await call.next_utterance(after=joined, start_by=joined + opts.greeting_timeout)
        if utt is None:
            return result(f"no greeting within {opts.greeting_timeout:g}s")
        greeting_at = utt.started_at + wall
        heard = await asyncio.to_thread(recognizer.recognize, utt.pcm, LISTEN_RATE)
        greeting = (heard, utt.started_at - joined)
        if not heard:
            return result("greeting heard but not recognized")

        for turn, (said, pcm) in enumerate(zip(opts.say, speech, strict=True)):
            if opts.between_turns is not None:
                await opts.between_turns(turn)
            spoken_end = await call.mic.say(pcm)
            utt = await call.next_utterance(
                after=spoken_end, start_by=spoken_end + opts.reply_timeout
            )
            if utt is None:
                return result(f"no reply to {said!r} within {opts.reply_timeout:g}s")
            heard = await asyncio.to_thread(recognizer.recognize, utt.pcm, LISTEN_RATE)
            if not heard:
                return result(f"reply to {said!r} heard but not recognized")
            replies.append(Reply(said, heard, utt.started_at - spoken_end))
        return result()
    except _CallFailedError as exc:
        return result(str(exc))
    except rtc.ConnectError as exc:
        return result(f"could not join room {opts.room!r}: {exc.message}")
    except api.TwirpError as exc:
        return result(f"LiveKit API refused: {exc.code}: {exc.message}")
    except aiohttp.ClientError as exc:
        return result(f"LiveKit API unreachable: {type(exc).__name__}: {exc}")
    finally:
        if call is not None:
            await call.aclose()
            if call.recording is not None and opts.record_path is not None:
                _write_wav(opts.record_path, bytes(call.recording), LISTEN_RATE)
        if lkapi is not None:
            if created and opts.delete_room:
                with contextlib.suppress(api.TwirpError, aiohttp.ClientError, TimeoutError):
                    await lkapi.room.delete_room(api.DeleteRoomRequest(room=opts.room))
            await lkapi.aclose()


def _prepare(opts: CallOptions) -> tuple[PhraseRecognizer, list[bytes]]:
    """Load the recognizer and synthesize the phrases before joining: both take time that
    must not count against the agent's latencies."""
    recognizer = PhraseRecognizer(opts.phrases)
    return recognizer, [_trim(synthesize(text, sample_rate=SEND_RATE)) for text in opts.say]


def _trim(pcm: bytes, floor: int = 64) -> bytes:
    """Drop espeak-ng's leading and trailing silence (~0.3 s at the end), so that "end of
    the caller's speech", which reply latencies count from, is the last audible sample."""
    samples = np.frombuffer(pcm, dtype=np.int16)
    audible = np.flatnonzero(np.abs(samples.astype(np.int32)) >= floor)
    if audible.size == 0:
        return b""
    return samples[audible[0] : audible[-1] + 1].tobytes()


async def _create_room(lkapi: api.LiveKitAPI, name: str, metadata: str) -> bool:
    """Create the room; return whether it is ours to delete (it did not exist before)."""
    existing = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))
    await lkapi.room.create_room(call_room(name, metadata))
    return not existing.rooms


def _write_wav(path: Path, pcm: bytes, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``call``: place a synthetic call and report what the agent said."""
    p = subparsers.add_parser(
        "call",
        help="place a synthetic call: hear the greeting, speak phrases, check the replies",
        description=(
            "Join a LiveKit room as a caller, hear the agent's greeting, say each --say "
            "phrase and hear the reply. Exits 1 if the agent does not answer."
        ),
    )
    env = os.environ.get
    p.add_argument(
        "--url",
        default=env("LIVEKIT_URL", "ws://127.0.0.1:7880"),
        help="LiveKit URL (env LIVEKIT_URL)",
    )
    p.add_argument(
        "--api-key",
        default=env("LIVEKIT_API_KEY", "devkey"),
        help="LiveKit API key (env LIVEKIT_API_KEY)",
    )
    p.add_argument(
        "--api-secret",
        default=env("LIVEKIT_API_SECRET", "secret"),
        help="LiveKit API secret (env LIVEKIT_API_SECRET)",
    )
    p.add_argument("--room", default=None, help="room name (default: synthetic-<random>)")
    p.add_argument("--identity", default="synthetic-caller")
    p.add_argument("--agent-id", help="create the room with this agent_id in its metadata")
    p.add_argument("--campaign-id", help="add this campaign_id to the room metadata")
    p.add_argument(
        "--say",
        action="append",
        default=[],
        metavar="PHRASE",
        help="a phrase to say after the greeting (repeatable, in order)",
    )
    p.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="PHRASE",
        help="a phrase the agent may say: the recognition grammar (repeatable)",
    )
    p.add_argument("--greeting-timeout", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--reply-timeout", type=float, default=10.0, metavar="SECONDS")
    p.add_argument(
        "--any-participant",
        action="store_true",
        help="listen to any remote audio, not only to agent participants",
    )
    p.add_argument("--keep-room", action="store_true", help="do not delete a room created here")
    p.add_argument("--record", type=Path, metavar="FILE", help="save the agent's audio as WAV")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=main_call)


def options_from_args(args: argparse.Namespace) -> CallOptions:
    metadata = RoomMetadata(agent_id=args.agent_id, campaign_id=args.campaign_id)
    return CallOptions(
        url=args.url,
        api_key=args.api_key,
        api_secret=args.api_secret,
        room=args.room or f"synthetic-{secrets.token_hex(4)}",
        identity=args.identity,
        say=list(args.say),
        phrases=list(args.expect),
        greeting_timeout=args.greeting_timeout,
        reply_timeout=args.reply_timeout,
        create_room_metadata=encode_room_metadata(metadata) if metadata != RoomMetadata() else None,
        delete_room=not args.keep_room,
        record_path=args.record,
        any_participant=args.any_participant,
    )


def main_call(args: argparse.Namespace) -> int:
    """``corevoice call``: exit 0 when the agent greeted and answered every phrase."""
    result = asyncio.run(run_call(options_from_args(args)))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_result(result))
    return 0 if result.ok else 1


def format_result(result: CallResult) -> str:
    lines = [f"room      {result.room}"]
    if result.greeting_text is not None and result.greeting_latency_s is not None:
        lines.append(
            f"agent     {_quote(result.greeting_text)}  ({result.greeting_latency_s:.2f}s)"
        )
    for reply in result.replies:
        lines.append(f"caller    {_quote(normalize(reply.said))}")
        lines.append(f"agent     {_quote(reply.heard)}  (+{reply.latency_s:.2f}s)")
    lines.append("OK" if result.ok else f"FAILED: {result.error}")
    return "\n".join(lines)


def _quote(text: str) -> str:
    return f'"{text}"' if text else "(unrecognized)"
