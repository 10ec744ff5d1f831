"""What the C2PA manifest costs an mp4 recording (edge_runtime.marking.credentials): the time
the mp4 sink's close spends signing, the bytes it adds, and the once-per-recording set-up at
open (importing c2pa, reading the device key). Recordings of the example photo with a moving
noise patch (so that every frame is encoded), 25 fps, with 16 kHz audio, written by the mp4
sink itself; the key lives in a temporary folder.

    .venv/bin/python -m bench.c2pa_cost [--seconds 4 60 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.marking import credentials
from edge_runtime.marking.marker import Marker
from edge_runtime.output.sinks import Mp4Sink

FPS = 25
PHOTO = Path(__file__).resolve().parents[1] / "examples" / "face.png"


def record(path: Path, seconds: float, keys: Path, frame: np.ndarray) -> tuple[float, float]:
    """-> (ms to open the sink, ms to close it)."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    sink = Mp4Sink(path, FPS, marker=Marker(Marker.unknown().provenance, c2pa_keys=str(keys)))
    opened = time.perf_counter() - started
    for index in range(int(seconds * FPS)):
        moving = frame.copy()
        y = (7 * index) % (frame.shape[0] - 64)
        moving[y:y + 64, :64] = rng.integers(0, 255, (64, 64, 3), np.uint8)
        sink.write(index, moving)
    sink.write_audio(np.zeros(int(seconds * 16000), np.float32))
    started = time.perf_counter()
    sink.close()
    return 1e3 * opened, 1e3 * (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[4, 60])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not credentials.available():
        raise SystemExit("c2pa_cost: the c2pa extra is not installed")
    frame = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        started = time.perf_counter()
        credentials.device_key(folder / "keys")
        made = 1e3 * (time.perf_counter() - started)
        first = record(folder / "warm.mp4", 1, folder / "keys", frame)[0]
        print(f"device key made in {made:.1f} ms (once per device); the first sink of a "
              f"process opened in {first:.1f} ms (imports c2pa)")
        print(f"{'seconds':>8} {'MB':>7} {'open ms':>8} {'close ms':>9} "
              f"{'close ms without':>17} {'bytes added':>12}")
        for seconds in args.seconds:
            with_c2pa, without, opened = [], [], []
            for _ in range(args.repeat):
                o, c = record(folder / "signed.mp4", seconds, folder / "keys", frame)
                opened.append(o)
                with_c2pa.append(c)
                available, credentials.available = credentials.available, lambda: False
                try:
                    without.append(record(folder / "plain.mp4", seconds, folder / "keys",
                                          frame)[1])
                finally:
                    credentials.available = available
            signed = (folder / "signed.mp4").stat().st_size
            plain = (folder / "plain.mp4").stat().st_size
            print(f"{seconds:8g} {signed / 1e6:7.2f} {statistics.median(opened):8.1f} "
                  f"{statistics.median(with_c2pa):9.1f} {statistics.median(without):17.1f} "
                  f"{signed - plain:12d}")


if __name__ == "__main__":
    main()
