"""The host CLI: help for every option, one-line errors, the synth -> check -> preview path."""

from __future__ import annotations

import subprocess
import sys

import cv2
import pytest

from training.cli import build_parser, main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", *args], capture_output=True,
                          text=True)


def test_every_option_has_help():
    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"{p.prog}: {action.option_strings or action.dest}"
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                stack.extend(action.choices.values())


@pytest.mark.parametrize("args", [["--help"], ["data", "--help"], ["data", "synth", "--help"],
                                  ["data", "lrs3", "--help"], ["data", "preview", "--help"]])
def test_help_exits_zero(args):
    result = run(*args)
    assert result.returncode == 0 and "usage: tsd" in result.stdout


def test_bad_config_is_one_line(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("identities: many\n")
    result = run("data", "synth", "--config", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"tsd: error: {bad}.identities: expected an integer, got 'many'"


def test_bad_flag_value_is_rejected(tmp_path):
    result = run("data", "synth", "--out", str(tmp_path), "--identities", "-3")
    assert result.returncode == 2 and "must be a positive integer" in result.stderr


def test_unknown_clip_in_preview(tiny_dataset, tmp_path):
    assert main(["data", "preview", "--data", str(tiny_dataset), "--out", str(tmp_path),
                 "--clip", "nope"]) == 2


def test_preview_writes_sheet_and_mp4_with_audio(tiny_dataset, tmp_path, capsys):
    import av

    assert main(["data", "preview", "--data", str(tiny_dataset), "--out", str(tmp_path),
                 "--max-clips", "2", "--frames", "6"]) == 0
    sheet = cv2.imread(str(tmp_path / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] == 6 * 128
    mp4s = sorted(tmp_path.glob("*.mp4"))
    assert len(mp4s) == 2
    with av.open(str(mp4s[0])) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].sample_rate == 16000
        duration = float(container.duration) / av.time_base
    assert 1.0 < duration < 10.0


def test_synth_cli_resumes(tmp_path, tiny_config):
    out = tmp_path / "d"
    args = ["data", "synth", "--out", str(out), "--identities", "3", "--clips-per-identity", "1",
            "--workers", "1", "--no-flow"]
    assert main(args) == 0
    first = (out / "clips" / "id0000_c000" / "audio.wav").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "clips" / "id0000_c000" / "audio.wav").stat().st_mtime_ns == first
    assert main(["data", "check", "--data", str(out)]) == 0
