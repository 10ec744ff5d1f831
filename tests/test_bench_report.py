"""tsd bench-report on a real pytest-benchmark run of the device suites (a short run of a
subset, on the tiny bundle and the tiny student)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.pi4 import PI4
from training.cli import main as tsd

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench_json(tiny_bundle, tiny_student, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    selection = ("test_whole_frame and onnxruntime and fp32 or test_generate and onnxruntime "
                 "and fp32 and unrolled or test_decoder and onnxruntime and fp32 or "
                 "test_visemes_per_frame and onnxruntime and fp32 or test_sgemm or "
                 "test_frame_by_teacher or test_edge_run_process or test_glue_profile or "
                 "test_student_step and onnxruntime and fp32")
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/benchmarks",
         "--benchmark-only", "--benchmark-enable", "--benchmark-max-time", "0.02",
         "--benchmark-min-rounds", "3", "--benchmark-warmup", "off", "-k", selection,
         "--bundle", str(tiny_bundle), "--student", str(tiny_student),
         "--benchmark-json", str(out)], cwd=REPO, check=True, capture_output=True)
    return out


def test_report_has_the_papers_tables_with_pi_estimates(bench_json, tmp_path, capsys):
    assert tsd(["bench-report", "--json", str(bench_json), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "bench.json").read_text())
    assert "## Table 2" in printed and "## Table 3" in printed
    frames = summary["frames"]
    assert {(f["mode"], f["steps"]) for f in frames} == {
        (m, k) for m in ("full", "hybrid") for k in (1, 2, 4, 8)}
    for f in frames:
        fast, slow = f["pi4_ms"]
        assert 0 < fast < slow
        assert f["fps"] == pytest.approx(1000 / f["mean_ms"])
        assert f["p95_ms"] >= f["mean_ms"] - 3 * f["std_ms"]
    full = {f["steps"]: f for f in frames if f["mode"] == "full"}
    hybrid = {f["steps"]: f for f in frames if f["mode"] == "hybrid"}
    # more steps and the decoder cost MACs; the Pi estimate follows the counted MACs
    assert full[1]["macs"] < full[2]["macs"] < full[4]["macs"] < full[8]["macs"]
    assert all(hybrid[k]["macs"] < full[k]["macs"] for k in full)
    assert full[8]["pi4_ms"][1] - full[1]["pi4_ms"][1] == pytest.approx(
        (full[8]["macs"] - full[1]["macs"]) / (PI4.pessimistic_gmacs * 1e6)
        + PI4.glue_slowdown * (max(full[8]["glue_ms"], 0) - max(full[1]["glue_ms"], 0)))
    ratios = summary["teacher_vs_student"]
    assert set(ratios) == {"torch", "onnxruntime"}
    for ratio in ratios.values():
        assert ratio["speedup"] == pytest.approx(
            ratio["teacher_ddim_50_ms"] / ratio["student_2_ms"])
    process = summary["process"]
    assert process["peak_rss_mb"] > 10 and process["load_s"] > 0 and process["fps"] > 0
    assert summary["sgemm_peak_gflops"] > 0
    profile = summary["glue_profile"]["onnxruntime"]
    assert profile["frames"] >= 240 and 0 < profile["glue_share"] < 1
    assert profile["inference_ms"] + profile["front_end_ms"] + profile["glue_ms"] == \
        pytest.approx(profile["total_ms"])
    assert "## Python glue" in printed
    assert (tmp_path / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stages = {s["stage"] for s in summary["stages"]}
    assert {"decoder", "step", "sampler 2 steps"} <= stages


def test_a_file_that_is_not_benchmark_json_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bench.json"
    bad.write_text("{not json")
    assert tsd(["bench-report", "--json", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a pytest-benchmark JSON file" in err[0]
