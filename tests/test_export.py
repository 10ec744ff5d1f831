"""tsd export: graphs match torch, int8 calibrates, MACs are counted on the graph files, and
the runtime's loader accepts the bundle and refuses corrupt ones with one clear line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edge_runtime.backends import open_graph
from edge_runtime.bundle import BundleError, load_bundle


def _inputs(session, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible inputs for any graph of the bundle, by name and declared spec."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in session.inputs:
        if spec.dtype == "uint8":
            feeds[spec.name] = rng.integers(0, 256, spec.shape, dtype=np.uint8)
        elif spec.dtype == "int32":
            feeds[spec.name] = rng.integers(0, 15, spec.shape).astype(np.int32)
        elif spec.name == "mel":
            feeds[spec.name] = rng.normal(-6, 2, spec.shape).astype(np.float32)
        elif spec.name == "noise_level":
            feeds[spec.name] = np.full(spec.shape, 1.0, np.float32)
        else:
            feeds[spec.name] = rng.standard_normal(spec.shape).astype(np.float32)
    return feeds


def test_bundle_loads_and_every_graph_runs_in_all_four_variants(tiny_bundle):
    bundle, root = load_bundle(tiny_bundle)
    assert set(bundle.variants) == {"onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"}
    assert set(bundle.schedules) == {1, 2, 4, 8}
    assert bundle.notice and bundle.provenance["git_commit"]
    for variant, graphs in bundle.variants.items():
        assert set(graphs) == {"reference", "step", "decoder", "generate_1", "generate_2",
                               "generate_4", "generate_8", "visemes"}
        for name in graphs:
            session = open_graph(bundle, root, variant, name)
            outputs = session.run(_inputs(session))
            for spec, out in zip(session.outputs, outputs):
                assert out.shape == spec.shape and out.dtype.name == spec.dtype
    frame = open_graph(bundle, root, "onnx-fp32", "decoder").run(
        {"latent": np.zeros((1, 4, 16, 16), np.float32)})[0]
    assert frame.shape == (bundle.resolution, bundle.resolution, 3) and frame.dtype == np.uint8
    for variant, errors in bundle.evaluation["parity_max_abs_error_vs_torch"].items():
        assert max(v for k, v in errors.items() if k != "decoder") < 1e-3, variant
        assert errors["decoder"] <= 1, variant


@pytest.mark.parametrize("variant", ["onnx-int8", "tflite-fp32", "tflite-int8"])
def test_variants_agree_with_onnx_fp32_on_a_real_frame(tiny_bundle, variant):
    """Same reference photo and noise through reference -> generate_2 -> decoder: fp32
    variants agree exactly, int8 ones approximately."""
    bundle, root = load_bundle(tiny_bundle)

    def frame(v: str) -> np.ndarray:
        ref = open_graph(bundle, root, v, "reference").run(
            {"image": np.full((128, 128, 3), 140, np.uint8)})
        rng = np.random.default_rng(3)
        x0 = open_graph(bundle, root, v, "generate_2").run({
            "noise": rng.standard_normal((1, 4, 16, 16)).astype(np.float32),
            "renoise": rng.standard_normal((1, 4, 16, 16)).astype(np.float32),
            "ref_latent": ref[0], "identity": ref[1],
            "visemes": np.array([[0, 0, 10, 0, 0]], np.int32)})[0]
        return open_graph(bundle, root, v, "decoder").run({"latent": x0})[0].astype(float)

    error = np.abs(frame(variant) - frame("onnx-fp32")).mean()
    assert error < (1.0 if variant == "tflite-fp32" else 40.0), error


def test_tflite_int8_keeps_full_integer_only_where_it_stays_near_fp32(tiny_bundle, tmp_path):
    """Full-integer int8 ruins the step graph's skip arithmetic at the high noise levels a
    few-step sampler starts from; quantize_tflite then keeps its elementwise ops float and
    records the recipe in the bundle. The decoder stays full-integer."""
    from export.tflite_export import (
        FULL_INTEGER,
        INT8_COMPUTE,
        MIN_SNR_DB,
        _quantize,
        output_snr,
        quantize_tflite,
    )

    bundle, root = load_bundle(tiny_bundle)
    recipes = bundle.evaluation["tflite_int8"]
    assert set(recipes) == set(bundle.variants["tflite-int8"])
    assert recipes["decoder"]["recipe"] == FULL_INTEGER
    assert recipes["step"]["recipe"] == INT8_COMPUTE
    session = open_graph(bundle, root, "tflite-fp32", "step")
    samples = [_inputs(session, seed) | {"noise_level": np.full((1,), seed - 8.0, np.float32)}
               for seed in range(8)]  # log-SNR -8..-1: the sampler's first steps
    outputs = tuple(spec.name for spec in session.outputs)
    fp32 = root / bundle.graph("tflite-fp32", "step").file
    full = output_snr(fp32, _quantize(fp32, tmp_path / "full.tflite", samples, FULL_INTEGER),
                      samples, outputs)
    chosen = quantize_tflite(fp32, tmp_path / "step.tflite", samples, outputs)
    assert full < MIN_SNR_DB <= chosen.snr_db and chosen.recipe == INT8_COMPUTE
    assert output_snr(fp32, chosen.path, samples, outputs) == pytest.approx(chosen.snr_db)


@pytest.mark.parametrize("start", ["noise", "reference"])
def test_the_runtime_step_loop_matches_the_torch_sampler(tiny_bundle, tiny_student, start):
    """edge_runtime's StepLoop over the exported step graph == export's GenerateGraph in
    torch, for either inference start (tests/test_runtime.py checks it against generate_K)."""
    from calibration.schedules import load_student
    from edge_runtime.render.renderer import StepLoop
    from edge_runtime.render.schedule import StepSchedule
    from export.graphs import GenerateGraph

    bundle, root = load_bundle(tiny_bundle)
    schedule = StepSchedule((0.8, 0.5, 0.2), start)
    ref = open_graph(bundle, root, "onnx-fp32", "reference").run(
        {"image": np.full((128, 128, 3), 120, np.uint8)})
    rng = np.random.default_rng(1)
    feeds = {"noise": rng.standard_normal((1, 4, 16, 16)).astype(np.float32),
             "renoise": rng.standard_normal((2, 4, 16, 16)).astype(np.float32),
             "ref_latent": ref[0], "identity": ref[1],
             "visemes": np.array([[0, 3, 10, 10, 0]], np.int32)}
    loop = StepLoop(open_graph(bundle, root, "onnx-fp32", "step"), schedule)
    ours = loop.run(feeds)[0]
    graph = GenerateGraph(load_student(tiny_student)[2], schedule)
    with torch.no_grad():
        theirs = graph(*(torch.as_tensor(feeds[k]) for k in (
            "noise", "renoise", "ref_latent", "identity", "visemes"))).numpy()
    assert np.abs(ours - theirs).max() < 1e-4


def test_macs_counted_on_the_graph_match_torch(tiny_bundle, tiny_student):
    from calibration.schedules import load_student
    from training.models.loading import load_frozen
    from training.models.macs import count_macs

    bundle, _ = load_bundle(tiny_bundle)
    _, config, student = load_student(tiny_student)
    ae = load_frozen(config.autoencoder, "autoencoder")
    z = torch.zeros(1, 4, 16, 16)
    want_step = count_macs(lambda: student(z, torch.zeros(1), z, torch.zeros(1, 32),
                                           torch.zeros(1, 5, dtype=torch.long)))
    assert bundle.graph("onnx-fp32", "step").macs == want_step
    assert bundle.graph("onnx-fp32", "decoder").macs == count_macs(lambda: ae.decode(z))
    assert bundle.graph("onnx-int8", "step").macs == want_step
    # the unrolled graph folds the time embedding of its baked noise levels into constants
    assert 0.98 * 2 * want_step <= bundle.graph("onnx-fp32", "generate_2").macs <= 2 * want_step


def _copy(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(bundle, out)
    return out


def _edit(folder: Path, change) -> None:
    path = folder / "bundle.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("case, expected", [
    ("truncated graph", "checksum mismatch for onnx/fp32/step.onnx"),
    ("wrong checksum", "checksum mismatch for onnx/int8/decoder.onnx"),
    ("missing key", "missing key 'resolution'"),
    ("unknown schema version", "unknown schema version 99"),
    ("missing graph file", "graph file onnx/fp32/reference.onnx is missing"),
    ("unknown variant", "unknown variant 'onnx-int4'"),
    ("bad schedule", "a step schedule is decreasing times"),
    ("wrong type", "resolution: expected an integer"),
    ("not a bundle", "not a bundle (no bundle.yaml)"),
])
def test_corrupt_bundles_are_refused_with_one_line(tiny_bundle, tmp_path, case, expected):
    folder = _copy(tiny_bundle, tmp_path)
    if case == "truncated graph":
        path = folder / "onnx" / "fp32" / "step.onnx"
        path.write_bytes(path.read_bytes()[:1000])
    elif case == "wrong checksum":
        _edit(folder, lambda d: d["variants"]["onnx-int8"]["decoder"].update(sha256="0" * 64))
    elif case == "missing key":
        _edit(folder, lambda d: d.pop("resolution"))
    elif case == "unknown schema version":
        _edit(folder, lambda d: d.update(schema_version=99))
    elif case == "missing graph file":
        (folder / "onnx" / "fp32" / "reference.onnx").unlink()
    elif case == "unknown variant":
        _edit(folder, lambda d: d["variants"].update({"onnx-int4": d["variants"]["onnx-int8"]}))
    elif case == "bad schedule":
        _edit(folder, lambda d: d["schedules"][2].update(timesteps=[0.2, 0.9]))
    elif case == "wrong type":
        _edit(folder, lambda d: d.update(resolution="big"))
    elif case == "not a bundle":
        (folder / "bundle.yaml").unlink()
    with pytest.raises(BundleError) as exc:
        load_bundle(folder)
    assert expected in _one_line(exc)


def test_a_declared_shape_that_differs_from_the_graph_is_refused(tiny_bundle, tmp_path):
    folder = _copy(tiny_bundle, tmp_path)
    _edit(folder, lambda d: d["variants"]["onnx-fp32"]["step"]["inputs"][0].update(
        shape=[1, 4, 32, 32]))
    bundle, root = load_bundle(folder)
    with pytest.raises(BundleError) as exc:
        open_graph(bundle, root, "onnx-fp32", "step")
    assert "input 'x' is float32[1, 4, 16, 16], the bundle declares float32[1, 4, 32, 32]" \
        in _one_line(exc)


def test_export_cli_errors_are_one_line(tiny_dataset, tmp_path, capsys):
    from training.cli import main

    code = main(["export", "--student", str(tmp_path / "missing.pt"), "--data",
                 str(tiny_dataset), "--out", str(tmp_path / "b")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.pt" in err[0]
    assert not (tmp_path / "b").exists()


def test_bundle_report_measures_every_variant_and_writes_the_int8_plan(
        tiny_bundle, tiny_dataset, tiny_lipread, tmp_path):
    from export.report import SWAP_GRAPHS, bundle_report, keeps_int8
    from training.data.manifest import read_manifest

    folder = _copy(tiny_bundle, tmp_path)
    report = bundle_report(folder, read_manifest(tiny_dataset), tmp_path / "report", steps=2,
                           threads=1, clips=1, frames=10, lipread=tiny_lipread)
    variants = report["variants"]
    for name in ("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8", "onnx-mixed",
                 "tflite-mixed", "onnx: int8 decoder only"):
        assert {"psnr_vs_ground_truth", "ms_per_frame", "lipread_accuracy"} <= set(
            variants[name]), name
    assert variants["tflite-fp32"]["psnr_vs_onnx_fp32"] > 60  # same fp32 graph, other runtime
    assert set(report["int8_plan"]) == {"onnx", "tflite"}
    for backend, graphs in report["int8_plan"].items():  # the visemes graph is planned too
        assert set(graphs) == {"reference", "generate", "decoder", "visemes"}
        for graph in SWAP_GRAPHS:
            alone = variants[f"{backend}: int8 {graph} only"]
            keep = keeps_int8(variants[f"{backend}-fp32"], alone)
            assert graphs[graph] == ("int8" if keep else "fp32"), (backend, graph)
        loss = (variants[f"{backend}-fp32"]["viseme_accuracy"]
                - variants[f"{backend}-int8"]["viseme_accuracy"])
        assert graphs["visemes"] == ("int8" if loss <= 0.01 else "fp32")
    bundle, _ = load_bundle(folder)  # still valid after the report rewrote bundle.yaml
    assert bundle.int8_plan == report["int8_plan"]
    assert set(bundle.evaluation["variants"]) == set(variants)
    kind_plan = bundle.int8_plan["onnx"]
    assert bundle.precision_of("onnx", "int8", "decoder") == f"onnx-{kind_plan['decoder']}"
    assert bundle.precision_of("tflite", "fp32", "decoder") == "tflite-fp32"
    assert "| onnx-int8 |" in (tmp_path / "report" / "variants.md").read_text()


def test_an_int8_graph_that_stills_the_mouth_stays_fp32_whatever_its_psnr():
    from export.report import keeps_int8

    fp32 = {"psnr_vs_ground_truth": 22.17, "mouth_open_correlation": 0.60}
    assert keeps_int8(fp32, {"psnr_vs_ground_truth": 22.15, "mouth_open_correlation": 0.55})
    assert not keeps_int8(fp32, {"psnr_vs_ground_truth": 22.15, "mouth_open_correlation": 0.04})
    assert not keeps_int8(fp32, {"psnr_vs_ground_truth": 21.5, "mouth_open_correlation": 0.60})
    assert keeps_int8({"psnr_vs_ground_truth": 22.17}, {"psnr_vs_ground_truth": 22.0})


def test_export_unrolls_only_the_step_counts_asked_for(tiny_student, tiny_dataset, tmp_path):
    """`tsd export --unrolled 2`: generate_2 only; the runtime runs 4 steps as calls of the
    step graph (and autotune offers the unrolled sampler only where it exists)."""
    from edge_runtime.autotune import candidates
    from edge_runtime.render.renderer import Renderer, sampler_macs
    from export.bundle import export_bundle
    from training.data.manifest import read_manifest

    out = tmp_path / "small"
    export_bundle(tiny_student, read_manifest(tiny_dataset), out, variants=("onnx-fp32",),
                  calibration_clips=1, frames_per_clip=2, unrolled=(2,))
    bundle, root = load_bundle(out)
    assert set(bundle.variants["onnx-fp32"]) == {"reference", "step", "decoder", "generate_2"}
    assert sorted(bundle.schedules) == [1, 2, 4, 8]  # every schedule still ships
    assert Renderer(bundle, root, 2, threads=1).sampler == "unrolled"
    assert Renderer(bundle, root, 4, threads=1).sampler == "step"
    assert sampler_macs(bundle, 4) == 4 * bundle.graph("onnx-fp32", "step").macs
    assert {c.sampler for c in candidates(bundle, [1], 4)} == {"step"}
    assert {c.sampler for c in candidates(bundle, [1], 2)} == {"step", "unrolled"}


def test_each_graph_keeps_the_simplifier_that_leaves_fewer_nodes(tmp_path):
    """A graph with foldable parameter and shape arithmetic: the export keeps the smaller of
    onnxsim's and onnxslim's results (onnxsim's on a tie, as here), which still computes
    what torch does."""
    import onnx

    from export.graphs import GraphDef
    from export.onnx_export import SIMPLIFIERS, export_raw, run_onnx, simplest, simplified

    class Foldable(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
            self.scale = torch.nn.Parameter(torch.rand(8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x) * (self.scale * 2.0 + 1.0).view(1, -1, 1, 1)
            return y.reshape(x.shape[0], -1, x.shape[2] * x.shape[3]).mean(-1)

    module, x = Foldable().eval(), torch.randn(1, 4, 16, 16)
    raw = export_raw(GraphDef("foldable", module, {"x": x}, ("y",)))
    results = {s: simplified(raw, s) for s in SIMPLIFIERS}
    fewest = min(len(m.graph.node) for m in results.values())
    preferred = next(s for s in SIMPLIFIERS if len(results[s].graph.node) == fewest)
    kept = simplest(raw, "foldable")
    assert fewest < len(raw.graph.node)
    assert kept.SerializeToString() == results[preferred].SerializeToString()
    onnx.save_model(kept, str(tmp_path / "foldable.onnx"))
    got = run_onnx(tmp_path / "foldable.onnx", {"x": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, module(x).numpy(), atol=1e-5)
