"""``tsd bundle-report``: quality and latency of every variant of a bundle, run through the
device runtime's own sessions (edge_runtime.backends) on held-out clips.

Per variant: PSNR of the final frames against the ONNX fp32 variant's frames (same
reference, noise and visemes), PSNR against the ground truth, lip-reading accuracy (with a
lip reader checkpoint), and the time per frame of generate_K + decoder at a given thread
count. For the int8 variants each graph is also swapped in alone (the rest fp32): a graph
whose int8 version alone costs more than ``INT8_BUDGET_DB`` or ``MOUTH_BUDGET`` stays fp32
in the bundle's int8 plan, which ``--precision int8`` follows on the device; the visemes
graph is judged by its streaming frame accuracy (VISEME_BUDGET).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from edge_runtime.bundle import load_bundle, write_bundle_yaml
from edge_runtime.render.renderer import Renderer
from training.atomic import write_text
from training.data.manifest import Manifest
from training.eval.clips import EvalClip, load_clips, viseme_context
from training.eval.metrics import correlation, mouth_opening

log = logging.getLogger(__name__)

INT8_BUDGET_DB = 0.5
"""Largest PSNR loss against fp32 that an int8 graph may cost (the export issue's bar)."""
MOUTH_BUDGET = 0.1
"""Largest mouth-opening correlation an int8 graph may cost: PSNR hardly sees a mouth that
stops moving (the demo's TFLite int8 step graph once scored 0.04 against fp32's 0.60 while
losing 0.02 dB)."""
SWAP_GRAPHS = ("reference", "generate", "decoder")
VISEME_BUDGET = 0.01
"""Largest streaming viseme frame-accuracy loss an int8 visemes graph may cost."""


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def render_clip(renderer: Renderer, clip: EvalClip, seed: int) -> tuple[np.ndarray, float]:
    """The runtime's renderer over a clip -> frames uint8 [N, H, W, 3], mean seconds per
    frame (generate + decode)."""
    image = ((clip.reference.permute(1, 2, 0).numpy() + 1) * 127.5).round()
    renderer.set_reference(image.astype(np.uint8))
    renderer.new_stream(seed)
    windows = viseme_context(clip, renderer.bundle.viseme_context).numpy().astype(np.int32)
    frames, spent = [], 0.0
    for window in windows:
        began = time.perf_counter()
        frames.append(renderer.decode(renderer.latent(window)))
        spent += time.perf_counter() - began
    return np.stack(frames), spent / len(windows)


def _lipread(reader, frames: np.ndarray, clip: EvalClip) -> float:
    from training.eval.report import lipread_accuracy

    images = torch.from_numpy(frames).float().div(127.5).sub(1).permute(0, 3, 1, 2)
    return lipread_accuracy(reader, images, clip)


def _score(renderer: Renderer, clips: list[EvalClip], baseline: list[np.ndarray] | None,
           reader, seed: int) -> tuple[dict, list[np.ndarray]]:
    """Mean scores over the clips, and the per-clip scores under ``clips`` (clip id ->
    scores), which tests/test_demo_bundle.py reproduces."""
    rows, outputs = {}, []
    for index, clip in enumerate(clips):
        frames, seconds = render_clip(renderer, clip, seed + index)
        rows[clip.id] = clip_scores(frames, clip, reader)
        rows[clip.id]["ms_per_frame"] = 1000 * seconds
        if baseline is not None:
            rows[clip.id]["psnr_vs_onnx_fp32"] = _psnr(frames, baseline[index])
        outputs.append(frames)
    keys = next(iter(rows.values()))
    means = {k: float(np.mean([r[k] for r in rows.values()])) for k in keys}
    timing_free = {c: {k: v for k, v in r.items() if k != "ms_per_frame"}
                   for c, r in rows.items()}
    return means | {"clips": timing_free}, outputs


def clip_scores(frames: np.ndarray, clip: EvalClip, reader=None) -> dict[str, float]:
    """One rendered clip (uint8 [N, H, W, 3]) against its ground truth: PSNR, and how well
    the mouth opening follows the ground-truth jaw opening (Pearson correlation of
    mouth_opening with the synthetic clip's "open" parameter)."""
    truth = ((clip.frames.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round()
    row = {"psnr_vs_ground_truth": _psnr(frames, truth)}
    if clip.mouth_open is not None:
        opening = mouth_opening(frames, clip.mouth_boxes.numpy())
        row["mouth_open_correlation"] = correlation(opening, clip.mouth_open)
    if reader is not None:
        row["lipread_accuracy"] = _lipread(reader, frames, clip)
    return row


def bundle_report(folder: Path, manifest: Manifest, out: Path, steps: int = 2,
                  threads: int = 2, clips: int = 4, frames: int = 25,
                  lipread: Path | None = None, seed: int = 0) -> dict:
    """Measure every variant; write out/variants.json and .md; store the results and the
    int8 plan in the bundle's bundle.yaml."""
    bundle, root = load_bundle(folder)
    reader = None
    if lipread is not None:
        from training.models.loading import load_frozen

        reader = load_frozen(lipread, "lip reader")
    eval_clips = load_clips(manifest, "test", clips, frames)

    def runner(assignment: dict[str, str]) -> Renderer:
        return Renderer(bundle, root, steps, threads=threads, variants=assignment)

    fp32 = {g: "onnx-fp32" for g in SWAP_GRAPHS}
    base_scores, baseline = _score(runner(fp32), eval_clips, None, reader, seed)
    base_scores["psnr_vs_onnx_fp32"] = float("inf")
    results = {"onnx-fp32": base_scores}
    plan: dict[str, dict[str, str]] = {}
    for variant in (v for v in bundle.variants if v != "onnx-fp32"):
        results[variant], _ = _score(runner({g: variant for g in SWAP_GRAPHS}), eval_clips,
                                     baseline, reader, seed)
        backend, precision = variant.split("-")
        if precision != "int8" or f"{backend}-fp32" not in bundle.variants:
            continue
        plan[backend] = {}
        for graph in SWAP_GRAPHS:
            mixed = {g: f"{backend}-fp32" for g in SWAP_GRAPHS} | {graph: variant}
            scores, _ = _score(runner(mixed), eval_clips, baseline, reader, seed)
            results[f"{backend}: int8 {graph} only"] = scores
            keep = keeps_int8(results[f"{backend}-fp32"], scores)
            plan[backend][graph] = "int8" if keep else "fp32"
        mixed = {g: f"{backend}-{p}" for g, p in plan[backend].items()}
        results[f"{backend}-mixed"], _ = _score(runner(mixed), eval_clips, baseline, reader,
                                                seed)
    if bundle.recognizer is not None:
        _plan_visemes(folder, manifest, out, bundle.variants, plan, results)
    report = {"bundle": str(folder), "steps": steps, "threads": threads,
              "clips": [c.id for c in eval_clips], "frames_per_clip": frames,
              "int8_budget_db": INT8_BUDGET_DB, "mouth_budget": MOUTH_BUDGET,
              "viseme_budget": VISEME_BUDGET,
              "int8_plan": plan, "variants": results}
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "variants.json", json.dumps(report, indent=2))
    write_text(out / "variants.md", markdown(report))
    evaluation = dict(bundle.evaluation, variants=results, report={
        "data": str(manifest.path), "split": "test", "clips": [c.id for c in eval_clips],
        "frames_per_clip": frames, "steps": steps, "seed": seed})
    write_bundle_yaml(dataclasses.replace(bundle, int8_plan=plan, evaluation=evaluation), root)
    return report


def _plan_visemes(folder: Path, manifest: Manifest, out: Path, variants, plan: dict,
                  results: dict) -> None:
    """The visemes graph is judged by streaming frame accuracy on the test clips (12): its
    int8 version is planned when it loses at most VISEME_BUDGET against its backend's fp32."""
    from training.eval.visemes import eval_recognizers

    accuracy = {v: eval_recognizers(folder, manifest, out / f"visemes-{v}", "test", 12,
                                    v)["streaming_accuracy"] for v in variants}
    for variant, value in accuracy.items():
        results[variant]["viseme_accuracy"] = value
    for backend, graphs in plan.items():
        loss = accuracy[f"{backend}-fp32"] - accuracy[f"{backend}-int8"]
        graphs["visemes"] = "int8" if loss <= VISEME_BUDGET else "fp32"


def keeps_int8(fp32: dict[str, float], int8: dict[str, float]) -> bool:
    """Whether a graph's int8 version (``int8``: scores with it alone int8) stays within the
    budgets against ``fp32``: PSNR vs ground truth, and mouth-opening correlation where the
    clips have a jaw-opening track."""
    if _psnr_loss(fp32, int8) > INT8_BUDGET_DB:
        return False
    corr = "mouth_open_correlation"
    return corr not in fp32 or fp32[corr] - int8[corr] <= MOUTH_BUDGET


def _psnr_loss(reference: dict[str, float], scores: dict[str, float]) -> float:
    """dB lost against the ground truth relative to ``reference`` (positive = worse)."""
    return reference["psnr_vs_ground_truth"] - scores["psnr_vs_ground_truth"]


def markdown(report: dict) -> str:
    cols = ["psnr_vs_onnx_fp32", "psnr_vs_ground_truth", "mouth_open_correlation",
            "lipread_accuracy", "viseme_accuracy", "ms_per_frame"]
    rows = report["variants"]
    cols = [c for c in cols if any(c in r for r in rows.values())]
    lines = [f"Frames at {report['steps']} steps, {report['threads']} threads, "
             f"{len(report['clips'])} test clips x {report['frames_per_clip']} frames; time "
             "= generate_K + decoder per frame on this machine.", "",
             "| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{row[c]:.4g}" if c in row else "" for c in cols) + " |")
    for backend, graphs in report["int8_plan"].items():
        lines.append("")
        lines.append(f"{backend} int8 plan: " + ", ".join(f"{g} {p}" for g, p in graphs.items()))
    return "\n".join(lines) + "\n"
