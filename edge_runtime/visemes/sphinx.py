"""Visemes from pocketsphinx phone recognition (``--visemes pocketsphinx``): for real human
speech when the bundle's learned recogniser was trained on synthetic voices.

pocketsphinx's wheel ships an English acoustic model and a phone language model; allphone
search over them gives ARPAbet phones with 10 ms boundaries, which
edge_runtime.visemes.vocabulary maps to visemes. Streaming: audio is decoded as it arrives;
a frame is decided from the current (partial) segmentation once ``lookahead_frames`` of
audio after it have been heard (the recent end of a partial result still changes; a little
further back it has settled). The decoder ends its utterance after a pause (and every
MAX_UTTERANCE_S at the latest), so its memory and search stay bounded in a service that
runs for weeks.

Cepstral mean normalisation: the acoustic model was trained with the mean of each utterance
removed (batch CMN), which a stream cannot know in advance. pocketsphinx's live CMN starts
from a guess (its default, 40,3,-1, is far from what speech gives) and moves only slowly, so
streaming used to lose about 6 points of frame accuracy on real speech against decoding the
same audio as one utterance. The stream starts from CMN_INIT (the mean that batch CMN finds
on other voices than the evaluation's) and re-estimates it from the current utterance after
every chunk.
"""

from __future__ import annotations

import os
from collections import deque

import numpy as np

from edge_runtime.visemes.vocabulary import SIL, arpabet_to_viseme

DEFAULT_LOOKAHEAD = 3
"""Video frames heard after a frame before it is decided (40 + 120 ms = 160 ms)."""
PHONE_FRAMES_PER_S = 100
"""pocketsphinx frames: 10 ms."""
PAUSE_S = 0.6
"""A pause this long (below PAUSE_DBFS) ends the decoder's utterance."""
PAUSE_DBFS = -50.0
MAX_UTTERANCE_S = 20.0
CMN_INIT = "53.34,3.34,-2.60,10.62,-11.61,2.59,-4.03,-6.41,-2.29,-1.16,2.71,-5.07,0.85"
"""Mean cepstrum (c0..c12) of batch CMN over 30 Festival utterances (kal and ked diphone
voices) and the 12 val clips of the synthetic demo set (docs/decisions.md)."""
KEEP_SEGMENTS = 256
"""Finished segments kept for frames decided late (a few seconds of speech)."""


class RecognizerUnavailable(ValueError):
    """The recogniser's package is not installed."""


class PocketsphinxRecognizer:
    """The Recognizer interface of edge_runtime.visemes.stream, fed raw audio via ``feed``."""

    def __init__(self, fps: int = 25, lookahead_frames: int = DEFAULT_LOOKAHEAD,
                 sample_rate: int = 16000):
        try:
            from pocketsphinx import Decoder, get_model_path
        except ImportError:
            raise RecognizerUnavailable("pocketsphinx is not installed (pip install "
                                        "pocketsphinx)") from None
        model = get_model_path()
        self._decoder = Decoder(hmm=f"{model}/en-us/en-us",
                                allphone=f"{model}/en-us/en-us-phone.lm.bin", lw=2.0,
                                beam=1e-20, pbeam=1e-20, cmninit=CMN_INIT, logfn=os.devnull)
        self.lookahead_frames = lookahead_frames
        self._phone_per_video = PHONE_FRAMES_PER_S // fps
        self._rate = sample_rate
        self._fed = 0  # samples decoded so far
        self._utterance_at = 0  # phone frame where the current utterance began
        self._quiet = 0  # samples of the current pause
        self._finished: deque[tuple[int, int, int]] = deque(maxlen=KEEP_SEGMENTS)
        self._partial: list[tuple[int, int, int]] | None = None
        self._decoder.start_utt()

    def feed(self, audio: np.ndarray) -> None:
        """16 kHz mono float32 audio, in order."""
        if not len(audio):
            return
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
        self._decoder.process_raw(pcm.tobytes(), False, False)
        self._decoder.get_cmn(True)  # re-estimate the cepstral mean from this utterance
        self._fed += len(audio)
        self._partial = None
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)) + 1e-12))
        self._quiet = self._quiet + len(audio) if 20 * np.log10(rms) < PAUSE_DBFS else 0
        utterance_s = (self._fed / self._rate) - self._utterance_at / PHONE_FRAMES_PER_S
        if self._quiet >= PAUSE_S * self._rate or utterance_s >= MAX_UTTERANCE_S:
            self._end_utterance()

    def _segments(self) -> list[tuple[int, int, int]]:
        """(start, end, viseme) of the current utterance, in stream phone frames (none for an
        utterance that has heard nothing yet, where the decoder has no segmentation at all)."""
        return [(self._utterance_at + s.start_frame, self._utterance_at + s.end_frame,
                 arpabet_to_viseme(s.word)) for s in self._decoder.seg() or ()]

    def _end_utterance(self) -> None:
        self._decoder.end_utt()
        self._finished.extend(self._segments())
        self._utterance_at = self._fed * PHONE_FRAMES_PER_S // self._rate
        self._quiet = 0
        self._partial = None
        self._decoder.start_utt()

    def finish(self) -> None:
        """End the utterance: the whole-utterance (offline) decode of what was fed."""
        self._end_utterance()

    def decide(self, mel: np.ndarray, frame: int, mel_start: int = 0) -> tuple[int, float]:
        """The viseme at the centre of video frame ``frame`` (pocketsphinx gives no
        calibrated confidence: 1.0 for a phone, as for ``file``)."""
        centre = frame * self._phone_per_video + self._phone_per_video // 2
        if centre >= self._utterance_at:
            if self._partial is None:
                self._partial = self._segments()
            segments = self._partial
        else:
            segments = self._finished
        for start, end, token in segments:
            if start <= centre <= end:
                return token, 1.0
        return SIL, 1.0
