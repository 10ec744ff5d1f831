"""``tsd eval``: every metric of the models issue on held-out identities -> report.json,
report.md (tables) and frontier.png (metrics vs step count).

Methods: ``reconstruction`` (the autoencoder round trip, the ceiling), ``student_K`` (K-step
consistency sampling with the checkpoint's calibrated schedules), ``teacher_K`` (K-step DDIM),
``student_2_reference_tX`` (2 steps from the reference latent noised to time X). Timings are
torch on this host, per frame, generation + decoding: a relative measure only; the device
numbers come from the benchmarks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edge_runtime.render.schedule import StepSchedule, uniform_schedule
from edge_runtime.visemes.vocabulary import VISEMES
from training.atomic import write_text
from training.config import EvalConfig, SyncRunConfig, from_dict
from training.data.manifest import Manifest
from training.errors import UserError
from training.eval import metrics
from training.eval.clips import EvalClip, load_clips, speaker_references, viseme_context
from training.eval.generate import (
    Condition,
    StreamNoise,
    condition,
    one_step,
    student_sample,
    teacher_ddim,
)
from training.models.autoencoder import LATENT_LIMIT
from training.models.lipread import LipReader, crop_windows
from training.models.loading import load_autoencoder, load_frozen
from training.models.macs import count_macs
from training.models.sync import SyncExpert, mouth_crops, sync_distances
from training.plots import save_panels
from training.tasks.lipread import viseme_accuracy, viseme_recalls
from training.tasks.sync import audio_windows, sync_metrics

log = logging.getLogger(__name__)

DEFAULT_STEPS = 2
"""The step count the bars single out (E1's default)."""


@dataclass(frozen=True)
class EvalModels:
    autoencoder: nn.Module
    identity: nn.Module
    teacher: nn.Module
    student: nn.Module
    schedules: dict[int, StepSchedule]
    """Calibrated schedule per step count (uniform where the checkpoint has none)."""
    viseme_context: int
    sync: SyncExpert | None
    sync_max_offset: int
    lipread: LipReader | None
    paths: dict[str, str]


def load_models(student_path: Path, sync_path: Path | None, lipread_path: Path | None,
                steps: tuple[int, ...], autoencoder_path: str | None = None) -> EvalModels:
    """The student checkpoint names its teacher, autoencoder and identity encoder;
    ``autoencoder_path`` replaces the autoencoder by one with the same encoder."""
    from calibration.schedules import load_student

    state, config, student = load_student(student_path)
    stored = {int(k): StepSchedule.from_dict(v) for k, v in state.get("schedules", {}).items()}
    missing = [k for k in steps if k not in stored]
    if missing:
        log.warning("%s has no calibrated schedule for %s steps (tsd calibrate schedules); "
                    "using uniform ones", student_path, missing)
    schedules = {k: stored.get(k, uniform_schedule(k)) for k in steps}
    sync, max_offset = None, 0
    if sync_path is not None:
        sync = load_frozen(sync_path, "sync expert")
        sync_state = torch.load(sync_path, map_location="cpu", weights_only=False)
        max_offset = from_dict(SyncRunConfig, sync_state["config"], str(sync_path)).max_offset
    return EvalModels(
        autoencoder=load_autoencoder(config.autoencoder, autoencoder_path),
        identity=load_frozen(config.identity_encoder, "identity encoder"),
        teacher=load_frozen(config.teacher, "teacher"),
        student=student.requires_grad_(False),
        schedules=schedules, viseme_context=config.window.viseme_context,
        sync=sync, sync_max_offset=max_offset,
        lipread=load_frozen(lipread_path, "lip reader") if lipread_path else None,
        paths={"student": str(student_path), "teacher": config.teacher,
               "autoencoder": autoencoder_path or config.autoencoder,
               "identity_encoder": config.identity_encoder,
               "sync": str(sync_path) if sync_path else None,
               "lipread": str(lipread_path) if lipread_path else None})


# --- per-clip scores -------------------------------------------------------------------------

def lipread_predictions(reader: LipReader, images: torch.Tensor, clip: EvalClip) -> np.ndarray:
    """The reader's viseme id for every frame [N] of images [N, 3, H, W]."""
    crops = mouth_crops(images, clip.mouth_boxes, reader.config.crop)
    with torch.no_grad():
        return reader(crop_windows(crops, reader.config.frames)).argmax(1).numpy()


def lipread_accuracy(reader: LipReader, images: torch.Tensor, clip: EvalClip) -> float:
    return viseme_accuracy(lipread_predictions(reader, images, clip),
                           clip.visemes.numpy())["accuracy"]


def sync_scores(expert: SyncExpert, max_offset: int, images: torch.Tensor, clip: EvalClip
                ) -> dict[str, float]:
    """LSE-D / LSE-C / offset accuracy over non-overlapping windows of the clip."""
    n, k = expert.config.frames, max_offset
    spf = len(clip.audio) // len(images)
    starts = list(range(k, len(images) - n - k + 1, n))
    if not starts:
        return {}
    crops = mouth_crops(images, clip.mouth_boxes, expert.config.crop)
    video = torch.stack([crops[s:s + n] for s in starts])
    audio = torch.from_numpy(np.stack([clip.audio[(s - k) * spf:(s + n + k) * spf]
                                       for s in starts]))
    mel = audio_windows(audio, n, k, clip.fps)
    with torch.no_grad():
        v = expert.embed_video(video)
        a = expert.embed_audio(mel.flatten(0, 1)).unflatten(0, (len(starts), 2 * k + 1))
    return sync_metrics(sync_distances(v, a), k)


def image_scores(models: EvalModels, images: torch.Tensor, clip: EvalClip,
                 recon: torch.Tensor | None, reads: list[np.ndarray] | None = None
                 ) -> dict[str, float]:
    """Every end-to-end metric of one clip's frames [N, 3, H, W] in [-1, 1]. ``reads``
    collects the lip reader's per-frame predictions (pooled per viseme over all clips)."""
    gt = clip.frames
    with torch.no_grad():
        ident = models.identity(images)
        ref_ident = models.identity(clip.reference[None])
    scores = {
        "psnr": metrics.psnr_db(images, gt),
        "ssim": metrics.ssim_index(images, gt),
        "mouth_psnr": metrics.mouth_psnr(images, gt, clip.mouth_boxes),
        "temporal_l1": metrics.temporal_l1(images),
        "temporal_l1_outside_mouth": metrics.temporal_l1_outside_mouth(images,
                                                                       clip.mouth_boxes),
        "flicker_std": metrics.flicker_std(images),
        "warp_error": metrics.warp_error(images, clip.flow),
        "identity_cosine": float(metrics.cosine(ident, ref_ident).mean()),
    }
    if recon is not None:
        scores["psnr_vs_ae"] = metrics.psnr_db(images, recon)
    if clip.mouth_open is not None:
        pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().movedim(1, -1).numpy()
        scores["mouth_open_r"] = metrics.correlation(
            metrics.mouth_opening(pixels, clip.mouth_boxes.numpy()), clip.mouth_open)
    if clip.held is not None:
        scores["psnr_held"] = metrics.psnr_db(images, clip.held)
    if models.lipread is not None:
        predicted = lipread_predictions(models.lipread, images, clip)
        scores["lipread_accuracy"] = viseme_accuracy(predicted, clip.visemes.numpy())["accuracy"]
        if reads is not None:
            reads.append(predicted)
    if models.sync is not None:
        scores |= sync_scores(models.sync, models.sync_max_offset, images, clip)
    return scores


def _truth_scores(models: EvalModels, frames: torch.Tensor, clip: EvalClip,
                  reads: list[np.ndarray]) -> dict[str, float]:
    """The scores of a ground truth [N, 3, H, W] that mean something for it (not its PSNR
    against itself)."""
    scores = image_scores(models, frames, clip, None, reads)
    return {k: v for k, v in scores.items()
            if k not in ("psnr", "ssim", "mouth_psnr", "psnr_held")}


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in rows[0] if all(k in r for r in rows)]
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


# --- the evaluation ---------------------------------------------------------------------------

def _methods(models: EvalModels, config: EvalConfig
             ) -> dict[str, Callable[[Condition, StreamNoise], torch.Tensor]]:
    """name -> generate(cond, noise) -> latents [N, C, h, w]."""
    methods: dict[str, Callable[[Condition, StreamNoise], torch.Tensor]] = {}
    for k in config.student_steps:
        methods[f"student_{k}"] = (
            lambda c, n, k=k: student_sample(models.student, c, n, models.schedules[k]))
    for k in config.teacher_steps:
        methods[f"teacher_{k}"] = lambda c, n, k=k: teacher_ddim(models.teacher, c, n, k)
    for t0 in config.reference_starts:
        schedule = uniform_schedule(DEFAULT_STEPS, t0, start="reference")
        methods[f"student_{DEFAULT_STEPS}_reference_t{t0:g}"] = (
            lambda c, n, s=schedule: student_sample(models.student, c, n, s))
    return methods


def _decode(models: EvalModels, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return models.autoencoder.decode(z.clamp(-LATENT_LIMIT, LATENT_LIMIT)).clamp(-1, 1)


def evaluate(models: EvalModels, clips: list[EvalClip], config: EvalConfig,
             references: dict[str, torch.Tensor]) -> dict:
    """``references``: a reference image per held-out speaker, for the cross-identity test."""
    methods = _methods(models, config)
    per_method: dict[str, list[dict]] = {name: [] for name in methods}
    per_method["reconstruction"], per_method["ground_truth"] = [], []
    table1: dict[tuple[float, str], list[dict]] = {}
    cross: list[dict[str, float]] = []
    reads: dict[str, list[np.ndarray]] = {name: [] for name in per_method}
    seconds: dict[str, float] = dict.fromkeys(methods, 0.0)
    frames_total = 0
    for index, clip in enumerate(tqdm(clips, desc="eval", unit="clip")):
        windows = viseme_context(clip, models.viseme_context)
        cond = condition(models.autoencoder, models.identity, clip.frames, clip.reference,
                         windows)
        noise = StreamNoise.draw(tuple(cond.z0.shape[2:]), config.seed * 100003 + index)
        recon = _decode(models, cond.z0[0])
        per_method["ground_truth"].append(
            _truth_scores(models, clip.frames, clip, reads["ground_truth"]))
        if clip.held is not None:
            per_method.setdefault("held_truth", []).append(
                _truth_scores(models, clip.held, clip, reads.setdefault("held_truth", [])))
        per_method["reconstruction"].append(
            image_scores(models, recon, clip, recon, reads["reconstruction"]))
        for name, generate in methods.items():
            began = time.perf_counter()
            images = _decode(models, generate(cond, noise))
            seconds[name] += time.perf_counter() - began
            per_method[name].append(image_scores(models, images, clip, recon, reads[name]))
        frames_total += len(clip.frames)
        for t in config.table1_times:
            for kind, model in (("noisy", None), ("teacher", models.teacher),
                                ("student", models.student)):
                images = _decode(models, one_step(kind, model, cond, noise, t))
                table1.setdefault((t, kind), []).append({
                    "psnr_vs_ae": metrics.psnr_db(images, recon),
                    "temporal_l1": metrics.temporal_l1(images),
                    "flicker_std": metrics.flicker_std(images)})
        cross.append(_cross_identity(models, clip, references, noise, windows))
    results = {name: _mean(rows) for name, rows in per_method.items()}
    for name in methods:
        results[name]["ms_per_frame_host"] = 1000 * seconds[name] / frames_total
    return {
        "methods": results,
        "table1": [{"t": t, "method": kind} | _mean(rows) for (t, kind), rows in table1.items()],
        "cross_identity": _cross_summary([c for c in cross if c]),
        "motion_by_speaker": _motion_by_speaker(clips, per_method),
        "lipread_by_viseme": _lipread_by_viseme(clips, reads),
    }


def _lipread_by_viseme(clips: list[EvalClip], reads: dict[str, list[np.ndarray]]) -> dict:
    """Per method, the share of each viseme's frames (pooled over the clips) that the lip
    reader reads as that viseme; which visemes a method loses against the reconstruction."""
    if not any(reads.values()):
        return {}
    truth = np.concatenate([clip.visemes.numpy() for clip in clips])
    counts = {VISEMES[c]: int(n) for c, n in enumerate(np.bincount(truth)) if n}
    return {"frames": counts} | {name: viseme_recalls(np.concatenate(rows), truth)
                                 for name, rows in reads.items() if rows}


def _motion_by_speaker(clips: list[EvalClip], per_method: dict[str, list[dict]]) -> dict:
    """Student 2-step temporal L1 and flicker std over the truth's, per held-out speaker: the
    mean ratios of the temporal bars can hide one face animated too little and another too
    much (docs/decisions.md, "Motion per speaker on all 12 test clips")."""
    if "student_2" not in per_method:
        return {}
    held = len(per_method.get("held_truth", [])) == len(clips)
    truth = "held_truth" if held else "ground_truth"
    out = {}
    for speaker in sorted({c.speaker for c in clips}):
        index = [i for i, c in enumerate(clips) if c.speaker == speaker]
        made = _mean([per_method["student_2"][i] for i in index])
        real = _mean([per_method[truth][i] for i in index])
        out[speaker] = {"clips": len(index), "truth": truth} | {
            f"{key}_ratio": motion_ratio(made, real, key) for key in MOTION_KEYS}
    return out


MOTION_KEYS = ("temporal_l1", "flicker_std")
"""The metrics of the temporal bars, each compared with a truth's as a ratio."""


def motion_ratio(made: dict[str, float], truth: dict[str, float], key: str) -> float:
    """Generated over true motion for one of MOTION_KEYS (1 = moves as much as the truth)."""
    return made[key] / max(truth[key], 1e-9)


def _cross_identity(models: EvalModels, clip: EvalClip, references: dict[str, torch.Tensor],
                    noise: StreamNoise, windows: torch.Tensor) -> dict[str, float]:
    """Drive another speaker's reference with this clip's visemes (student, default steps):
    the output should look like the reference's speaker, not like this clip's."""
    others = sorted(s for s in references if s != clip.speaker)
    if not others:
        return {}
    other = references[others[0]]
    cond = condition(models.autoencoder, models.identity, clip.frames, other, windows)
    images = _decode(models, student_sample(models.student, cond, noise,
                                            models.schedules[DEFAULT_STEPS]))
    with torch.no_grad():
        out = models.identity(images)
        to_reference = float(metrics.cosine(out, models.identity(other[None])).mean())
        to_driving = float(metrics.cosine(out, models.identity(clip.reference[None])).mean())
    return {"cosine_reference": to_reference, "cosine_driving": to_driving}


def _cross_summary(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {}
    closer = [r["cosine_reference"] > r["cosine_driving"] for r in rows]
    return _mean(rows) | {"closer_to_reference": float(np.mean(closer)), "clips": len(rows)}


def macs(models: EvalModels, size: int) -> dict[str, float]:
    """Per-frame MACs at ``size`` x ``size``: one student step, one teacher step, decoder."""
    with torch.no_grad():
        image = torch.zeros(1, 3, size, size)
        latent = models.autoencoder.encode(image)
        ident = models.identity(image)
    level = torch.zeros(1)
    visemes = torch.zeros(1, 2 * models.viseme_context + 1, dtype=torch.long)
    student = count_macs(lambda: models.student(latent, level, latent, ident, visemes))
    teacher = count_macs(lambda: models.teacher(latent, level, latent, ident, visemes))
    decoder = count_macs(lambda: models.autoencoder.decode(latent))
    return {"student_step": student, "teacher_step": teacher, "decoder": decoder,
            "e1_frame_gflop": 2 * (DEFAULT_STEPS * student + decoder) / 1e9}


# --- bars, tables, plot -----------------------------------------------------------------------

TRUTH_NAMES = {
    "held_truth": "ground truth with pose and light held",
    "ground_truth": "ground truth as recorded",
}
"""The two truths the temporal bars compare with. The recorded synthetic clips sway the head
and drift the light independently of the audio; the held render keeps the reference's pose,
gaze, blink and light (only the mouth moves): all an audio-driven model can reproduce."""


def bars(report: dict) -> list[dict]:
    """The models issue's bars, each with its measured value and threshold."""
    m, rows = report["methods"], []
    teacher_steps = _most_teacher_steps(m)
    teacher = m[f"teacher_{teacher_steps}"]

    def bar(name: str, value: float | None, threshold: float, higher: bool) -> None:
        if value is None:
            return
        passed = value >= threshold if higher else value <= threshold
        rows.append({"bar": name, "value": value, "threshold": threshold,
                     "passed": bool(passed)})

    s2, s4 = m["student_2"], m["student_4"]
    bar(f"student 2-step PSNR minus teacher {teacher_steps}-step PSNR (dB)",
        s2["psnr"] - teacher["psnr"], -1.0, True)
    bar(f"student 4-step PSNR minus teacher {teacher_steps}-step PSNR (dB)",
        s4["psnr"] - teacher["psnr"], -0.5, True)
    if "lipread_accuracy" in s2:
        bar("lip-reading accuracy, student 2-step / reconstruction",
            s2["lipread_accuracy"] / max(m["reconstruction"]["lipread_accuracy"], 1e-9),
            0.85, True)
    for truth in ("held_truth", "ground_truth"):
        for key in MOTION_KEYS:
            if truth in m:
                bar(f"{key}, |student 2-step / {TRUTH_NAMES[truth]} - 1|",
                    abs(motion_ratio(s2, m[truth], key) - 1), 0.15, False)
    bar("identity cosine to the reference, student 2-step", s2["identity_cosine"], 0.9, True)
    bar("cross-identity: share of clips closer to the reference identity",
        report["cross_identity"].get("closer_to_reference"), 0.95, True)
    macs_ = report["macs"]
    bar("student step MACs / teacher step MACs", macs_["student_step"] / macs_["teacher_step"],
        0.25, False)
    bar("E1 frame at 2 steps (student x2 + decoder), GFLOP", macs_["e1_frame_gflop"], 0.6, False)
    return rows


FRONTIER_METRICS = ("psnr", "psnr_held", "mouth_psnr", "psnr_vs_ae", "lipread_accuracy",
                    "mouth_open_r", "temporal_l1", "temporal_l1_outside_mouth", "flicker_std",
                    "identity_cosine", "lse_d", "ms_per_frame_host")


def _steps_of(name: str, family: str) -> int | None:
    parts = name.split("_")
    return int(parts[1]) if parts[0] == family and len(parts) == 2 else None


def _most_teacher_steps(methods: dict) -> int:
    """The teacher's largest step count among the methods (the bars' reference teacher)."""
    return max(k for k in map(lambda n: _steps_of(n, "teacher"), methods) if k)


def markdown(report: dict) -> str:
    m = report["methods"]
    cols = [c for c in FRONTIER_METRICS if any(c in row for row in m.values())]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in m.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{row[c]:.4g}" if c in row else "" for c in cols) + " |")
    lines += ["", "| t | method | psnr_vs_ae | temporal_l1 | flicker_std |", "|---" * 5 + "|"]
    for row in report["table1"]:
        lines.append(f"| {row['t']:g} | {row['method']} | {row['psnr_vs_ae']:.4g} | "
                     f"{row['temporal_l1']:.4g} | {row['flicker_std']:.4g} |")
    lines += ["", "| speaker | clips | truth | student 2-step temporal_l1 / truth | "
              "flicker_std / truth |", "|---" * 5 + "|"]
    for speaker, row in report.get("motion_by_speaker", {}).items():
        lines.append(f"| {speaker} | {row['clips']} | {row['truth']} | "
                     f"{row['temporal_l1_ratio']:.3g} | {row['flicker_std_ratio']:.3g} |")
    lines += _lipread_table(report.get("lipread_by_viseme", {}), m)
    lines += ["", "| bar | value | threshold | passed |", "|---|---|---|---|"]
    for row in report["bars"]:
        lines.append(f"| {row['bar']} | {row['value']:.4g} | {row['threshold']:g} | "
                     f"{'yes' if row['passed'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def _lipread_table(by_viseme: dict, methods: dict) -> list[str]:
    """Lip-reading recall per viseme: the truth, the reconstruction, the student at the
    default steps and the teacher at its most steps."""
    if not by_viseme:
        return []
    teacher = _most_teacher_steps(methods)
    cols = [c for c in ("held_truth", "ground_truth", "reconstruction",
                        f"student_{DEFAULT_STEPS}", f"teacher_{teacher}") if c in by_viseme]
    lines = ["", "| viseme | frames | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for viseme, count in by_viseme["frames"].items():
        lines.append(f"| {viseme} | {count} | "
                     + " | ".join(f"{by_viseme[c][viseme]:.2f}" for c in cols) + " |")
    return lines


def plot_frontier(report: dict, png: Path) -> None:
    """One panel per metric: student and teacher against step count; the reconstruction and
    ground truth as horizontal references."""
    m = report["methods"]

    def draw(ax, metric: str) -> None:
        for family, marker in (("student", "o"), ("teacher", "s")):
            points = sorted((_steps_of(k, family), v[metric]) for k, v in m.items()
                            if _steps_of(k, family) and metric in v)
            if points:
                ax.plot(*zip(*points), marker=marker, label=family)
        for ref, style in (("reconstruction", "--"), ("ground_truth", ":"), ("held_truth", "-.")):
            if metric in m.get(ref, {}):
                ax.axhline(m[ref][metric], linestyle=style, color="grey", label=ref)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("steps")
        ax.set_title(metric)
        ax.legend(fontsize=7)

    save_panels(png, [c for c in FRONTIER_METRICS if c in m.get("student_2", {})], draw)


def run_eval(student: Path, manifest: Manifest, out: Path, config: EvalConfig,
             sync: Path | None = None, lipread: Path | None = None,
             autoencoder: str | None = None) -> dict:
    """Evaluate and write out/report.json, out/report.md and out/frontier.png."""
    models = load_models(student, sync, lipread, config.student_steps, autoencoder)
    clips = load_clips(manifest, config.split, config.max_clips, config.max_frames)
    size = int(clips[0].frames.shape[-1])
    if any(int(c.frames.shape[-1]) != size for c in clips):
        raise UserError(f"{manifest.path}: clips of different sizes in split {config.split}")
    if len({c.held is None for c in clips}) > 1:
        raise UserError(f"{manifest.path}: field 'held_frames': some {config.split} clips have "
                        "it and some do not; run tsd data synth again on the dataset so that "
                        "all do")
    started = time.perf_counter()
    report = {"data": str(manifest.path), "split": config.split,
              "clips": [c.id for c in clips], "frames": sum(len(c.frames) for c in clips),
              "models": models.paths,
              "schedules": {k: s.to_dict() for k, s in models.schedules.items()},
              "macs": macs(models, size)}
    report |= evaluate(models, clips, config, speaker_references(manifest))
    starts = {k: v["psnr"] for k, v in report["methods"].items() if "_reference_t" in k}
    starts[f"student_{DEFAULT_STEPS}"] = report["methods"][f"student_{DEFAULT_STEPS}"]["psnr"]
    report["inference_start"] = {"psnr": starts, "best": max(starts, key=starts.get)}
    report["bars"] = bars(report)
    report["seconds"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "report.json", json.dumps(report, indent=2))
    write_text(out / "report.md", markdown(report))
    plot_frontier(report, out / "frontier.png")
    return report
