"""Speech with exact phone times from flite's voices (``tsd data flite``).

Debian's ``flite`` (2.2) ships three clustergen voices trained on CMU ARCTIC recordings of
real readers: awb (a Scottish man), rms (an American man) and slt (an American woman), at
16 kHz. ``flite -psdur`` prints each phone's end time (the CMU phone set, mapped through THE
viseme map like Festival's), so the labels are exact. Each utterance is spoken at a speed of
its own (``duration_stretch``); flite's pitch feature does not move these voices, so pitch
variety comes from the recogniser's augmentation. Sentences and the held-out rule are
training/data/ttsset.py's.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edge_runtime.visemes.vocabulary import festival_to_viseme
from training.data.alignment import Segment
from training.data.media import read_wav, resample
from training.data.ttsset import TtsUtterance, build_tts_set
from training.errors import UserError

VOICES = ("awb", "rms", "slt")
"""flite's built-in clustergen voices (``flite -lv``)."""
INSTALL = "apt-get install flite"
STRETCH = (0.85, 1.3)
"""Range of each utterance's duration_stretch (uniform; 1 = the voice's own speed)."""
BATCH = 20
"""Utterances between progress updates (flite runs one process per utterance)."""


def parse_phones(printed: str) -> list[Segment]:
    """``flite -psdur`` output ("pau:0.176 dh:0.284 ...": phone, end time) -> contiguous
    segments from 0."""
    phones, start = [], 0.0
    for token in printed.split():
        name, _, end = token.rpartition(":")
        if not name:
            raise UserError(f"flite printed an unexpected phone token {token!r}")
        phones.append(Segment(name, start, float(end), festival_to_viseme(name)))
        start = float(end)
    return phones


def speak(text: str, voice: str, stretch: float) -> TtsUtterance:
    """One utterance from one flite process."""
    if shutil.which("flite") is None:
        raise UserError(f"flite is not installed ({INSTALL})")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        done = subprocess.run(["flite", "-voice", voice, "-psdur", "--setf",
                               f"duration_stretch={stretch:.3f}", "-t", text, "-o", str(wav)],
                              capture_output=True, text=True, timeout=60)
        if done.returncode or not wav.is_file():
            reason = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
            raise UserError(f"flite voice {voice} failed: {reason[-1]}")
        audio = resample(*read_wav(wav))
    return TtsUtterance(audio, parse_phones(done.stdout))


def build_flite(out: Path, utterances: int, seed: int = 0, fps: int = 25,
                check: int = 20) -> dict:
    """OUT/speech.jsonl: ``utterances`` sentences per flite voice with exact labels, and
    OUT/alignment-check.json (training.data.ttsset.build_tts_set)."""
    rng = np.random.default_rng([seed, 31])

    def speak_batch(texts: list[str], voice: str) -> list[TtsUtterance]:
        return [speak(text, voice, float(rng.uniform(*STRETCH))) for text in texts]

    return build_tts_set(out, "flite", VOICES, speak_batch, utterances, seed, fps, check, BATCH)
