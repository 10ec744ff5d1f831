"""Soak of the microphone path into the mp4 sink: edge-run's own main() for MINUTES minutes
with the microphone faked at the sounddevice layer (sounddevice.InputStream replaced by a
stream that plays a wav in a loop at real-time pace from its own thread, as PortAudio calls
the callback), resident memory sampled every SAMPLE_S.

Not collected by pytest (the name does not start with test_). Run it nice'd:

    nice -n 10 .venv/bin/python -m tests.faults.soak_mic --minutes 30 --out runs/soak

It prints and writes OUT/soak.json: resident memory after the warm-up (first, min, max,
last), the frames the pipeline rendered and dropped, microphone overruns, and the frames
lost: the seconds of audio captured times the bundle's fps, minus the video frames in the
recording (dropped frames are repeats in the file and are not lost).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import types
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[2]
SAMPLE_S = 10.0
WARM_UP_S = 60.0


class LoopingInputStream:
    """sounddevice.InputStream's interface; delivers ``signal`` in ``blocksize`` callbacks on
    the wall clock's schedule, looping."""

    signal: np.ndarray = np.zeros(1, np.float32)
    delivered = 0

    def __init__(self, callback, blocksize, **_):
        self.callback, self.blocksize = callback, blocksize
        self.active = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.active = True
        self._thread.start()

    def _run(self) -> None:
        began, n = time.monotonic(), 0
        while self.active:
            start = (n * self.blocksize) % (len(self.signal) - self.blocksize)
            block = self.signal[start:start + self.blocksize, None]
            self.callback(block, self.blocksize, None, None)
            LoopingInputStream.delivered += self.blocksize
            n += 1
            time.sleep(max(0.0, began + n * self.blocksize / 16000 - time.monotonic()))

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active = False


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmRSS in /proc/self/status")


def sample_memory(samples: list[tuple[float, float]], stop: threading.Event) -> None:
    began = time.monotonic()
    while not stop.wait(SAMPLE_S):
        samples.append((time.monotonic() - began, rss_mb()))


def video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "soak")
    parser.add_argument("--wav", default=str(REPO / "examples" / "speech.wav"))
    args = parser.parse_args()

    from edge_runtime.audio.files import read_audio_file
    from edge_runtime.cli import main as edge_run

    LoopingInputStream.signal = read_audio_file(args.wav)
    # the fake device, the only stand-in: a sounddevice module whose InputStream is the loop
    # (also where PortAudio, which sounddevice needs, is not installed)
    fake = types.ModuleType("sounddevice")
    fake.InputStream = LoopingInputStream
    sys.modules["sounddevice"] = fake
    args.out.mkdir(parents=True, exist_ok=True)
    recording, stats = args.out / "soak.mp4", args.out / "stats.json"
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    threading.Thread(target=sample_memory, args=(samples, stop), daemon=True).start()
    code = edge_run(["--bundle", str(REPO / "bundles" / "demo"), "--audio", "mic",
                     "--duration", str(60 * args.minutes), "--sink", str(recording),
                     "--reference", str(REPO / "examples" / "face.png"),
                     "--stats", str(stats), "--threads", "1"])
    stop.set()
    summary = json.loads(stats.read_text())
    warm = [mb for t, mb in samples if t >= WARM_UP_S]
    captured_s = LoopingInputStream.delivered / 16000
    in_file = video_frames(recording)
    result = {
        "exit_code": code, "minutes": args.minutes, "captured_s": captured_s,
        "frames_rendered": summary["frames"], "frames_dropped": summary["dropped"],
        "frames_in_file": in_file, "frames_lost": round(captured_s * 25) - in_file,
        "rss_after_warm_up_mb": {"first": warm[0], "min": min(warm), "max": max(warm),
                                 "last": warm[-1]} if warm else None,
        "rss_samples": samples,
    }
    (args.out / "soak.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples"}, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
