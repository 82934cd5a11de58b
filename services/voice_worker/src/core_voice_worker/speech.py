"""Offline speech: espeak-ng synthesis and pocketsphinx recognition.

Used by the keyless `local` STT/TTS providers and by the synthetic caller, so both sides
of a test call share one implementation. Audio is mono signed 16-bit PCM.

    >>> pcm = synthesize("hello there", sample_rate=16000)
    >>> PhraseRecognizer(["hello there", "good bye"]).recognize(pcm, 16000)
    'hello there'
"""

import re
import shutil
import subprocess
import threading
from collections.abc import Sequence
from functools import cache

import numpy as np
from pocketsphinx import Config, Decoder, get_model_path

from core_voice_worker.errors import SpeechError

RECOGNIZER_RATE = 16_000
_WORD_RE = re.compile(r"[a-z']+")


def normalize(text: str) -> str:
    """Lower-case words only: the form recognition results and grammars use."""
    return " ".join(_WORD_RE.findall(text.lower()))


@cache
def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SpeechError("espeak-ng is not installed (make bootstrap installs it)")
    return path


def synthesize(
    text: str,
    *,
    voice: str = "en-us",
    speed_wpm: int = 160,
    pitch: int = 50,
    sample_rate: int = RECOGNIZER_RATE,
) -> bytes:
    """Speak ``text`` with espeak-ng; return PCM at ``sample_rate``."""
    proc = subprocess.run(
        [
            espeak_binary(),
            "-v",
            voice,
            "-s",
            str(speed_wpm),
            "-p",
            str(pitch),
            "--stdout",
            "--",
            text,
        ],
        capture_output=True,
        check=False,
        timeout=30,
    )
    if proc.returncode != 0 or len(proc.stdout) < 44:
        raise SpeechError(f"espeak-ng failed with exit code {proc.returncode}")
    return resample(_wav_pcm(proc.stdout), _wav_rate(proc.stdout), sample_rate)


def _wav_rate(wav: bytes) -> int:
    return int.from_bytes(wav[24:28], "little")


def _wav_pcm(wav: bytes) -> bytes:
    # espeak-ng writes a streaming WAV whose data size field is bogus; find "data" and
    # take everything after it.
    idx = wav.find(b"data", 12)
    if idx < 0:
        raise SpeechError("espeak-ng produced no WAV data chunk")
    pcm = wav[idx + 8 :]
    return pcm[: len(pcm) - len(pcm) % 2]


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Linear resampling: good enough for speech at telephone-ish rates."""
    if src_rate == dst_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    n_out = round(len(samples) * dst_rate / src_rate)
    x_out = np.linspace(0, len(samples) - 1, n_out, dtype=np.float32)
    out = np.interp(x_out, np.arange(len(samples), dtype=np.float32), samples)
    return np.clip(out, -32768, 32767).astype(np.int16).tobytes()


@cache
def _model_dir() -> str:
    return f"{get_model_path()}/en-us"


class PhraseRecognizer:
    """Pocketsphinx, constrained to ``phrases`` when given (free-form otherwise).

    Words missing from the pronunciation dictionary are dropped from the grammar; a
    phrase left with no words is skipped. Not thread-safe per instance: a lock guards
    the decoder so one instance can serve sequential turns from an executor.
    """

    def __init__(self, phrases: Sequence[str] = ()) -> None:
        config = Config(
            hmm=f"{_model_dir()}/en-us",
            dict=f"{_model_dir()}/cmudict-en-us.dict",
            lm=None if phrases else f"{_model_dir()}/en-us.lm.bin",
            samprate=RECOGNIZER_RATE,
            # espeak-ng audio has runs of exact digital zeros; they skew the batch CMN
            # and the grammar search then stops short ("i would like" for "... a
            # table"). Dither (fixed seed, deterministic) keeps those frames finite.
            dither=True,
            loglevel="FATAL",
        )
        self._decoder = Decoder(config)
        self._lock = threading.Lock()
        self.phrases = [p for p in (self._known(normalize(p)) for p in phrases) if p]
        if phrases:
            if not self.phrases:
                raise SpeechError("none of the grammar phrases has a known word")
            alternatives = " | ".join(sorted(set(self.phrases)))
            self._decoder.add_jsgf_string(
                "phrases", f"#JSGF V1.0;\ngrammar phrases;\npublic <phrase> = {alternatives} ;\n"
            )
            self._decoder.activate_search("phrases")

    def _known(self, phrase: str) -> str:
        return " ".join(w for w in phrase.split() if self._decoder.lookup_word(w) is not None)

    def recognize(self, pcm: bytes, sample_rate: int) -> str:
        """Return the normalized words heard in ``pcm`` ("" for none)."""
        audio = resample(pcm, sample_rate, RECOGNIZER_RATE)
        with self._lock:
            self._decoder.start_utt()
            self._decoder.process_raw(audio, full_utt=True)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
        return normalize(hyp.hypstr) if hyp is not None else ""
