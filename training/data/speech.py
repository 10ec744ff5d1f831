"""Speech with exact phoneme timing from espeak-ng (the library shipped by ``espeakng-loader``).

espeak-ng keeps global state, so each process initialises it once; the synthetic generator
runs one engine per worker process. Phoneme events carry the sample position of each phoneme
onset, which gives phone and word boundaries to the sample.
"""

from __future__ import annotations

import _ctypes
import ctypes
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass

import espeakng_loader
import numpy as np

from edge_runtime.visemes.vocabulary import ESPEAK_STRESS_MARKS, ESPEAK_TO_VISEME, espeak_to_viseme
from training.data.alignment import Segment
from training.data.media import SAMPLE_RATE, resample

# espeak-ng API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 1
_POS_CHARACTER = 1
_PHONEMES_MNEMONICS, _PHONEMES_IPA = 0, 2
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 3, 4, 7

ENGLISH_VOICES = ("en-us", "en")
"""Base voices whose phoneme tables (en-us -> en -> base1) the viseme vocabulary covers."""

VOICE_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "Alex", "Andy",
    "Annie", "adam", "aunty", "belinda", "benjamin", "david", "edward", "grandma", "grandpa",
    "ian", "john", "linda", "michel", "norbert", "paul", "robert", "steph", "travis", "victor",
)
"""Human-sounding variants from espeak-ng-data/voices/!v (robots and whispers left out)."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Voice:
    """How one identity speaks."""

    base: str = "en-us"
    variant: str = "m1"
    rate_wpm: int = 165
    pitch: int = 50
    pitch_range: int = 50


@dataclass
class Utterance:
    audio: np.ndarray
    """[N] float32 at SAMPLE_RATE."""
    phones: list[Segment]
    """espeak-ng phoneme mnemonics (stress marks stripped), contiguous, covering the audio."""
    words: list[Segment]
    """Words of the text with their spoken span (pauses excluded)."""


class Espeak:
    """One espeak-ng engine. The library keeps synthesis state between utterances (and
    uses libc rand()), so ``synthesize`` below runs every utterance on a fresh engine."""

    _shared: Espeak | None = None

    def __init__(self, library_path: str | None = None):
        self._lib = ctypes.CDLL(library_path or espeakng_loader.get_library_path())
        self._libc = ctypes.CDLL(None)
        data = espeakng_loader.get_data_path().encode()
        self.rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data,
                                                _INIT_PHONEME_EVENTS)
        if self.rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self._callback = _CALLBACK(self._on_audio)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p),
                                                    ctypes.c_int, ctypes.c_int]
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []

    @classmethod
    def get(cls) -> Espeak:
        """The process's shared engine, for text -> phonemes (no synthesis state involved)."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def close(self) -> None:
        """Terminate and unload, so the next engine on the same library starts fresh."""
        self._lib.espeak_Terminate()
        _ctypes.dlclose(self._lib._handle)

    def _on_audio(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            name = bytes(ev.id.string).split(b"\0")[0].decode("latin-1") \
                if ev.type == _EVENT_PHONEME else ""
            self._events.append((ev.type, ev.sample, ev.text_position, ev.length, name))
            i += 1
        return 0

    def set_voice(self, voice: Voice) -> None:
        name = f"{voice.base}+{voice.variant}".encode()
        if self._lib.espeak_SetVoiceByName(name) != 0:
            raise ValueError(f"espeak-ng has no voice {name.decode()!r}")
        self._lib.espeak_SetParameter(_PARAM_RATE, voice.rate_wpm, 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)
        self._lib.espeak_SetParameter(_PARAM_RANGE, voice.pitch_range, 0)
        self._lib.espeak_SetParameter(_PARAM_WORDGAP, 0, 0)

    def synthesize(self, text: str, voice: Voice) -> Utterance:
        """Speak ``text``; returns 16 kHz audio with phone and word segments."""
        self.set_voice(voice)
        self._chunks, self._events = [], []
        # Voicing noise comes from espeak-ng's own generator and libc rand(): reseed both so
        # an utterance depends on (text, voice) only, not on what this process spoke before.
        self._lib.espeak_ng_SetRandSeed(ctypes.c_long(1))
        self._libc.srand(1)
        encoded = text.encode("utf-8")
        status = self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0,
                                        _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise RuntimeError(f"espeak-ng could not speak {text!r} (status {status})")
        raw = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        duration = len(raw) / self.rate
        phones = self._phone_segments(duration)
        words = self._word_segments(encoded, phones)
        return Utterance(resample(raw, self.rate, SAMPLE_RATE), phones, words)

    def _phone_segments(self, duration: float) -> list[Segment]:
        onsets = [(s / self.rate, name.lstrip(ESPEAK_STRESS_MARKS))
                  for t, s, _, _, name in self._events if t == _EVENT_PHONEME]
        segments = []
        if onsets and onsets[0][0] > 0:
            segments.append(Segment("_", 0.0, onsets[0][0]))
        for i, (start, name) in enumerate(onsets):
            end = onsets[i + 1][0] if i + 1 < len(onsets) else duration
            if end > start:
                segments.append(Segment(name, start, end, espeak_to_viseme(name)))
        return segments

    def _word_segments(self, encoded: bytes, phones: list[Segment]) -> list[Segment]:
        word_events = [(s / self.rate, pos, length)
                       for t, s, pos, length, _ in self._events if t == _EVENT_WORD]
        words = []
        for i, (start, pos, length) in enumerate(word_events):
            limit = word_events[i + 1][0] if i + 1 < len(word_events) else float("inf")
            spoken = [p for p in phones if start <= p.start < limit and not p.label.startswith("_")]
            if not spoken:
                continue
            word = encoded[pos - 1:pos - 1 + length].decode("utf-8", "replace")
            words.append(Segment(word.strip(".,;:!?\"'").lower(), spoken[0].start, spoken[-1].end))
        return words

    def phonemes(self, text: str, voice: Voice = Voice()) -> list[str]:
        """espeak-ng mnemonics for ``text`` (stress marks stripped), without synthesis."""
        out: list[str] = []
        for clause in self._clauses(text, voice, _PHONEMES_MNEMONICS):
            for token in clause.decode("latin-1").replace(" ", "|").split("|"):
                out.extend(split_mnemonics(token.strip().lstrip(ESPEAK_STRESS_MARKS)))
        return out

    def ipa_words(self, text: str, voice: Voice) -> list[list[str]]:
        """Each word of ``text`` as IPA phonemes in ``voice``'s language (``vocabulary.
        ipa_symbols`` splits them), without synthesis."""
        clauses = [c.decode("utf-8", "replace")
                   for c in self._clauses(text, voice, _PHONEMES_IPA)]
        return [[p for p in word.split("|") if p] for word in " ".join(clauses).split()]

    def _clauses(self, text: str, voice: Voice, mode: int) -> list[bytes]:
        """espeak-ng's phonemes of ``text``, one string per clause, phonemes separated by
        ``|`` and words by spaces (``mode``: mnemonics or IPA)."""
        self.set_voice(voice)
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        clauses = []
        while pointer.value:
            result = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8,
                                                     mode | ord("|") << 8)
            clauses.append(result or b"")
        return clauses


def split_mnemonics(token: str) -> list[str]:
    """Split a run of mnemonics that espeak-ng left unseparated (e.g. spelled letters:
    ``eIz``) by greedy longest match against the known English phonemes."""
    out = []
    while token:
        token = token.lstrip(ESPEAK_STRESS_MARKS)
        for length in range(min(4, len(token)), 0, -1):
            head = token[:length]
            if head in ESPEAK_TO_VISEME or head.startswith("_") or length == 1:
                out.append(head)
                token = token[length:]
                break
    return [t for t in out if t]



@functools.lru_cache(maxsize=1)
def _private_library() -> str:
    """A copy of libespeak-ng under another path: dlopen of a distinct path gives an instance
    that dlclose really unloads, unlike the shared engine's library which stays loaded. One
    copy per user and library version, shared by all processes (a copy per process leaked a
    folder whenever a worker was killed before its atexit handlers ran)."""
    source = espeakng_loader.get_library_path()
    stat = os.stat(source)
    folder = os.path.join(tempfile.gettempdir(), f"temposync-espeak-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, f"libespeak-ng-{stat.st_size}-{int(stat.st_mtime)}.so")
    if not os.path.exists(path):
        partial = f"{path}.{os.getpid()}.partial"
        shutil.copyfile(source, partial)
        os.replace(partial, path)
    return path


def synthesize(text: str, voice: Voice) -> Utterance:
    """Speak ``text`` on a fresh engine: the result depends on (text, voice) only, so clips
    are reproducible whichever worker process renders them and in whatever order."""
    engine = Espeak(_private_library())
    try:
        return engine.synthesize(text, voice)
    finally:
        engine.close()
