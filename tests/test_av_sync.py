"""Audio and video stay in sync in the mp4 sink over a 5-minute input, with dropped frames
(the render loop drops frames when it falls behind; the sink must keep every frame at its
time). Frames carry their index as a binary code of big blocks that survives H.264."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from edge_runtime.output.sinks import Mp4Sink

FPS = 25
SECONDS = 300
BITS = 13  # 2^13 > 7500 frames


def _coded(index: int) -> np.ndarray:
    """uint8 [128, 128, 3]: bit b of index as a white or black 128x9 band."""
    frame = np.zeros((128, 128, 3), np.uint8)
    for b in range(BITS):
        if index >> b & 1:
            frame[b * 9 + 2:b * 9 + 8] = 255
    return frame


def _decode_index(frame: np.ndarray) -> int:
    bands = [frame[b * 9 + 3:b * 9 + 7, 8:120].mean() for b in range(BITS)]
    return sum(1 << b for b, level in enumerate(bands) if level > 128)


@pytest.mark.slow
def test_five_minutes_with_drops_stay_in_sync(tmp_path):
    rng = np.random.default_rng(0)
    total = SECONDS * FPS
    dropped = set(rng.choice(np.arange(1, total), size=total // 10, replace=False).tolist())
    dropped |= {0, 1, 2}  # the stream may also start behind
    path = tmp_path / "long.mp4"
    sink = Mp4Sink(path, FPS)
    written = [i for i in range(total) if i not in dropped]
    t = np.arange(SECONDS * 16000) / 16000
    sound = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    per_frame = 16000 // FPS
    for i in range(total):  # as the pipeline does: a frame's audio arrives before the frame
        sink.write_audio(sound[i * per_frame:(i + 1) * per_frame])
        if i not in dropped:
            sink.write(i, _coded(i))
    sink.close()

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        video_s = float(video.duration * video.time_base)
        rate = video.average_rate  # read while open: the stream's memory goes with the container
        shown = {}
        for frame in container.decode(video=0):
            slot = round(float(frame.pts * frame.time_base) * FPS)
            shown[slot] = _decode_index(frame.to_ndarray(format="rgb24"))
    with av.open(str(path)) as container:
        heard = [(frame.pts, frame.samples) for frame in container.decode(audio=0)]
    audio_s = sum(samples for _, samples in heard) / 16000
    assert heard[0][0] == 0  # the audio starts with the first frame
    # AAC pads the last of its 1024-sample frames
    assert abs(video_s - SECONDS) <= 1 / FPS and 0 <= audio_s - SECONDS <= 1024 / 16000
    assert sorted(shown) == list(range(total))  # one frame per slot, none missing
    # each slot shows its own frame, or after a drop the newest frame written before it
    newest = {}
    last = written[0]
    for i in range(total):
        last = i if i not in dropped else last
        newest[i] = last
    assert all(shown[i] == newest[i] for i in range(total))
    assert rate is not None and Fraction(rate) == FPS
