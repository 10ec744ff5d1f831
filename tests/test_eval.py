"""tsd eval: metric definitions, the lip reader, and a full report on the tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.eval import metrics
from training.models.lipread import crop_windows
from training.tasks.lipread import jitter_boxes, viseme_accuracy, viseme_recalls
from training.trainer import read_metrics


def clip(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_temporal_metrics_are_zero_for_a_still_clip_and_measure_change():
    still = clip(1).expand(6, -1, -1, -1)
    assert metrics.temporal_l1(still) == 0
    assert metrics.flicker_std(still) == pytest.approx(0, abs=1e-7)
    # brightness alternating by 0.2 in [-1, 1] units = 0.1 in [0, 1] units
    blink = still.clone()
    blink[1::2] += 0.2
    assert metrics.temporal_l1(blink) == pytest.approx(0.1, rel=1e-5)
    assert metrics.flicker_std(blink) == pytest.approx(
        float(torch.tensor([0, 0.1] * 3).std()), rel=1e-4)


def test_temporal_l1_outside_the_mouth_counts_only_change_outside_the_mouth_boxes():
    still = clip(1).expand(6, -1, -1, -1).clone()
    boxes = torch.tensor([[8.0, 16.0, 24.0, 28.0]]).repeat(6, 1)
    talking = still.clone()
    talking[1::2, :, 16:28, 8:24] += 0.4  # the mouth opens and closes
    assert metrics.temporal_l1(talking) > 0
    assert metrics.temporal_l1_outside_mouth(talking, boxes) == 0
    shimmer = talking.clone()
    shimmer[1::2, :, :4] += 0.2  # and the forehead changes with it: 4 of 32 rows
    outside = metrics.temporal_l1_outside_mouth(shimmer, boxes)
    assert outside == pytest.approx(0.1 * 4 / 32, rel=1e-4)
    assert outside < metrics.temporal_l1(shimmer)


def test_warp_error_is_zero_when_the_flow_explains_the_motion():
    base = torch.zeros(1, 3, 32, 32)
    base[..., 10:20, 8:16] = 1.0
    moved = torch.roll(base, shifts=3, dims=-1)  # content moves 3 px right
    frames = torch.cat([base, moved])
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 0] = 3.0  # frame t pixel x is at x + 3 in frame t+1
    assert metrics.warp_error(frames, flow) == pytest.approx(0, abs=1e-6)
    assert metrics.warp_error(frames, torch.zeros_like(flow)) > 0.01


def test_mouth_psnr_only_sees_the_mouth_box():
    x = clip(2)
    y = x.clone()
    y[..., :8, :] += 0.5  # change outside the box only
    boxes = torch.tensor([[8.0, 16.0, 24.0, 28.0]] * 2)
    assert metrics.mouth_psnr(y, x, boxes) > 90
    assert metrics.psnr_db(y, x) < 40
    assert metrics.ssim_index(x, x) == pytest.approx(1.0, abs=1e-6)


def test_crop_windows_centre_each_frame_and_repeat_the_edges():
    crops = torch.arange(4.0)[:, None, None].expand(4, 2, 2)
    windows = crop_windows(crops, 3)
    assert windows.shape == (4, 3, 2, 2)
    assert windows[:, :, 0, 0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]


def test_box_jitter_moves_whole_windows_within_bounds():
    boxes = torch.tensor([[[10.0, 20.0, 30.0, 40.0]] * 3] * 64)
    out = jitter_boxes(boxes, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 0], out[:, 1])  # one draw per sample
    centre_shift = ((out[..., :2] + out[..., 2:]) / 2 - torch.tensor([20.0, 30.0])).abs()
    assert float(centre_shift.max()) <= 2.0 + 1e-5 and float(centre_shift.max()) > 0.5
    assert not torch.equal(out[0], out[1])


def test_viseme_accuracy_is_balanced_over_present_classes():
    truth = np.array([0, 0, 0, 0, 5, 5])
    always_sil = np.zeros(6, dtype=int)
    scores = viseme_accuracy(always_sil, truth)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["balanced_accuracy"] == pytest.approx(0.5)
    assert viseme_recalls(np.array([0, 0, 5, 0, 5, 3]), truth) == {"sil": 0.75, "kk": 0.5}


def test_lip_reader_learns_on_the_tiny_set(tiny_lipread):
    rows = [r for r in read_metrics(tiny_lipread.parent / "metrics.jsonl")
            if r["split"] == "train"]
    assert rows[-1]["ce"] < rows[0]["ce"] - 0.2, (rows[0]["ce"], rows[-1]["ce"])


def test_eval_writes_the_full_report(tiny_dataset, tiny_student, tiny_sync, tiny_lipread,
                                     tmp_path, capsys):
    from training.cli import main

    out = tmp_path / "eval"
    code = main(["eval", "--student", str(tiny_student), "--data", str(tiny_dataset),
                 "--out", str(out), "--sync", str(tiny_sync), "--lipread", str(tiny_lipread),
                 "--clips", "2", "--frames", "15"])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    methods = report["methods"]
    expected = {"student_1", "student_2", "student_4", "student_8", "teacher_10",
                "teacher_25", "teacher_50", "reconstruction", "ground_truth",
                "held_truth"}
    assert expected <= set(methods)
    for key in ("psnr", "psnr_held", "ssim", "mouth_psnr", "psnr_vs_ae", "temporal_l1",
                "temporal_l1_outside_mouth", "flicker_std",
                "warp_error", "identity_cosine", "lipread_accuracy", "lse_d", "lse_c",
                "offset_accuracy", "ms_per_frame_host", "mouth_open_r"):
        assert key in methods["student_2"], key
    # the cavity measure follows the mouth model's opening on the truth (the generator's own)
    assert methods["ground_truth"]["mouth_open_r"] > 0.4
    # the autoencoder round trip is the ceiling of every generated clip
    assert methods["reconstruction"]["psnr_vs_ae"] > 90
    assert {(r["t"], r["method"]) for r in report["table1"]} == {
        (t, m) for t in (0.3, 0.5, 0.7) for m in ("noisy", "teacher", "student")}
    assert report["cross_identity"]["clips"] == 2
    assert report["inference_start"]["best"] in methods
    assert len(report["bars"]) == 11
    # the held truth moves only its mouth: less than the recorded clip, but not still
    held, recorded = methods["held_truth"], methods["ground_truth"]
    assert 0 < held["temporal_l1"] < recorded["temporal_l1"]
    assert held["temporal_l1_outside_mouth"] < 0.1 * recorded["temporal_l1_outside_mouth"]
    by_speaker = report["motion_by_speaker"]  # the temporal bars' ratios, face by face
    assert sum(row["clips"] for row in by_speaker.values()) == 2
    assert {row["truth"] for row in by_speaker.values()} == {"held_truth"}
    (row,) = by_speaker.values()  # the tiny test split: one speaker, two clips
    assert row["temporal_l1_ratio"] == pytest.approx(
        methods["student_2"]["temporal_l1"] / held["temporal_l1"])
    assert all(row["bar"] in printed for row in report["bars"])
    # per-viseme lip-reading, pooled over the frames: it adds up to each method's accuracy
    by_viseme = report["lipread_by_viseme"]
    assert sum(by_viseme["frames"].values()) == report["frames"] == 30
    for name in ("held_truth", "reconstruction", "student_2", "teacher_50"):
        pooled = sum(n * by_viseme[name][v] for v, n in by_viseme["frames"].items()) / 30
        assert pooled == pytest.approx(methods[name]["lipread_accuracy"]), name
    assert "| viseme | frames | held_truth | ground_truth | reconstruction | student_2 | " \
        "teacher_50 |" in (out / "report.md").read_text()
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| student_2 |" in (out / "report.md").read_text()


def test_eval_rejects_a_missing_student(tiny_dataset, tmp_path, capsys):
    from training.cli import main

    code = main(["eval", "--student", str(tmp_path / "nope.pt"), "--data", str(tiny_dataset),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.pt" in err[0]
