"""tsd data merge: one manifest over several datasets, nothing copied, splits kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from training.cli import main
from training.data.manifest import read_manifest


def renamed_copy(source: Path, out: Path, prefix: str) -> Path:
    """The tiny dataset again with other clip ids and speakers (a second, disjoint set)."""
    shutil.copytree(source, out)
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    for row in rows:
        row["id"], row["speaker"] = prefix + row["id"], prefix + row["speaker"]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_merged_set_points_into_its_sources(tiny_dataset, tmp_path, capsys):
    other = renamed_copy(tiny_dataset, tmp_path / "sets" / "other", "x-")
    out = tmp_path / "merged"
    assert main(["data", "merge", str(tiny_dataset), str(other), "--out", str(out)]) == 0
    assert "24 clips from 2 datasets" in capsys.readouterr().out
    merged = read_manifest(out)  # checks every file the rows name
    first, second = read_manifest(tiny_dataset), read_manifest(other)
    assert len(merged.clips) == len(first.clips) + len(second.clips)
    assert not any(p.is_dir() for p in out.iterdir())  # a manifest, no copied frames
    by_id = {c.id: c for c in merged.clips}
    for source in (first, second):
        for clip in source.clips:
            mine = by_id[clip.id]
            assert (mine.split, mine.speaker) == (clip.split, clip.speaker)
            assert not Path(mine.visemes).is_absolute()
            assert np.array_equal(np.load(merged.resolve(mine.visemes)),
                                  np.load(source.resolve(clip.visemes)))


def test_repeated_speaker_is_one_line_error(tiny_dataset, tmp_path, capsys):
    other = renamed_copy(tiny_dataset, tmp_path / "other", "")
    rows = [json.loads(line) for line in (other / "manifest.jsonl").read_text().splitlines()]
    for row in rows:
        row["id"] = "y-" + row["id"]
    (other / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["data", "merge", str(tiny_dataset), str(other), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and "is also in" in err and "speaker" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m" / "manifest.jsonl").exists()
