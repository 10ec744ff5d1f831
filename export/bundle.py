"""``tsd export``: checkpoints -> a bundle folder (graphs per variant + bundle.yaml).

Every graph is exported to ONNX fp32 and checked against torch on real inputs captured from
the pipeline on held-out clips; the same captured inputs calibrate the int8 graphs. The
folder is assembled under a temporary name and renamed into place, so a failed export never
leaves a half-written bundle where a device would load it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

from calibration.capture import Captured, capture, capture_visemes
from edge_runtime.audio.features import MelConfig
from edge_runtime.backends import OnnxSession, TFLiteSession
from edge_runtime.bundle import (
    NOTICE,
    SCHEMA_VERSION,
    VARIANTS,
    Bundle,
    GraphSpec,
    LatentSpec,
    RecognizerSpec,
    generate_graph,
    sha256_file,
    write_bundle_yaml,
)
from edge_runtime.face.detect import framing_margin
from edge_runtime.render.schedule import StepSchedule, uniform_schedule
from edge_runtime.visemes.vocabulary import VISEMES
from export import macs
from export.face_graphs import add_face_graphs
from export.graphs import (
    DecoderGraph,
    GenerateGraph,
    GraphDef,
    ReferenceGraph,
    StepGraph,
)
from export.onnx_export import export_onnx, parity
from export.quantize import quantize_onnx
from export.tflite_export import export_tflite, quantize_tflite
from export.tflite_export import parity as tflite_parity
from training.config import Lrs3Config, to_dict
from training.data.landmarks import FaceGraphError, face_template, landmarker_from_cache
from training.data.manifest import Manifest
from training.data.media import read_frame
from training.models.loading import load_autoencoder, load_frozen, read_checkpoint

log = logging.getLogger(__name__)

STEP_COUNTS = (1, 2, 4, 8)
PARITY_SAMPLES = 8
OUTPUTS = {"reference": ("ref_latent", "identity"), "step": ("x0",), "decoder": ("frame",),
           "visemes": ("logits",)}


def _graph_defs(student: torch.nn.Module, autoencoder, identity,
                schedules: dict[int, StepSchedule], unrolled: tuple[int, ...]
                ) -> dict[str, torch.nn.Module]:
    """The device graphs; generate_K only for K in ``unrolled`` (the runtime runs any other
    step count as K calls of ``step``)."""
    graphs = {"reference": ReferenceGraph(autoencoder, identity), "step": StepGraph(student),
              "decoder": DecoderGraph(autoencoder)}
    for k in unrolled:
        graphs[generate_graph(k)] = GenerateGraph(student, schedules[k])
    return graphs


def _torch_inputs(sample: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in sample.items()}


def _onnx_spec(path: Path, root: Path, precision: str, counted: dict[str, int]) -> GraphSpec:
    """I/O as onnxruntime reports it; MACs and parameters counted on the fp32 graph."""
    session = OnnxSession(path, threads=1)
    return GraphSpec(file=str(path.relative_to(root)), sha256=sha256_file(path),
                     inputs=tuple(session.inputs), outputs=tuple(session.outputs),
                     precision=precision, macs=counted["macs"], params=counted["params"])


def _tflite_spec(path: Path, root: Path, precision: str, graph: GraphDef,
                 counted: dict[str, int]) -> GraphSpec:
    """I/O as the interpreter reports it (quantized tensors in their float interface)."""
    session = TFLiteSession(path, 1, list(graph.inputs), list(graph.outputs))
    return GraphSpec(file=str(path.relative_to(root)), sha256=sha256_file(path),
                     inputs=tuple(session.inputs), outputs=tuple(session.outputs),
                     precision=precision, macs=counted["macs"], params=counted["params"])


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _provenance(student_path: Path, state: dict, manifest: Manifest) -> dict[str, str]:
    config = json.dumps(state["config"], sort_keys=True).encode()
    return {"git_commit": _git_commit(), "student": str(student_path),
            "config_sha256": hashlib.sha256(config).hexdigest(),
            "dataset": str(manifest.path), "dataset_sha256": sha256_file(manifest.path),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def trained_on(checkpoint: Path) -> tuple[str, ...]:
    """What a recogniser checkpoint says it was trained on (tsd train's ``data``)."""
    return tuple(read_checkpoint(checkpoint, "viseme recognizer").get("data") or ())


def export_bundle(student_path: Path, manifest: Manifest, out: Path, name: str | None = None,
                  autoencoder_path: str | None = None, identity_path: str | None = None,
                  variants: tuple[str, ...] = VARIANTS, calibration_clips: int = 4,
                  frames_per_clip: int = 8, visemes_path: Path | None = None,
                  unrolled: tuple[int, ...] = STEP_COUNTS, face_graphs: bool = True) -> Bundle:
    """Export the student (with the autoencoder and identity encoder its config names, or
    the given ones) and optionally the audio viseme recogniser to a bundle at ``out``;
    ``unrolled``: the step counts that get a generate_K graph; ``face_graphs``: add
    MediaPipe's face graphs and the training frames' face template (export.face_graphs)."""
    from calibration.schedules import load_student

    state, config, student = load_student(student_path)
    autoencoder = load_autoencoder(config.autoencoder, autoencoder_path)
    identity = load_frozen(identity_path or config.identity_encoder, "identity encoder")
    stored = {int(k): StepSchedule.from_dict(v) for k, v in state.get("schedules", {}).items()}
    if not stored:
        log.warning("%s has no calibrated schedules (tsd calibrate schedules); exporting "
                    "uniform ones", student_path)
    schedules = {k: stored.get(k, uniform_schedule(k)) for k in STEP_COUNTS}
    modules = _graph_defs(student.eval(), autoencoder, identity, schedules, unrolled)
    captured = capture(manifest, modules["reference"], modules["step"], schedules,
                       clips=calibration_clips, frames_per_clip=frames_per_clip)
    recognizer, audio = None, MelConfig()
    if visemes_path is not None:
        model = load_frozen(visemes_path, "viseme recognizer")
        modules["visemes"] = model
        captured.samples["visemes"] = capture_visemes(manifest, model.config,
                                                      clips=calibration_clips)
        recognizer = RecognizerSpec(model.config.context, model.config.lookahead,
                                    trained_on(visemes_path))
        audio = MelConfig(floor=model.config.mel_floor)

    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    specs, errors, recipes = export_graphs(modules, captured, staging, variants)
    if "onnx-fp32" not in variants:
        shutil.rmtree(staging / "onnx" / "fp32")
    if "tflite-fp32" not in variants and (staging / "tflite" / "fp32").exists():
        shutil.rmtree(staging / "tflite" / "fp32")

    latent_shape = captured.samples["decoder"][0]["latent"].shape
    bundle = Bundle(
        schema_version=SCHEMA_VERSION, name=name or out.name, notice=NOTICE,
        resolution=int(captured.samples["reference"][0]["image"].shape[0]),
        fps=manifest.clips[0].fps,
        latent=LatentSpec(channels=int(latent_shape[1]), size=int(latent_shape[2]),
                          scale=float(autoencoder.latent_scale)),
        visemes=VISEMES, viseme_context=student.config.viseme_window // 2,
        audio=audio, schedules=schedules, variants=specs,
        provenance=_provenance(student_path, state, manifest), recognizer=recognizer,
        face_margin=_face_margin(manifest),
        evaluation={"parity_max_abs_error_vs_torch": errors, "tflite_int8": recipes,
                    "student_config": to_dict(config.model)})
    write_bundle_yaml(bundle, staging)
    if face_graphs:
        bundle = with_face_graphs(bundle, staging, manifest)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return bundle


def export_graphs(modules: dict[str, torch.nn.Module], captured: Captured, root: Path,
                  variants: tuple[str, ...]
                  ) -> tuple[dict[str, dict[str, GraphSpec]], dict[str, dict[str, float]],
                             dict[str, dict]]:
    """Each module as a graph of every variant under ``root`` (onnx/, tflite/), checked against
    torch on its captured inputs, which also calibrate the int8 graphs -> (specs per variant,
    parity errors per variant, TFLite int8 recipes)."""
    specs: dict[str, dict[str, GraphSpec]] = {v: {} for v in variants}
    errors: dict[str, dict[str, float]] = {}
    recipes: dict[str, dict] = {}
    for graph_name, module in modules.items():
        graph = _graph(graph_name, module, captured)
        samples = captured.samples[graph_name]
        checks = [_torch_inputs(s) for s in samples[:PARITY_SAMPLES]]
        fp32 = export_onnx(graph, root / "onnx" / "fp32" / f"{graph_name}.onnx")
        errors.setdefault("onnx-fp32", {})[graph_name] = parity(graph, fp32, checks)
        counted = macs.count(fp32)
        if "onnx-fp32" in specs:
            specs["onnx-fp32"][graph_name] = _onnx_spec(fp32, root, "fp32", counted)
        if "onnx-int8" in specs:
            q = quantize_onnx(fp32, root / "onnx" / "int8" / f"{graph_name}.onnx", samples)
            specs["onnx-int8"][graph_name] = _onnx_spec(q, root, "int8", counted)
        if "tflite-fp32" in specs or "tflite-int8" in specs:
            t32 = export_tflite(graph, root / "tflite" / "fp32" / f"{graph_name}.tflite")
            errors.setdefault("tflite-fp32", {})[graph_name] = tflite_parity(graph, t32, checks)
            if "tflite-fp32" in specs:
                specs["tflite-fp32"][graph_name] = _tflite_spec(t32, root, "fp32", graph,
                                                                counted)
            if "tflite-int8" in specs:
                tq = quantize_tflite(t32, root / "tflite" / "int8" / f"{graph_name}.tflite",
                                     samples, graph.outputs)
                recipes[graph_name] = {"recipe": tq.recipe, "snr_db": round(tq.snr_db, 2)}
                specs["tflite-int8"][graph_name] = _tflite_spec(tq.path, root, "int8",
                                                                graph, counted)
        log.info("%s: exported (%s)", graph_name, ", ".join(sorted(specs)))
    return specs, errors, recipes


def training_frames(manifest: Manifest, clips: int = 48) -> list[np.ndarray]:
    """The middle frame of up to ``clips`` training clips: what the model learnt faces as."""
    return [read_frame(manifest.resolve(c.frames), c.frame_count // 2)
            for c in manifest.split("train")[:clips]]


def with_face_graphs(bundle: Bundle, root: Path, manifest: Manifest) -> Bundle:
    """The bundle at ``root`` with MediaPipe's face graphs and the template measured on the
    manifest's training frames; BundleError when no face is found in them."""
    template = face_template(training_frames(manifest), landmarker_from_cache())
    if template is None:
        raise FaceGraphError("no face found in the training frames by the face graphs; export "
                             "with --no-face-graphs (reference photos then use Haar crops)")
    return add_face_graphs(bundle, root, template)


def _face_margin(manifest: Manifest) -> float:
    """How the training frames frame the face, so reference photos are cropped alike by the
    Haar fallback; the LRS3 default when no face is found."""
    margin = framing_margin(training_frames(manifest))
    if margin is None:
        log.warning("no face found in the training frames; reference crops use margin %.2f",
                    Lrs3Config.face_margin)
        return Lrs3Config.face_margin
    return round(margin, 3)


def _graph(name: str, module: torch.nn.Module, captured: Captured) -> GraphDef:
    """The graph with its first captured real input as the export example."""
    example = _torch_inputs(captured.samples[name][0])
    outputs = OUTPUTS.get(name, ("x0",))
    return GraphDef(name, module, example, outputs)
