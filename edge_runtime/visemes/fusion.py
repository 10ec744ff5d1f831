"""Visemes from the bundle's learned recogniser and pocketsphinx together (``--visemes
fused``).

The two err differently: pocketsphinx's acoustic model learnt from real recordings but sees
only phones and decides without calibrated confidence; the learned recogniser gives a
probability for every viseme but learnt from synthetic and diphone voices. Each frame's
viseme maximises the learned recogniser's log-probability plus ``weight`` for the viseme
pocketsphinx heard: with weight 0 the learned recogniser decides alone, with a large one
pocketsphinx does, and in between pocketsphinx is overruled where the learned recogniser is
sure. The weight is measured per recogniser on held-out speech (tsd bundle-visemes) and
stored in the bundle (``recognizer.pocketsphinx_weight``).
"""

from __future__ import annotations

import numpy as np

from edge_runtime.visemes.sphinx import PocketsphinxRecognizer
from edge_runtime.visemes.stream import LearnedRecognizer


def fuse(log_probs: np.ndarray, heard: int, weight: float) -> int:
    """The viseme maximising ``log_probs`` [15] plus ``weight`` for the one pocketsphinx
    heard."""
    score = log_probs.copy()
    score[heard] += weight
    return int(score.argmax())


class FusedRecognizer:
    """The Recognizer interface of edge_runtime.visemes.stream over both recognisers."""

    def __init__(self, learned: LearnedRecognizer, sphinx: PocketsphinxRecognizer,
                 weight: float):
        self.learned, self.sphinx, self.weight = learned, sphinx, weight
        self.spec, self.mel = learned.spec, learned.mel
        self.lookahead_frames = max(learned.lookahead_frames, sphinx.lookahead_frames)

    def feed(self, audio: np.ndarray) -> None:
        self.sphinx.feed(audio)

    def finish(self) -> None:
        self.sphinx.finish()

    def evidence(self, mel: np.ndarray, frame: int, mel_start: int = 0
                 ) -> tuple[np.ndarray, int]:
        """(the learned recogniser's log-probabilities [15], the viseme pocketsphinx heard)
        of frame ``frame`` (arguments as decide)."""
        return (self.learned.log_probs(mel, frame, mel_start),
                self.sphinx.decide(mel, frame, mel_start)[0])

    def decide(self, mel: np.ndarray, frame: int, mel_start: int = 0) -> tuple[int, float]:
        log_probs, heard = self.evidence(mel, frame, mel_start)
        token = fuse(log_probs, heard, self.weight)
        return token, float(np.exp(log_probs[token]))
