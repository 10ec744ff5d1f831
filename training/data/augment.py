"""What a cheap microphone in a real room does to speech, simulated for recogniser training:
speed (and with it pitch), room reverberation, the microphone's band limits, background noise
(white, fan, mains hum, street, babble of other voices) at 0-30 dB SNR, and gain; and on the
features, another speaker's vocal-tract length (a warped mel filterbank) and SpecAugment's
masks on the log-mel window.

Every function takes and returns float32 audio [N] at 16 kHz and draws from the given
generator only, so an item is reproducible from its seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from edge_runtime.audio.features import SAMPLE_RATE, MelConfig, fft_frequencies, filterbank_at
from training.config import AudioAugmentConfig

NOISE_KINDS = ("white", "fan", "hum", "street", "babble")
VTLP_KNEE_HZ = 4800.0
"""Frequencies below the knee scale with the warp factor; above it the warp runs straight to
the Nyquist frequency, which stays in place (Jaitly and Hinton's VTLP)."""


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (shorter by 1/factor), to a resolution of 1/100."""
    up = 100
    down = int(round(factor * up))
    return resample_poly(audio, up, down).astype(np.float32)


def room_response(rng: np.random.Generator, rt60_s: float) -> np.ndarray:
    """A room impulse response [N]: the direct sound, a few early reflections and an
    exponentially decaying diffuse tail (60 dB down after ``rt60_s``)."""
    n = int(rt60_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    response = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    response[: int(0.003 * SAMPLE_RATE)] = 0.0  # the tail starts after the first reflections
    response *= rng.uniform(0.2, 0.6) / np.sqrt(np.sum(response ** 2) + 1e-12)
    for _ in range(3):
        response[int(rng.uniform(0.002, 0.02) * SAMPLE_RATE)] += rng.uniform(0.2, 0.5)
    response[0] = 1.0
    return response.astype(np.float32)


def reverberate(audio: np.ndarray, response: np.ndarray) -> np.ndarray:
    return fftconvolve(audio, response)[: len(audio)].astype(np.float32)


def band_limit(audio: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    sos = butter(2, [low_hz, high_hz], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, audio).astype(np.float32)


def _coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power ~ 1 / f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[1:] /= f[1:] ** (exponent / 2)
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def background(rng: np.random.Generator, kind: str, n: int,
               other_speech: Callable[[np.random.Generator, int], np.ndarray]) -> np.ndarray:
    """Background noise [n] of one kind, unit RMS; ``other_speech(rng, n)`` gives n samples of
    some other utterance (for babble)."""
    t = np.arange(n) / SAMPLE_RATE
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind == "fan":  # broadband rumble with the blade rate's tone
        noise = _coloured(rng, n, rng.uniform(1.0, 2.0)) \
            + 0.3 * np.sin(2 * np.pi * rng.uniform(80, 300) * t)
    elif kind == "hum":
        base = rng.choice([50.0, 60.0])
        noise = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3))
        noise = noise + 0.1 * rng.standard_normal(n)
    elif kind == "street":  # traffic rumble with passing swells and clatter
        noise = _coloured(rng, n, 1.5) * (1 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t))
        for _ in range(rng.poisson(2 * n / SAMPLE_RATE)):
            at = int(rng.integers(0, n))
            width = int(rng.uniform(0.01, 0.08) * SAMPLE_RATE)
            noise[at:at + width] += 3 * rng.standard_normal(len(noise[at:at + width]))
    elif kind == "babble":
        noise = sum(other_speech(rng, n) for _ in range(int(rng.integers(3, 7))))
    else:
        raise ValueError(f"unknown noise kind {kind!r} (one of {NOISE_KINDS})")
    noise = np.asarray(noise, np.float64)
    return (noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)).astype(np.float32)


def degrade(audio: np.ndarray, rng: np.random.Generator, config: AudioAugmentConfig,
            other_speech: Callable[[np.random.Generator, int], np.ndarray]) -> np.ndarray:
    """``audio`` (speed already applied) as a random room, microphone and background make it."""
    speech_power = float(np.mean(audio ** 2)) + 1e-10
    if rng.random() < config.reverb_probability:
        audio = reverberate(audio, room_response(rng, rng.uniform(*config.rt60_s)))
    if rng.random() < config.noise_probability:
        kind = str(rng.choice(NOISE_KINDS))
        snr = 10 ** (rng.uniform(*config.noise_snr_db) / 10)
        audio = audio + background(rng, kind, len(audio), other_speech) \
            * np.float32(np.sqrt(speech_power / snr))
    if rng.random() < config.band_probability:
        audio = band_limit(audio, rng.uniform(*config.low_cut_hz), rng.uniform(*config.high_cut_hz))
    audio = audio * np.float32(10 ** (rng.uniform(*config.gain_db) / 20))
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def mask_spectrum(mel: np.ndarray, rng: np.random.Generator, config: AudioAugmentConfig
                  ) -> np.ndarray:
    """SpecAugment: hide random bands and stretches of a log-mel window [T, n_mels] behind
    its mean value."""
    out = mel.copy()
    fill = float(mel.mean())
    for _ in range(config.freq_masks):
        width = int(rng.integers(0, config.freq_mask_width + 1))
        start = int(rng.integers(0, mel.shape[1] - width + 1))
        out[:, start:start + width] = fill
    for _ in range(config.time_masks):
        width = int(rng.integers(0, config.time_mask_width + 1))
        start = int(rng.integers(0, mel.shape[0] - width + 1))
        out[start:start + width] = fill
    return out


def vtlp_frequencies(freqs: np.ndarray, alpha: float, nyquist: float) -> np.ndarray:
    """Where a speaker whose formants lie ``alpha`` times higher puts each frequency [F]."""
    low = VTLP_KNEE_HZ * min(alpha, 1.0)
    knee = low / alpha
    above = nyquist - (nyquist - low) / (nyquist - knee) * (nyquist - freqs)
    return np.where(freqs <= knee, freqs * alpha, above)


def warped_filterbank(cfg: MelConfig, alpha: float) -> np.ndarray:
    """The mel filterbank [n_mels, n_fft/2 + 1] that hears audio as a speaker with formants
    ``alpha`` times higher would sound: each band reads the bins that the warp moves into it."""
    freqs = fft_frequencies(cfg)
    return filterbank_at(cfg, vtlp_frequencies(freqs, alpha, cfg.sample_rate / 2))
