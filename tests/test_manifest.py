"""Manifest validation: every broken row is named with its line, clip and field."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.data.manifest import ManifestError, read_manifest
from training.data.media import write_wav


@pytest.fixture()
def dataset(tiny_dataset, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may break."""
    copy = tmp_path / "data"
    shutil.copytree(tiny_dataset, copy)
    return copy


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "manifest.jsonl").read_text().splitlines()]


def rewrite(path: Path, rows_: list[dict]) -> None:
    (path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows_) + "\n")


def break_row(path: Path, index: int, **changes) -> dict:
    data = rows(path)
    for key, value in changes.items():
        if value is None:
            data[index].pop(key)
        else:
            data[index][key] = value
    rewrite(path, data)
    return data[index]


def expect_error(path: Path, *fragments: str, **kwargs) -> str:
    with pytest.raises(ManifestError) as info:
        read_manifest(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_valid_dataset_reads(tiny_dataset):
    manifest = read_manifest(tiny_dataset, expected_fps=25)
    assert len(manifest.clips) == 12 and manifest.clips[0].size == 128


def test_missing_frames_file(dataset):
    row = rows(dataset)[2]
    (dataset / row["frames"] / "000003.png").unlink()
    expect_error(dataset, "manifest.jsonl:3", row["id"], "field 'frames'", "frames on disk")


def test_held_frames_missing_a_frame(dataset):
    index, row = next((i, r) for i, r in enumerate(rows(dataset)) if "held_frames" in r)
    (dataset / row["held_frames"] / "000004.png").unlink()
    expect_error(dataset, f"manifest.jsonl:{index + 1}", row["id"], "field 'held_frames'",
                 f"{row['frame_count'] - 1} frames on disk, "
                 f"frame_count says {row['frame_count']}")


def test_missing_audio(dataset):
    row = rows(dataset)[0]
    (dataset / row["audio"]).unlink()
    expect_error(dataset, "manifest.jsonl:1", "field 'audio'", "missing file")


def test_audio_length_mismatch(dataset):
    row = rows(dataset)[1]
    write_wav(dataset / row["audio"], np.zeros(16000, np.float32))
    expect_error(dataset, "manifest.jsonl:2", "field 'audio'", "1.000 s of audio", "frame_count")


def test_audio_wrong_rate(dataset):
    row = rows(dataset)[1]
    write_wav(dataset / row["audio"], np.zeros(row["frame_count"] * 880, np.float32), rate=22050)
    expect_error(dataset, "field 'audio'", "expected 16 kHz mono 16-bit, got 22050 Hz")


def test_viseme_length_mismatch(dataset):
    row = rows(dataset)[4]
    np.save(dataset / row["visemes"], np.zeros(row["frame_count"] - 3, np.int16))
    expect_error(dataset, "manifest.jsonl:5", "field 'visemes'", "does not match")


def test_viseme_ids_out_of_range(dataset):
    row = rows(dataset)[4]
    np.save(dataset / row["visemes"], np.full(row["frame_count"], 15, np.int16))
    expect_error(dataset, "field 'visemes'", "ids outside 0..14")


def test_frame_count_mismatch(dataset):
    row = rows(dataset)[0]
    break_row(dataset, 0, frame_count=row["frame_count"] + 5)
    expect_error(dataset, "manifest.jsonl:1", "field 'frames'")


def test_wrong_fps(dataset):
    break_row(dataset, 3, fps=30)
    expect_error(dataset, "manifest.jsonl:4", "field 'fps': expected 25, got 30", expected_fps=25)


@pytest.mark.parametrize("field", ["flow", "held_flow"])
def test_flow_shape_mismatch(dataset, field):
    row = rows(dataset)[0]
    np.save(dataset / row[field], np.zeros((2, 64, 64, 2), np.float16))
    expect_error(dataset, f"field {field!r}", "does not match")


def test_held_mouth_boxes_shape_mismatch(dataset):
    row = rows(dataset)[1]
    np.save(dataset / row["held_mouth_boxes"], np.zeros((row["frame_count"], 3), np.float32))
    expect_error(dataset, "manifest.jsonl:2", "field 'held_mouth_boxes'", "does not match")


@pytest.mark.parametrize("change, fragment", [
    ({"split": "training"}, "field 'split': must be one of"),
    ({"fps": "25"}, "field 'fps': expected int"),
    ({"frames": None}, "field 'frames': missing"),
    ({"colour": "red"}, "field 'colour': unknown field"),
    ({"frame_count": 0}, "field 'frame_count': must be positive"),
    ({"flow_stride": None}, "field 'flow_stride': required"),
    ({"texture": "painted"}, "field 'texture': must be one of"),
])
def test_bad_fields(dataset, change, fragment):
    break_row(dataset, 5, **change)
    expect_error(dataset, "manifest.jsonl:6", fragment)


def test_invalid_json_and_duplicates(dataset):
    text = (dataset / "manifest.jsonl").read_text().splitlines()
    (dataset / "manifest.jsonl").write_text("\n".join(text[:2] + ["{not json"] + text[2:]) + "\n")
    expect_error(dataset, "manifest.jsonl:3", "invalid JSON")
    (dataset / "manifest.jsonl").write_text("\n".join(text + [text[0]]) + "\n")
    expect_error(dataset, "manifest.jsonl:13", "duplicate clip id")


def test_cli_check_reports_one_line_and_exit_2(dataset):
    row = rows(dataset)[1]
    (dataset / row["visemes"]).unlink()
    result = subprocess.run([sys.executable, "-m", "training.cli", "data", "check", "--data",
                             str(dataset)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("tsd: error: ") and "field 'visemes'" in result.stderr
    assert "Traceback" not in result.stderr
