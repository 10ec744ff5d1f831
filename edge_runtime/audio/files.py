"""Audio input for the runtime: 16-bit PCM wav files (any rate, mono or stereo) and raw PCM
on stdin, delivered as 16 kHz mono float32 (the front end's rate).

Resampling is band-limited (FFT based): the runtime must not depend on scipy, and linear
interpolation would alias the 4-8 kHz band the mel front end looks at.
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE


class AudioError(ValueError):
    """Audio the runtime cannot use; the message names the file and the problem."""


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of a whole signal by zero-padding/truncating its spectrum."""
    if rate == target or len(audio) == 0:
        return audio.astype(np.float32)
    count = int(round(len(audio) * target / rate))
    spectrum = np.fft.rfft(audio.astype(np.float64))
    bins = count // 2 + 1
    out = np.zeros(bins, np.complex128)
    keep = min(bins, len(spectrum))
    out[:keep] = spectrum[:keep]
    return (np.fft.irfft(out, count) * (count / len(audio))).astype(np.float32)


def read_audio_file(path: str | Path) -> np.ndarray:
    """wav (16-bit PCM) -> 16 kHz mono float32 in [-1, 1]."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
            raw = f.readframes(f.getnframes())
    except FileNotFoundError:
        raise AudioError(f"{path}: audio file not found") from None
    except (wave.Error, EOFError, OSError) as exc:
        raise AudioError(f"{path}: not a readable wav file ({exc})") from None
    if width != 2:
        raise AudioError(f"{path}: expected 16-bit PCM, got {8 * width}-bit samples")
    samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples[: len(samples) // channels * channels]
        samples = samples.reshape(-1, channels).mean(axis=1)
    return resample(samples, rate)


def read_stdin_pcm(stream=None) -> np.ndarray:
    """Raw 16-bit little-endian mono PCM at 16 kHz from stdin (until end of input)."""
    data = (stream or sys.stdin.buffer).read()
    data = data[: len(data) // 2 * 2]
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
