"""Log-mel features in numpy, batch and streaming (the one audio front end).

The sync expert and the viseme recogniser are trained on these features and the Pi computes
them live, so both sides use this module. Written with numpy rather than librosa/torchaudio:
those pull numba/LLVM or torch onto the Pi, while this is one rfft and one matrix product per
10 ms hop.

Frames are not centred: frame i covers samples [i * hop, i * hop + win). At 16 kHz with a
10 ms hop there are exactly 4 feature frames per 40 ms video frame (25 fps).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
"""The system's audio rate: manifests' wavs, the microphone stream, the front end."""


@dataclass(frozen=True)
class MelConfig:
    """Front-end parameters (stored in the bundle)."""

    sample_rate: int = SAMPLE_RATE
    """Input rate; other rates are resampled before this front end."""
    win_length: int = 400
    """Analysis window, samples (25 ms)."""
    hop_length: int = 160
    """Hop, samples (10 ms)."""
    n_fft: int = 512
    """FFT size (window zero-padded)."""
    n_mels: int = 80
    """Mel bands."""
    fmin: float = 55.0
    """Lowest band edge, Hz."""
    fmax: float = 7600.0
    """Highest band edge, Hz."""
    floor: float = 1e-5
    """Power floor before the log (silence maps to log(floor))."""


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10 ** (np.asarray(mel) / 2595.0) - 1.0)


def fft_frequencies(cfg: MelConfig) -> np.ndarray:
    """Centre frequency of each rfft bin, Hz -> [n_fft/2 + 1]."""
    return np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)


@functools.lru_cache(maxsize=8)
def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """Triangular filters on the HTK mel scale, area-normalised -> [n_mels, n_fft/2 + 1]."""
    return filterbank_at(cfg, fft_frequencies(cfg))


def filterbank_at(cfg: MelConfig, freqs: np.ndarray) -> np.ndarray:
    """mel_filterbank's triangles read at frequencies ``freqs`` [n_fft/2 + 1] instead of the
    bins' own (a warped frequency axis) -> [n_mels, n_fft/2 + 1]."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(cfg.fmin), _hz_to_mel(cfg.fmax), cfg.n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (centre - lower)
    falling = (upper - freqs[None]) / (upper - centre)
    bank = np.clip(np.minimum(rising, falling), 0, None)
    bank *= (2.0 / (upper - lower))  # equal area: loudness does not depend on band width
    return bank.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _window(cfg: MelConfig) -> np.ndarray:
    return np.hanning(cfg.win_length + 1)[:-1].astype(np.float32)


def log_mel(audio: np.ndarray, cfg: MelConfig = MelConfig(),
            bank: np.ndarray | None = None) -> np.ndarray:
    """audio: [N] float32 in [-1, 1] -> [1 + (N - win) // hop, n_mels] float32 (0 rows if N
    is shorter than one window). ``bank`` [n_mels, n_fft/2 + 1] replaces the mel filterbank
    (training's vocal-tract-length perturbation)."""
    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) < cfg.win_length:
        return np.zeros((0, cfg.n_mels), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(audio, cfg.win_length)[::cfg.hop_length]
    spectrum = np.fft.rfft(frames * _window(cfg), n=cfg.n_fft, axis=1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    bank = mel_filterbank(cfg) if bank is None else bank
    return np.log(np.maximum(power @ bank.T, cfg.floor)).astype(np.float32)


class StreamingLogMel:
    """Feed audio in chunks of any size; get exactly the frames ``log_mel`` would give for
    the concatenated stream, as soon as their window is complete."""

    def __init__(self, cfg: MelConfig = MelConfig()):
        self.cfg = cfg
        self._pending = np.zeros(0, np.float32)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """-> the newly completed frames [k, n_mels] (k may be 0)."""
        self._pending = np.concatenate([self._pending, np.asarray(chunk, np.float32)])
        features = log_mel(self._pending, self.cfg)
        self._pending = self._pending[len(features) * self.cfg.hop_length:]
        return features
