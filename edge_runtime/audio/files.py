"""Audio files for the runtime: 16-bit PCM wav (any rate from MIN_RATE to MAX_RATE, any
number of channels), delivered as 16 kHz mono float32 (the front end's rate). Raw PCM on stdin
is a live source: edge_runtime/audio/stdin.py.

The header is read here rather than by the standard library's ``wave``, which trusts it: a
rate of 0 divided by zero, a rate of 1 Hz asked the resampler for 16000 times the samples
(24 GiB), a data size beyond the file asked for a buffer of that size, and the block
alignment was not checked at all. Every field is checked against the others and against
the file's size before anything is allocated.

Resampling is band-limited (FFT based): the runtime must not depend on scipy, and linear
interpolation would alias the 4-8 kHz band the mel front end looks at.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE

log = logging.getLogger(__name__)

MIN_RATE = 8000
"""Lowest sample rate accepted (telephone speech); resampling to 16 kHz at most doubles the
samples."""
MAX_RATE = 384000
"""Highest sample rate accepted (the highest common audio interface rate)."""
MAX_CHANNELS = 32
PCM, EXTENSIBLE = 1, 0xFFFE
"""wav format tags: plain PCM, and WAVE_FORMAT_EXTENSIBLE (PCM when its sub-format is 1)."""


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


@dataclass(frozen=True)
class WavLayout:
    """Where a wav file's samples are and how they are laid out."""

    channels: int
    rate: int
    """Samples per second per channel."""
    offset: int
    """Byte offset of the first sample in the file."""
    frames: int
    """Sample frames (one sample per channel) the file really holds."""


def _chunks(f, size: int):
    """(id, start, declared size) of each RIFF chunk after the 12-byte header."""
    position = 12
    while position + 8 <= size:
        f.seek(position)
        kind, length = struct.unpack("<4sI", f.read(8))
        yield kind, position + 8, length
        position += 8 + length + (length & 1)  # chunks are padded to even lengths


def _check_format(fmt: bytes, path: Path) -> tuple[int, int]:
    """The fmt chunk -> (channels, rate); AudioError naming the first field out of range."""
    if len(fmt) < 16:
        raise AudioError(f"{path}: wav fmt chunk of {len(fmt)} bytes (16 expected)")
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag != PCM:
        raise AudioError(f"{path}: wav format {tag:#x} is not PCM (export 16-bit PCM)")
    if bits != 16:
        raise AudioError(f"{path}: expected 16-bit PCM, got {bits}-bit samples")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{path}: wav header says {channels} channels (1 to "
                         f"{MAX_CHANNELS} accepted)")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{path}: wav header says {rate} Hz ({MIN_RATE} to {MAX_RATE} Hz "
                         "accepted)")
    if block_align != 2 * channels:
        raise AudioError(f"{path}: wav block align {block_align} does not match {channels} "
                         f"channel(s) of 16-bit samples ({2 * channels})")
    return channels, rate


def read_wav_layout(path: Path) -> WavLayout:
    """The checked header of a 16-bit PCM wav. A data chunk that claims more than the file
    holds (a recording cut short) is read as far as the file goes, with a warning."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            raise AudioError(f"{path}: not a readable wav file (no RIFF/WAVE header)")
        fmt = None
        for kind, start, length in _chunks(f, size):
            if kind == b"fmt ":
                f.seek(start)
                fmt = _check_format(f.read(min(length, 40)), path)
            elif kind == b"data":
                if fmt is None:
                    raise AudioError(f"{path}: not a readable wav file (data before fmt)")
                held = min(length, size - start)
                if held < length:
                    log.warning("%s: the wav header claims %d bytes of samples, the file "
                                "holds %d: reading those", path, length, held)
                channels, rate = fmt
                return WavLayout(channels, rate, start, held // (2 * channels))
    raise AudioError(f"{path}: not a readable wav file (no "
                     f"{'data' if fmt else 'fmt'} chunk)")


def read_audio_file(path: str | Path) -> np.ndarray:
    """wav (16-bit PCM) -> 16 kHz mono float32 in [-1, 1]."""
    path = Path(path)
    try:
        layout = read_wav_layout(path)
        samples = np.fromfile(path, "<i2", count=layout.frames * layout.channels,
                              offset=layout.offset)
    except FileNotFoundError:
        raise AudioError(f"{path}: audio file not found") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read the audio file ({exc.strerror})") from None
    samples = samples.astype(np.float32) / 32768.0
    if layout.channels > 1:
        samples = samples.reshape(-1, layout.channels).mean(axis=1)
    return resample(samples, layout.rate)
