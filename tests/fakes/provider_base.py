"""Plumbing shared by the AI-provider protocol fakes (OpenAI, Deepgram, Cartesia, ...).

Each fake is a real aiohttp server on 127.0.0.1 that speaks one provider's wire protocol,
so the real livekit plugin (its client, serialisation and error mapping) runs in tests and
benchmarks. Speech is real too: replies are spoken by espeak-ng and uploads are recognised
by pocketsphinx against a phrase list, the same `core_voice_worker.speech` the keyless
providers use.

A fake records what it was asked (`requests`, `keys`) for assertions and never logs a key.
Keys in ``refused_keys`` get the provider's own "invalid key" answer; `fail_next` makes the
next requests fail with a status of your choice (5xx/429 retry tests).

    >>> async with DeepgramFake(phrases=["hello there"]) as fake:   # doctest: +SKIP
    ...     stt = deepgram.STT(api_key="dg-key", base_url=fake.listen_url)

Plugins on livekit's shared aiohttp session (Deepgram, Cartesia, ElevenLabs, AssemblyAI,
OpenAI realtime) need ``async with livekit.agents.utils.http_context.open():`` outside a job.
"""

import argparse
import asyncio
import contextlib
import io
import re
import signal
import sys
import time
import uuid
import wave
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Self

import av
import msgspec
import numpy as np
from aiohttp import web
from av.audio.stream import AudioStream

from core_voice_cli.procs import ManagedProcess, free_port, http_ready
from core_voice_contracts.runtime_config import ScriptedOptions, ScriptRule
from core_voice_worker.speech import PhraseRecognizer, normalize, synthesize

HOST = "127.0.0.1"
HEALTH_PATH = "/healthz"
ESPEAK_WPM = 160
"""espeak-ng's words per minute at speed 1.0."""
READY_LINE = "fake provider ready"
"""First stdout line of a fake run as a process: ``fake provider ready <base_url>``."""


@dataclass(kw_only=True)
class Recorded:
    """One request (or websocket session) as a fake saw it."""

    path: str
    key: str | None = field(repr=False)
    """The credential it carried; kept in memory for assertions, never printed."""
    model: str = ""
    voice: str = ""
    text: str = ""
    """Text asked to be spoken, or recognised from the audio sent."""
    refused: bool = False
    """Answered with the provider's invalid-key error."""

    def add_text(self, text: str) -> None:
        self.text = f"{self.text} {text}".strip()


class ReplyRules:
    """The `scripted` LLM's rules: a rule matches when every word of its ``match`` is among
    the words of the text (case and punctuation ignored); the first match wins, else the
    fallback. Same semantics as `ScriptedLLM.reply_for` (a test holds them together),
    without importing the provider registry, which loads every plugin.

    Rules and fallback have the `ScriptedOptions` shape, so one JSON file configures both
    the in-process scripted LLM and the fake providers a benchmark starts.
    """

    def __init__(self, options: ScriptedOptions) -> None:
        self.options = options
        self._rules: list[tuple[frozenset[str], str]] = []
        for rule in options.rules:
            words = frozenset(normalize(rule.match).split())
            if not words:
                raise ValueError(f"rule match {rule.match!r} has no words")
            self._rules.append((words, rule.reply))

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        return cls(msgspec.json.decode(data, type=ScriptedOptions))

    def reply_for(self, text: str) -> str:
        heard = set(normalize(text).split())
        for words, reply in self._rules:
            if words <= heard:
                return reply
        return self.options.fallback


DEFAULT_RULES: tuple[tuple[str, str], ...] = (("opening hours", "We are open from nine to five."),)


def rules_options(
    rules: ScriptedOptions | Sequence[tuple[str, str]], fallback: str | None = None
) -> ScriptedOptions:
    """``(match, reply)`` pairs (or ready options) as `ScriptedOptions`."""
    if isinstance(rules, ScriptedOptions):
        return rules
    options = ScriptedOptions(rules=[ScriptRule(match=m, reply=r) for m, r in rules])
    if fallback is not None:
        options = ScriptedOptions(rules=options.rules, fallback=fallback)
    return options


def count_tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: words and punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def split_tokens(text: str) -> list[str]:
    """Stream pieces the way BPE tokens look: each word with its leading space."""
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


# --- offline speech ------------------------------------------------------------------------


def speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


@lru_cache(maxsize=512)
def _speech(text: str, sample_rate: int, speed_wpm: int) -> bytes:
    return synthesize(text, sample_rate=sample_rate, speed_wpm=speed_wpm)


async def speak(text: str, sample_rate: int, *, speed: float = 1.0) -> bytes:
    """espeak-ng PCM (mono s16le) for ``text``; b"" when there is nothing to say.

    Cached: a benchmark repeats the same few replies, and espeak costs ~40 ms of a core.
    """
    if not speakable(text):
        return b""
    wpm = max(80, min(450, round(ESPEAK_WPM * speed)))
    return await asyncio.to_thread(_speech, text.strip(), sample_rate, wpm)


class Recognizer:
    """pocketsphinx against the fake's phrase list (free-form when the list is empty).

    Built on first use, off the event loop: loading the model takes a few hundred ms.
    `partial` decodes against every word prefix of the phrases, so an utterance still in
    progress gives "what are" rather than nothing (a grammar only matches whole phrases).
    """

    def __init__(self, phrases: Sequence[str]) -> None:
        self.phrases = list(phrases)
        self._prefixes = sorted(
            {" ".join(p.split()[:n]) for p in self.phrases for n in range(1, len(p.split()) + 1)}
        )
        self._whole: PhraseRecognizer | None = None
        self._partial: PhraseRecognizer | None = None
        self._lock = asyncio.Lock()

    async def recognize(self, pcm: bytes, sample_rate: int) -> str:
        if not pcm:
            return ""
        async with self._lock:
            if self._whole is None:
                self._whole = await asyncio.to_thread(PhraseRecognizer, self.phrases)
            recognizer = self._whole
        return await asyncio.to_thread(recognizer.recognize, pcm, sample_rate)

    async def partial(self, pcm: bytes, sample_rate: int) -> str:
        if not pcm:
            return ""
        async with self._lock:
            if self._partial is None:
                self._partial = await asyncio.to_thread(PhraseRecognizer, self._prefixes)
            recognizer = self._partial
        return await asyncio.to_thread(recognizer.recognize, pcm, sample_rate)


_AV_FORMATS: dict[str, tuple[str, str, int | None, dict[str, str]]] = {
    # name: (container, codec, fixed output rate, muxer options)
    # no ID3/Xing header: chunks of a streamed reply are concatenated by the client
    "mp3": ("mp3", "libmp3lame", None, {"id3v2_version": "0", "write_xing": "0"}),
    "opus": ("ogg", "libopus", 48_000, {}),
    "aac": ("adts", "aac", None, {}),
    "flac": ("flac", "flac", None, {}),
}
AUDIO_FORMATS = frozenset({"pcm", "wav", *_AV_FORMATS})


def encode_audio(pcm: bytes, sample_rate: int, fmt: str, *, bit_rate: int | None = None) -> bytes:
    """Encode mono s16le ``pcm`` as ``fmt`` (pcm, wav, mp3, opus in Ogg, aac in ADTS, flac)."""
    if fmt == "pcm":
        return pcm
    if fmt == "wav":
        buf = io.BytesIO()
        with wave.open(buf, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(pcm)
        return buf.getvalue()
    container, codec, fixed_rate, options = _AV_FORMATS[fmt]
    buf = io.BytesIO()
    with av.open(buf, "w", format=container, options=options) as out:
        stream = out.add_stream(codec, rate=fixed_rate or sample_rate, layout="mono")
        if not isinstance(stream, AudioStream):
            raise TypeError(f"{codec} is not an audio codec")
        if bit_rate:
            stream.bit_rate = bit_rate
        samples = np.frombuffer(pcm, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


async def encode_audio_async(
    pcm: bytes, sample_rate: int, fmt: str, *, bit_rate: int | None = None
) -> bytes:
    if fmt == "pcm" or not pcm:
        return pcm
    return await asyncio.to_thread(encode_audio, pcm, sample_rate, fmt, bit_rate=bit_rate)


class UndecodableAudioError(ValueError):
    """An upload that is no audio the fake can read (the provider answers 400)."""


def decode_upload(data: bytes) -> tuple[bytes, int]:
    """Mono s16le PCM and its rate from an uploaded audio file (WAV fast path, else PyAV)."""
    try:
        if data[:4] == b"RIFF":
            with wave.open(io.BytesIO(data)) as wav:
                rate, channels = wav.getframerate(), wav.getnchannels()
                width, frames = wav.getsampwidth(), wav.readframes(wav.getnframes())
            if width == 2:
                samples = np.frombuffer(frames, dtype=np.int16)
                if channels > 1:
                    samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
                return samples.tobytes(), rate
        with av.open(io.BytesIO(data), "r") as container:
            stream = container.streams.audio[0]
            rate = stream.rate
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            out = bytearray()
            for frame in container.decode(stream):
                for resampled in resampler.resample(frame):
                    out += resampled.to_ndarray().tobytes()
        return bytes(out), rate
    except (av.FFmpegError, wave.Error, EOFError, IndexError, ValueError) as exc:
        raise UndecodableAudioError(str(exc)) from exc


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def pcm_seconds(pcm: bytes, sample_rate: int) -> float:
    return len(pcm) / 2 / sample_rate


# --- endpointing of streamed audio ---------------------------------------------------------


@dataclass(frozen=True)
class SpeechStarted:
    at: float
    """Seconds of stream audio before the first loud window."""


@dataclass(frozen=True)
class Utterance:
    start: float
    end: float
    """Stream time of the first loud window and of the end of the last one."""
    pcm: bytes
    """From ``preroll`` before ``start`` to the end of the trailing silence."""


class Endpointer:
    """Cuts streamed PCM into utterances with an RMS energy gate, by audio time.

    Audio time rather than the wall clock: plugins may push audio faster than real time, and
    a provider endpoints on the audio it receives. espeak-ng speech over digital silence is
    what the fakes hear, so a gate is as good as a VAD here and costs nothing.
    """

    WINDOW_S = 0.01

    def __init__(
        self,
        sample_rate: int,
        *,
        threshold: float = 300.0,
        end_silence: float = 0.3,
        preroll: float = 0.3,
        max_utterance: float = 30.0,
    ) -> None:
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.end_silence = end_silence
        self.max_utterance = max_utterance
        self._window_bytes = round(sample_rate * self.WINDOW_S) * 2
        self._preroll_bytes = round(sample_rate * preroll) * 2
        self._pending = b""
        self._recent = b""
        self._current: bytearray | None = None
        self._samples = 0
        self._start = 0.0
        self._last_loud = 0.0

    @property
    def position(self) -> float:
        """Seconds of audio received so far."""
        return self._samples / self.sample_rate

    @property
    def speaking(self) -> bool:
        return self._current is not None

    @property
    def current(self) -> bytes:
        """The utterance in progress (for interim results)."""
        return bytes(self._current or b"")

    @property
    def speech_start(self) -> float:
        return self._start

    def push(self, pcm: bytes) -> list[SpeechStarted | Utterance]:
        events: list[SpeechStarted | Utterance] = []
        data = self._pending + pcm
        whole = len(data) - len(data) % self._window_bytes
        self._pending = data[whole:]
        for offset in range(0, whole, self._window_bytes):
            window = data[offset : offset + self._window_bytes]
            samples = np.frombuffer(window, dtype=np.int16).astype(np.float32)
            loud = float(np.sqrt(np.mean(samples * samples))) >= self.threshold
            now = self.position
            self._samples += len(window) // 2
            if self._current is None:
                if loud:
                    self._current = bytearray(self._recent)
                    self._current += window
                    self._recent = b""
                    self._start = now
                    self._last_loud = self.position
                    events.append(SpeechStarted(now))
                else:
                    self._recent = (self._recent + window)[-self._preroll_bytes :]
                continue
            self._current += window
            if loud:
                self._last_loud = self.position
            if (
                self.position - self._last_loud >= self.end_silence
                or self.position - self._start >= self.max_utterance
            ):
                utterance = self.flush()
                if utterance is not None:
                    events.append(utterance)
        return events

    def flush(self) -> Utterance | None:
        """End the utterance in progress now (finalize, commit, end of stream)."""
        if self._current is None:
            return None
        utterance = Utterance(self._start, self._last_loud, bytes(self._current))
        self._current = None
        return utterance


def spread_words(text: str, start: float, end: float) -> list[tuple[str, float, float]]:
    """Word timings spread evenly over an utterance: providers send them, the fakes guess."""
    words = text.split()
    if not words:
        return []
    step = max(end - start, 0.0) / len(words)
    return [(w, start + i * step, start + (i + 1) * step) for i, w in enumerate(words)]


# --- the server ----------------------------------------------------------------------------


class ProviderFake:
    """A provider's API on a loopback port; subclasses add routes and say where keys go.

    ``first_delay`` is waited before the first token/audio/transcript of an answer and
    ``chunk_delay`` between streamed pieces, so a benchmark sees a remote provider's
    pacing; both default to 0 (as fast as the machine allows).
    """

    name: ClassVar[str] = "provider"
    base_path: ClassVar[str] = ""
    """Path prefix of `base_url` (``/v1`` for OpenAI-style APIs)."""

    def __init__(
        self,
        *,
        phrases: Sequence[str] = (),
        refused_keys: Sequence[str] = (),
        port: int = 0,
        first_delay: float = 0.0,
        chunk_delay: float = 0.0,
        end_silence: float = 0.3,
    ) -> None:
        self.refused_keys = frozenset(refused_keys)
        self.first_delay = first_delay
        self.chunk_delay = chunk_delay
        self.end_silence = end_silence
        """Quiet (s) that ends an utterance in streamed audio; the endpointing a client
        asks for is honoured only above it (espeak pauses between words ~0.1 s)."""
        self.recognizer = Recognizer(phrases)
        self.requests: list[Recorded] = []
        self._failures: deque[int] = deque()
        self._port = port
        self._runner: web.AppRunner | None = None
        self._connections: set[web.WebSocketResponse] = set()

    # lifecycle

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError(f"{self.name} fake is not started")
        return self._port

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """What the plugin's ``base_url`` should be set to."""
        return f"{self.http_url}{self.base_path}"

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes([web.get(HEALTH_PATH, self._health), *self.routes()])
        # no access log: some providers accept keys in the query string
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, HOST, self._port)
        await site.start()
        self._runner = runner
        server = site._server
        if self._port == 0 and server is not None:
            self._port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        for ws in list(self._connections):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "provider": self.name})

    # what tests assert on

    @property
    def keys(self) -> list[str | None]:
        """Credentials received, one per request, in order (refused ones included)."""
        return [r.key for r in self.requests]

    def calls(self, path_contains: str = "") -> list[Recorded]:
        return [r for r in self.requests if path_contains in r.path and not r.refused]

    def counts(self) -> Counter[str]:
        return Counter(r.path for r in self.requests)

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` and the provider's error body."""
        self._failures.extend([status] * times)

    # for subclasses

    def key_of(self, request: web.Request) -> str | None:
        """The credential in ``request``, where this provider expects it."""
        raise NotImplementedError

    def error_response(self, status: int, message: str) -> web.Response:
        """The provider's error body for ``status``."""
        return web.json_response({"error": message}, status=status)

    def refusal(self, key: str | None) -> web.Response:
        return self.error_response(401, "invalid API key")

    def admit(
        self, request: web.Request, *, model: str = "", voice: str = ""
    ) -> tuple[Recorded, web.Response | None]:
        """Record ``request``; give the error response to send instead, if any."""
        key = self.key_of(request)
        refused = key is None or key in self.refused_keys
        record = Recorded(path=request.path, key=key, model=model, voice=voice, refused=refused)
        self.requests.append(record)
        if refused:
            return record, self.refusal(key)
        if self._failures:
            return record, self.error_response(self._failures.popleft(), "injected failure")
        return record, None

    @contextlib.asynccontextmanager
    async def websocket(self, request: web.Request) -> AsyncIterator[web.WebSocketResponse]:
        """Upgrade ``request``; the socket is closed on exit and by `stop`."""
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        self._connections.add(ws)
        try:
            yield ws
        finally:
            self._connections.discard(ws)
            if not ws.closed:
                await ws.close()

    async def pace(self, index: int) -> None:
        """Wait before streamed piece ``index``: ``first_delay`` then ``chunk_delay``."""
        delay = self.first_delay if index == 0 else self.chunk_delay
        if delay > 0:
            await asyncio.sleep(delay)


class ScriptedLlmFake(ProviderFake):
    """An LLM API fake that answers by scripted rules (`ReplyRules`) and keeps each
    request's JSON body in ``bodies`` (what the plugin really sent)."""

    def __init__(
        self,
        *,
        rules: ScriptedOptions | Sequence[tuple[str, str]] = DEFAULT_RULES,
        fallback: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rules = ReplyRules(rules_options(rules, fallback))
        self.bodies: list[dict[str, Any]] = []


def bearer(request: web.Request, scheme: str = "Bearer") -> str | None:
    header = request.headers.get("Authorization", "")
    prefix = f"{scheme} "
    if header[: len(prefix)].lower() == prefix.lower():
        return header[len(prefix) :].strip() or None
    return None


def mask_key(key: str) -> str:
    """How providers quote a wrong key back: enough to recognise it, not to use it."""
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


def request_id() -> str:
    return str(uuid.uuid4())


def now_s() -> int:
    return int(time.time())


def query_bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.lower() == "true"


def query_float(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


# --- running a fake as its own process -----------------------------------------------------


def cli_parser(description: str) -> argparse.ArgumentParser:
    """The options every fake takes on its command line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--phrases", nargs="*", default=[], help="recognition grammar")
    parser.add_argument("--phrases-file", type=Path, help="one phrase a line")
    parser.add_argument(
        "--refuse-key", action="append", default=[], help="answer this key with 401"
    )
    parser.add_argument("--first-delay", type=float, default=0.0, help="seconds")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds")
    parser.add_argument("--end-silence", type=float, default=0.3, help="seconds")
    return parser


def phrases_from(args: argparse.Namespace) -> list[str]:
    phrases: list[str] = list(args.phrases)
    if args.phrases_file is not None:
        text = args.phrases_file.read_text()
        phrases += [line.strip() for line in text.splitlines() if line.strip()]
    return phrases


def common_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "phrases": phrases_from(args),
        "refused_keys": args.refuse_key,
        "port": args.port,
        "first_delay": args.first_delay,
        "chunk_delay": args.chunk_delay,
        "end_silence": args.end_silence,
    }


def serve_forever(make: Callable[[], ProviderFake]) -> None:
    """Run a fake until SIGTERM/SIGINT; print `READY_LINE` and its base URL when it listens."""

    async def main() -> None:
        fake = make()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await fake.start()
        try:
            print(f"{READY_LINE} {fake.base_url}", flush=True)
            await stop.wait()
        finally:
            await fake.stop()

    asyncio.run(main())
    sys.exit(0)


def fake_process(
    module: str,
    *args: str,
    log_dir: Path,
    port: int | None = None,
    name: str | None = None,
) -> tuple[ManagedProcess, int]:
    """A fake as its own process (``python -m tests.fakes.<module>``), not yet started.

    Returns the process and its port; `ManagedProcess.wait_ready` polls `HEALTH_PATH`.
    """
    port = port or free_port()
    argv = [sys.executable, "-m", f"tests.fakes.{module}", "--port", str(port), *args]
    process = ManagedProcess(
        name or module,
        argv,
        log_dir=log_dir,
        cwd=Path(__file__).resolve().parents[2],
        ready=http_ready(f"http://{HOST}:{port}{HEALTH_PATH}"),
    )
    return process, port
