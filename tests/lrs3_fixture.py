"""Writes a small tree in LRS3's exact layout from synthetic clips, for the LRS3 tests.

<root>/{trainval,test}/<talk>/<clip>.mp4 (H.264 + AAC, 224x224 face track, 25 fps) and
<clip>.txt with the LRS3 header and word table (times from espeak-ng's word events).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from training.data.manifest import Manifest
from training.data.media import read_frames, read_wav, write_mp4

TRACK_SIZE = 224


def lrs3_transcript(words: list[dict], with_times: bool = True) -> str:
    text = " ".join(w["label"].upper() for w in words)
    lines = [f"Text:  {text}", "Conf:  3", ""]
    if with_times:
        lines.append("WORD START END ASDSCORE")
        lines += [f"{w['label'].upper()} {w['start']:.2f} {w['end']:.2f} 5.2" for w in words]
    return "\n".join(lines) + "\n"


def write_lrs3_tree(manifest: Manifest, root: Path, without_times: set[str] = frozenset()) -> dict:
    """One LRS3 talk per synthetic speaker; test-split speakers go to test/, others trainval/.

    -> {lrs3 clip id: synthetic clip id}. Clips named in ``without_times`` get a transcript
    with no word table (as in LRS2 main), which forces pocketsphinx alignment.
    """
    mapping = {}
    for clip in manifest.clips:
        split_dir = "test" if clip.split == "test" else "trainval"
        talk = f"talk{clip.speaker}"
        name = f"{int(clip.id.rsplit('c', 1)[1]):05d}"
        folder = root / split_dir / talk
        folder.mkdir(parents=True, exist_ok=True)
        frames = read_frames(manifest.resolve(clip.frames))
        track = np.stack([cv2.resize(f, (TRACK_SIZE, TRACK_SIZE), interpolation=cv2.INTER_CUBIC)
                          for f in frames])
        audio, rate = read_wav(manifest.resolve(clip.audio))
        write_mp4(folder / f"{name}.mp4", track, clip.fps, audio, rate)
        alignment = json.loads(manifest.resolve(clip.alignment).read_text())
        (folder / f"{name}.txt").write_text(
            lrs3_transcript(alignment["words"], with_times=clip.id not in without_times))
        mapping[f"{split_dir}-{talk}-{name}"] = clip.id
    return mapping


def viseme_agreement(out: Path, source: Manifest, mapping: dict) -> dict[str, float]:
    """Frame agreement of preprocessed visemes with the generator's ground truth, per clip."""
    from training.data.manifest import read_manifest

    manifest = read_manifest(out)
    truth = {c.id: np.load(source.resolve(c.visemes)) for c in source.clips}
    scores = {}
    for clip in manifest.clips:
        got, want = np.load(manifest.resolve(clip.visemes)), truth[mapping[clip.id]]
        n = min(len(got), len(want))
        scores[clip.id] = float((got[:n] == want[:n]).mean())
    return scores


def main() -> None:
    """Measure LRS3 viseme recovery on the tiny synthetic set, with and without word times.

    python -m tests.lrs3_fixture  (from the repository root)
    """
    import tempfile

    from training.config import Lrs3Config, SynthConfig, load_config
    from training.data.lrs3 import preprocess
    from training.data.manifest import read_manifest
    from training.data.synth import generate

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        generate(load_config(Path("configs/data/synth-tiny.yaml"), SynthConfig), data)
        source = read_manifest(data)
        for align in ("auto", "always"):
            root, out = Path(tmp) / f"lrs3-{align}", Path(tmp) / f"out-{align}"
            mapping = write_lrs3_tree(source, root)
            preprocess(root, out, Lrs3Config(workers=2, align=align))
            scores = viseme_agreement(out, source, mapping)
            label = "word times" if align == "auto" else "pocketsphinx alignment"
            values = np.array(list(scores.values()))
            print(f"{label}: mean {values.mean():.3f}, min {values.min():.3f}, "
                  f"max {values.max():.3f} over {len(values)} clips")


if __name__ == "__main__":
    main()
