"""Audio -> one viseme per video frame, incrementally, with voice-activity gating and explicit
pause rules.

Pipeline per pushed audio chunk: the streaming log-mel front end, a recogniser (the bundle's
learned ``visemes`` graph, pocketsphinx phones (edge_runtime/visemes/sphinx.py), ``none`` or tokens
from a file), then the pause rules:

- a frame is speech when its energy is ``vad_margin_db`` above the noise floor (the quietest
  frame of the last ``floor_frames``; speech always has quieter frames within two seconds,
  steady noise has none) and above an absolute floor; breath and room noise fall below it
  and map to ``sil`` explicitly instead of to whatever the recogniser guesses;
- up to ``lead_frames`` frames before speech are decided by the recogniser too (state
  ``lead``): a word's quiet onset (a fricative, a stop's burst) already carries its first
  shape, and the look-ahead a frame waits for anyway holds the speech that follows;
- a gap of up to ``hold_frames`` keeps the recogniser's shape (a stop closure or a breath
  between words must not snap the mouth shut and open again);
- a longer gap relaxes to ``sil`` (state ``relax``) and after ``rest_frames`` the mouth is
  at rest (state ``rest``): it never keeps moving in silence.

A frame's viseme is decided once its look-ahead has arrived: the latency this stage adds is
the frame itself (40 ms) plus the recogniser's look-ahead.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE, MelConfig, StreamingLogMel
from edge_runtime.bundle import RecognizerSpec
from edge_runtime.visemes.vocabulary import SIL, VISEMES

MEL_PER_FRAME = 4
HISTORY_MEL = 256
"""Log-mel frames kept before the next undecided frame (2.56 s): more than any recogniser's
context, and bounded, so a stream that runs for weeks keeps constant memory and cost."""


@dataclass(frozen=True)
class PauseRules:
    """Voice-activity gating and pause handling."""

    vad_margin_db: float = 12.0
    """Speech is at least this far above the noise floor."""
    floor_frames: int = 50
    """The noise floor is the quietest frame of this many (2 s at 25 fps)."""
    vad_floor_db: float = -55.0
    """Frames quieter than this (dBFS) are never speech."""
    lead_frames: int = 2
    """Frames up to this many before speech are decided by the recogniser (a quiet onset);
    at most the recogniser's look-ahead counts, so it adds no latency."""
    hold_frames: int = 3
    """Gaps up to this many frames (120 ms at 25 fps) keep the recogniser's shape."""
    rest_frames: int = 10
    """After this many silent frames (400 ms) the mouth is at rest."""


@dataclass(frozen=True)
class VisemeEvent:
    frame: int
    time_s: float
    """Start of the frame in the audio stream."""
    token: int
    confidence: float
    state: str
    """speech, lead (a quiet onset just before speech), hold (short gap), relax (medium gap)
    or rest (long silence)."""

    @property
    def name(self) -> str:
        return VISEMES[self.token]

    def to_json(self) -> str:
        return json.dumps({"frame": self.frame, "t": round(self.time_s, 3), "token": self.token,
                           "name": self.name, "confidence": round(self.confidence, 3),
                           "state": self.state})


class Recognizer(Protocol):
    """Decides frames from log-mel features; a recogniser that needs the raw audio (the
    pocketsphinx one, edge_runtime/visemes/sphinx.py) also has ``feed(audio)``, called with every
    pushed chunk before any frame is decided."""

    lookahead_frames: int
    """Video frames of audio needed after a frame before it can be decided."""

    def decide(self, mel: np.ndarray, frame: int, mel_start: int = 0) -> tuple[int, float]:
        """mel: the recent log-mel frames [n, n_mels], mel[0] being frame ``mel_start`` of the
        stream (it reaches at least HISTORY_MEL frames back) -> (token, confidence) of video
        frame ``frame``."""
        ...


class LearnedRecognizer:
    """The bundle's ``visemes`` graph over a sliding log-mel window of the bundle's front end
    (``mel``, which the stream computes for it)."""

    def __init__(self, session, spec: RecognizerSpec, mel: MelConfig):
        self.session, self.spec, self.mel = session, spec, mel
        self.lookahead_frames = -(-spec.lookahead // MEL_PER_FRAME)
        self._silence = np.float32(np.log(mel.floor))  # what zero audio gives (as in training)
        self._window = np.full((1, spec.window, session.inputs[0].shape[-1]), self._silence,
                               np.float32)
        self._name = session.inputs[0].name

    def log_probs(self, mel: np.ndarray, frame: int, mel_start: int = 0) -> np.ndarray:
        """Log-probabilities [15] of video frame ``frame``'s viseme (arguments as decide)."""
        first = MEL_PER_FRAME * frame - self.spec.context
        lo, hi = max(first, mel_start), min(first + self.spec.window, mel_start + len(mel))
        window = self._window[0]
        window.fill(self._silence)
        window[lo - first:hi - first] = mel[lo - mel_start:hi - mel_start]
        logits = self.session.run({self._name: self._window})[0][0]
        shifted = logits - logits.max()
        return shifted - np.log(np.exp(shifted).sum())

    def decide(self, mel: np.ndarray, frame: int, mel_start: int = 0) -> tuple[int, float]:
        log_probs = self.log_probs(mel, frame, mel_start)
        token = int(log_probs.argmax())
        return token, float(np.exp(log_probs[token]))


class SilentRecognizer:
    """``none``: every frame is ``sil`` (the paper's audio-free setting)."""

    lookahead_frames = 0

    def decide(self, mel: np.ndarray, frame: int, mel_start: int = 0) -> tuple[int, float]:
        return SIL, 1.0


class FileRecognizer:
    """Precomputed tokens: a .npy of ids, or JSON lines with a ``token`` field (what
    ``--emit-visemes`` writes). Past the end of the file: ``sil``."""

    lookahead_frames = 0

    def __init__(self, path: str | Path):
        path = Path(path)
        try:
            if path.suffix == ".npy":
                tokens = np.load(path).astype(int).tolist()
            else:
                tokens = [int(json.loads(line)["token"]) for line in path.read_text().splitlines()
                          if line.strip()]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: cannot read viseme tokens ({exc})") from None
        bad = [t for t in tokens if not 0 <= t < len(VISEMES)]
        if bad:
            raise ValueError(f"{path}: token {bad[0]} is not a viseme id (0..{len(VISEMES) - 1})")
        self.tokens = tokens

    def decide(self, mel: np.ndarray, frame: int, mel_start: int = 0) -> tuple[int, float]:
        return (self.tokens[frame], 1.0) if frame < len(self.tokens) else (SIL, 1.0)


class VisemeStream:
    """push(audio) -> the VisemeEvents decided so far; finish() -> the rest."""

    def __init__(self, recognizer: Recognizer, fps: int = 25, rules: PauseRules = PauseRules()):
        mel = getattr(recognizer, "mel", None) or MelConfig()  # the learned one's own front end
        if SAMPLE_RATE % fps or (SAMPLE_RATE // fps) != MEL_PER_FRAME * mel.hop_length:
            raise ValueError(f"{fps} fps does not give {MEL_PER_FRAME} log-mel hops per frame")
        spec = getattr(recognizer, "spec", None)
        if spec is not None and spec.context > HISTORY_MEL:
            raise ValueError(f"recogniser context {spec.context} exceeds the {HISTORY_MEL} "
                             "log-mel frames a stream keeps")
        self.recognizer, self.fps, self.rules = recognizer, fps, rules
        self._lead = min(rules.lead_frames, recognizer.lookahead_frames)
        self._feed = getattr(recognizer, "feed", None)
        self.samples_per_frame = SAMPLE_RATE // fps
        self._front = StreamingLogMel(mel)
        self._mel = np.zeros((0, mel.n_mels), np.float32)
        self._mel_start = 0  # stream index of self._mel[0]
        self._energy: deque[float] = deque()  # dBFS of the frames from self._next on
        self._frames = 0  # whole frames of audio seen
        self._partial = np.zeros(0, np.float32)
        self._next = 0
        self._levels: deque[float] = deque(maxlen=rules.floor_frames)
        self._silent_run = 10**6
        self._finished = False

    @property
    def latency_s(self) -> float:
        """Audio a frame waits for before it is decided: itself plus the look-ahead."""
        return (1 + self.recognizer.lookahead_frames) / self.fps

    def push(self, audio: np.ndarray) -> list[VisemeEvent]:
        audio = np.asarray(audio, np.float32)
        if self._feed is not None:
            self._feed(audio)
        features = self._front.push(audio)
        if len(features):
            self._mel = np.concatenate([self._mel, features])
        self._partial = np.concatenate([self._partial, audio])
        whole = len(self._partial) // self.samples_per_frame
        if whole:
            frames = self._partial[: whole * self.samples_per_frame]
            rms = np.sqrt(np.mean(frames.reshape(whole, -1) ** 2, axis=1) + 1e-12)
            self._energy.extend((20 * np.log10(rms)).tolist())
            self._frames += whole
            self._partial = self._partial[whole * self.samples_per_frame:]
        events = list(self._decide_ready())
        self._trim()
        return events

    def _trim(self) -> None:
        """Forget log-mel frames older than HISTORY_MEL before the next frame (in steps of
        HISTORY_MEL, so the copy is rare)."""
        keep_from = MEL_PER_FRAME * self._next - HISTORY_MEL
        if keep_from - self._mel_start >= HISTORY_MEL:
            self._mel = self._mel[keep_from - self._mel_start:].copy()
            self._mel_start = keep_from

    def finish(self) -> list[VisemeEvent]:
        """Flush: pad with silence so the last frames get their look-ahead."""
        pad = (self.recognizer.lookahead_frames + 2) * self.samples_per_frame
        if len(self._partial):
            pad += self.samples_per_frame - len(self._partial)
        count = self._frames + (1 if len(self._partial) else 0)
        events = self.push(np.zeros(pad, np.float32))
        self._finished = True
        return [e for e in events if e.frame < count]

    def _decide_ready(self) -> Iterator[VisemeEvent]:
        while True:
            frame = self._next
            need_mel = MEL_PER_FRAME * (frame + 1 + self.recognizer.lookahead_frames)
            if frame >= self._frames or self._mel_start + len(self._mel) < need_mel:
                return
            yield self._event(frame, self._energy.popleft())
            self._next += 1

    def _event(self, frame: int, level: float) -> VisemeEvent:
        self._levels.append(level)
        threshold = max(min(self._levels) + self.rules.vad_margin_db, self.rules.vad_floor_db)
        time_s = frame / self.fps
        if level > threshold:
            token, confidence = self.recognizer.decide(self._mel, frame, self._mel_start)
            self._silent_run = 0
            return VisemeEvent(frame, time_s, token, confidence, "speech")
        if any(ahead > threshold for ahead in islice(self._energy, self._lead)):
            token, confidence = self.recognizer.decide(self._mel, frame, self._mel_start)
            return VisemeEvent(frame, time_s, token, confidence, "lead")
        self._silent_run += 1
        if self._silent_run <= self.rules.hold_frames:
            # a short dip (a stop closure, a breath between words): the recogniser was trained
            # on such contexts, so its shape holds; only longer silences close the mouth
            token, confidence = self.recognizer.decide(self._mel, frame, self._mel_start)
            return VisemeEvent(frame, time_s, token, confidence, "hold")
        state = "relax" if self._silent_run <= self.rules.rest_frames else "rest"
        return VisemeEvent(frame, time_s, SIL, 1.0, state)
