"""The numpy log-mel front end: streaming equals batch, bands where they should be."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.audio.features import MelConfig, StreamingLogMel, log_mel, mel_filterbank

CFG = MelConfig()


def test_four_feature_frames_per_video_frame():
    audio = np.zeros(16000, np.float32)
    assert log_mel(audio).shape == (1 + (16000 - 400) // 160, 80)
    assert 640 // CFG.hop_length == 4


def test_silence_is_the_floor_and_a_tone_lights_its_band():
    assert np.allclose(log_mel(np.zeros(4000, np.float32)), np.log(CFG.floor))
    t = np.arange(8000) / 16000
    bank = mel_filterbank(CFG)
    freqs = np.linspace(0, 8000, CFG.n_fft // 2 + 1)
    for hz in (300.0, 1000.0, 3000.0):
        mel = log_mel((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)).mean(0)
        peak_band = int(np.argmax(mel))
        assert bank[peak_band, np.argmin(np.abs(freqs - hz))] > 0  # the band covers the tone


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=900), min_size=1, max_size=25),
       st.integers(min_value=0, max_value=2**31 - 1))
def test_streaming_matches_batch_for_any_chunking(sizes, seed):
    audio = np.random.default_rng(seed).uniform(-0.5, 0.5, sum(sizes)).astype(np.float32)
    stream = StreamingLogMel(CFG)
    pieces, start = [], 0
    for size in sizes:
        pieces.append(stream.push(audio[start:start + size]))
        start += size
    streamed = np.concatenate(pieces) if pieces else np.zeros((0, CFG.n_mels), np.float32)
    batch = log_mel(audio, CFG)
    assert streamed.shape == batch.shape
    # same frames; BLAS may round differently for different row counts
    np.testing.assert_allclose(streamed, batch, rtol=1e-5, atol=1e-5)
