"""A stand-in voice agent: joins a room as kind AGENT, greets, answers from a script.

Lets the synthetic caller be tested over real WebRTC before (and independently of) the
voice worker. Its energy gate is deliberately its own, not the caller's, so a bug in the
caller's segmentation cannot cancel itself out here.
"""

import asyncio
import time
from collections.abc import Coroutine, Mapping

import numpy as np
from livekit import api, rtc

from core_voice_worker.speech import RECOGNIZER_RATE, PhraseRecognizer, normalize, synthesize

SEND_RATE = 48_000
FRAME_MS = 20


class EchoAgent:
    """Greets the first caller whose client subscribes to it, then answers each recognized
    phrase with ``replies[phrase]``. With no ``replies`` it greets and never answers."""

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        api_secret: str,
        room: str,
        greeting: str,
        replies: Mapping[str, str] | None = None,
        identity: str = "fake-agent",
        energy_threshold: float = 300.0,
        end_silence: float = 0.6,
    ) -> None:
        self.url = url
        self.room_name = room
        self.greeting = greeting
        self.replies = {normalize(k): v for k, v in (replies or {}).items()}
        self.identity = identity
        self.heard: list[str] = []
        """What the agent recognized from the caller, in order."""
        self.room_metadata: str | None = None
        self._api_key = api_key
        self._api_secret = api_secret
        self._threshold = energy_threshold
        self._end_silence = end_silence
        self._room = rtc.Room()
        self._source = rtc.AudioSource(SEND_RATE, 1, queue_size_ms=200)
        self._subscribed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._speaking = asyncio.Lock()
        self._listening = False
        self._recognizer: PhraseRecognizer | None = None
        self._room.on("local_track_subscribed", lambda _track: self._subscribed.set())
        self._room.on("track_subscribed", self._on_track_subscribed)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, *, wait_for_room: float | None = None) -> None:
        """Join (after the room exists, if ``wait_for_room`` seconds are given: the way a
        dispatched agent arrives in a room somebody else created)."""
        if self.replies:
            self._recognizer = await asyncio.to_thread(PhraseRecognizer, list(self.replies))
        if wait_for_room is not None:
            await self._wait_for_room(wait_for_room)
        token = (
            api.AccessToken(self._api_key, self._api_secret)
            .with_identity(self.identity)
            .with_kind("agent")
            .with_grants(api.VideoGrants(room_join=True, room=self.room_name))
            .to_jwt()
        )
        await self._room.connect(self.url, token)
        self.room_metadata = self._room.metadata
        track = rtc.LocalAudioTrack.create_audio_track("agent-voice", self._source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self._room.local_participant.publish_track(track, options)
        self._spawn(self._greet())

    async def _wait_for_room(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with api.LiveKitAPI(self.url, self._api_key, self._api_secret) as lkapi:
            while time.monotonic() < deadline:
                found = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[self.room_name]))
                if found.rooms:
                    return
                await asyncio.sleep(0.05)
        raise TimeoutError(f"room {self.room_name} was not created within {timeout}s")

    async def _greet(self) -> None:
        # Greeting before the caller's client subscribed would be lost, as for a real agent.
        await self._subscribed.wait()
        await self.say(self.greeting)

    async def say(self, text: str) -> None:
        pcm = await asyncio.to_thread(synthesize, text, sample_rate=SEND_RATE)
        samples = SEND_RATE * FRAME_MS // 1000
        step = samples * 2
        async with self._speaking:
            for i in range(0, len(pcm), step):
                chunk = pcm[i : i + step].ljust(step, b"\0")
                await self._source.capture_frame(rtc.AudioFrame(chunk, SEND_RATE, 1, samples))
            await self._source.wait_for_playout()

    def _on_track_subscribed(
        self,
        track: rtc.Track,
        _publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        is_caller = participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        if self._recognizer is None or self._listening or not is_caller:
            return
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._listening = True
            self._spawn(self._listen(rtc.AudioStream(track, sample_rate=RECOGNIZER_RATE)))

    async def _listen(self, stream: rtc.AudioStream) -> None:
        """Energy-gate the caller's (continuous) audio; answer each utterance."""
        utterance = bytearray()
        quiet = 0.0
        try:
            async for event in stream:
                frame = event.frame
                pcm = bytes(frame.data)
                samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
                loud = float(np.sqrt(np.mean(samples * samples))) >= self._threshold
                if loud:
                    utterance += pcm
                    quiet = 0.0
                elif utterance:
                    utterance += pcm
                    quiet += frame.duration
                    if quiet >= self._end_silence:
                        self._spawn(self._answer(bytes(utterance)))
                        utterance = bytearray()
        finally:
            await stream.aclose()

    async def _answer(self, pcm: bytes) -> None:
        assert self._recognizer is not None
        heard = await asyncio.to_thread(self._recognizer.recognize, pcm, RECOGNIZER_RATE)
        self.heard.append(heard)
        if heard in self.replies:
            await self.say(self.replies[heard])

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._room.disconnect()
        await self._source.aclose()
