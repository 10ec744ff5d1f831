"""What a kill and a reload cost a recording, measured on the real edge-run (demo bundle, a
wav at real-time pace into the mp4 sink, the sd_notify socket bound here). Not collected by
pytest. Run it nice'd:

    nice -n 10 .venv/bin/python -m tests.faults.measure_recovery --kills 5

Kill: SIGKILL between 3 and 8 s after READY; the loss is the seconds since READY minus the
seconds of video a player decodes from the file the kill left. Reload: SIGHUP 3 s after
READY; the gap is the time from RELOADING=1 to the next READY=1 (no audio is taken in
between).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.faults.test_service_faults import (
    FACE,
    Notify,
    finish,
    hidden,
    start,
    tone,
    video_seconds,
    write_wav,
)


def kill_loss(folder: Path, wav: Path, after_s: float) -> float:
    notify = Notify(folder)
    out = folder / "out.mp4"
    process = start(folder, "--audio", str(wav), "--reference", str(FACE), "--sink",
                    str(out), notify=notify)
    try:
        notify.wait_for(b"READY=1")
        began = time.monotonic()
        time.sleep(after_s)
        process.send_signal(signal.SIGKILL)
        elapsed = time.monotonic() - began
    finally:
        finish(process)
    return elapsed - video_seconds(hidden(folder)[0])


def reload_gap(folder: Path, wav: Path) -> float:
    notify = Notify(folder)
    process = start(folder, "--audio", str(wav), "--reference", str(FACE), "--sink",
                    str(folder / "out.mp4"), notify=notify)
    try:
        notify.wait_for(b"READY=1")
        time.sleep(3)
        process.send_signal(signal.SIGHUP)
        notify.wait_for(b"RELOADING=1", 10)
        began = time.monotonic()
        notify.wait_for(b"READY=1")
        gap = time.monotonic() - began
        process.send_signal(signal.SIGTERM)
    finally:
        finish(process)
    return gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    losses, gaps = [], []
    with tempfile.TemporaryDirectory() as scratch:
        wav = write_wav(Path(scratch) / "long.wav", tone(30))
        for k in range(args.kills):
            folder = Path(scratch) / f"run{k}"
            folder.mkdir()
            losses.append(kill_loss(folder, wav, float(rng.uniform(3, 8))))
            folder = Path(scratch) / f"reload{k}"
            folder.mkdir()
            gaps.append(reload_gap(folder, wav))
    print(json.dumps({"kill_loss_s": {"mean": statistics.mean(losses), "max": max(losses),
                                      "all": losses},
                      "reload_gap_s": {"mean": statistics.mean(gaps), "max": max(gaps),
                                       "all": gaps}}, indent=2))


if __name__ == "__main__":
    main()
