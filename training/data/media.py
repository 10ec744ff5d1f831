"""Audio and video files: 16 kHz wav, PNG frame folders, mp4 with an audio track (PyAV)."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.signal import resample_poly

from edge_runtime.audio.features import SAMPLE_RATE
from edge_runtime.output.sinks import Mp4Writer
from training.atomic import atomic_path
from training.errors import UserError

# Every wav of a manifest is mono 16-bit PCM at the system's audio rate.


class MediaError(UserError):
    """A media file that cannot be read as expected."""


def to_int16(audio: np.ndarray) -> np.ndarray:
    """float [-1, 1] or int16 samples -> int16."""
    if audio.dtype == np.int16:
        return audio
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def resample(audio: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of float samples [N] (scipy; exact rational ratio)."""
    if rate_in == rate_out:
        return audio.astype(np.float32)
    g = np.gcd(rate_in, rate_out)
    return resample_poly(audio.astype(np.float32), rate_out // g, rate_in // g).astype(np.float32)


def write_wav(path: str | Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write mono samples (float in [-1, 1] or int16) as 16-bit PCM, atomically."""
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_int16(np.asarray(audio)).tobytes())


@dataclass(frozen=True)
class WavInfo:
    rate: int
    channels: int
    sample_width: int
    samples: int


def wav_info(path: str | Path) -> WavInfo:
    try:
        with wave.open(str(path), "rb") as w:
            return WavInfo(w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise MediaError(f"{path}: not a PCM wav file ({exc})") from None


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """-> (float32 mono samples in [-1, 1], rate). Stereo is downmixed."""
    info = wav_info(path)
    if info.sample_width != 2:
        raise MediaError(f"{path}: expected 16-bit PCM, got {8 * info.sample_width}-bit")
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(info.samples), dtype=np.int16)
    audio = data.reshape(-1, info.channels).mean(axis=1) / 32768.0
    return audio.astype(np.float32), info.rate


def frame_name(index: int) -> str:
    return f"{index:06d}.png"


def write_frames(directory: Path, frames_rgb: np.ndarray) -> None:
    """frames_rgb: [T, H, W, 3] uint8 -> directory of PNGs 000000.png... (lossless)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames_rgb):
        cv2.imwrite(str(directory / frame_name(i)), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def count_frames(directory: Path) -> int:
    return sum(1 for p in directory.iterdir() if p.suffix == ".png")


def read_frame(directory: Path, index: int) -> np.ndarray:
    """-> [H, W, 3] uint8 RGB."""
    path = directory / frame_name(index)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(f"{path}: missing or unreadable frame")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frames(directory: Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """-> [count, H, W, 3] uint8 RGB frames start..start+count-1."""
    if count is None:
        count = count_frames(directory) - start
    return np.stack([read_frame(directory, start + i) for i in range(count)])


def write_mp4(path: str | Path, frames_rgb: np.ndarray, fps: int,
              audio: np.ndarray | None = None, rate: int = SAMPLE_RATE, crf: int = 18) -> None:
    """H.264 video (+ AAC audio) mp4, atomically. frames_rgb: [T, H, W, 3] uint8 (even H, W).
    The runtime's writer (edge_runtime.output.sinks), so host previews and device output match."""
    writer = Mp4Writer(path, fps, crf, audio_rate=None if audio is None else rate)
    try:
        for frame in frames_rgb:
            writer.add(frame)
        writer.close(None if audio is None else np.asarray(audio, np.float32))
    except BaseException:
        writer.abort()
        raise


@dataclass
class Video:
    frames: np.ndarray
    """[T, H, W, 3] uint8 RGB."""
    fps: float
    audio: np.ndarray | None
    """[N] float32 mono at SAMPLE_RATE, or None when the file has no audio track."""


def read_mp4(path: str | Path) -> Video:
    """Decode all frames and the audio track (downmixed, resampled to 16 kHz)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            vstream = container.streams.video[0]
            fps = float(vstream.average_rate or vstream.base_rate or 25)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(vstream)]
        audio = read_audio(path)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: cannot decode ({exc})") from None
    if not frames:
        raise MediaError(f"{path}: no video frames")
    return Video(np.stack(frames), fps, audio)


def read_audio(path: str | Path) -> np.ndarray | None:
    """A media file's first audio track -> [N] float32 mono at SAMPLE_RATE (downmixed and
    resampled by PyAV), or None when it has no audio."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        return None
    return (np.concatenate(chunks).astype(np.float32) / 32768.0)

