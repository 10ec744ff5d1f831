"""``tsd bundle-visemes``: put another viseme recogniser into an exported bundle.

The recogniser is trained on audio only, so it can change without the face models: its
``visemes`` graph is exported for every variant the bundle has (parity-checked against torch,
int8 calibrated on held-out speech), and bundle.yaml gets its window, its front end (the
log-mel floor) and what it was trained on. The new bundle is assembled in a copy and swapped
in, so a failure leaves the old one untouched. Its int8 plan runs the new graph in fp32 until
``tsd bundle-report`` measures the int8 one. The weight of pocketsphinx when fused with the
new recogniser (edge_runtime.visemes.fusion) is measured on the speech sets' held-out
utterances and stored with it.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np

from calibration.capture import Captured, visemes_samples
from edge_runtime.bundle import (
    Bundle,
    BundleError,
    RecognizerSpec,
    load_bundle,
    write_bundle_yaml,
)
from edge_runtime.visemes.sphinx import RecognizerUnavailable
from export.bundle import export_graphs, trained_on
from training.data.realspeech import read_speech_manifest
from training.errors import UserError
from training.eval.visemes import EvalSet, fusion_curve
from training.models.loading import load_frozen
from training.tasks.visemes import VAL_EVERY, held_out

log = logging.getLogger(__name__)

CALIBRATION_UTTERANCES = 8
"""Held-out utterances per speech set whose windows calibrate and check the graph (all of
them measure the weight of pocketsphinx in the fused recogniser)."""


def held_out_sets(speech: tuple[Path, ...]) -> list[EvalSet]:
    """The held-out utterances (never trained on) of each speech set."""
    sets = []
    for folder in speech:
        found = read_speech_manifest(folder)
        clips = tuple((c.id, *found.load(c)) for c in found.clips if held_out(c.id))
        if clips:
            kinds = "+".join(sorted({c.source for c in found.clips}))
            sets.append(EvalSet(f"{kinds}: {len(clips)} held-out utterances", clips))
    if not sets:
        raise UserError(f"no held-out utterances (one in {VAL_EVERY}) in the speech sets")
    return sets


def measure_fusion(bundle: Bundle, root: Path, sets: list[EvalSet]
                   ) -> tuple[float | None, dict[float, float]]:
    """-> (the weight of pocketsphinx that scores best when fused with the bundle's
    recogniser, accuracy per weight averaged over ``sets``); (None, {}) without pocketsphinx.
    Each set counts alike, not each frame: the one real speaker's prompts must not be
    outvoted by the synthetic voices' many more frames."""
    try:
        curves = [fusion_curve(bundle, root, [one]) for one in sets]
    except RecognizerUnavailable as exc:
        log.warning("%s: the fused recogniser's weight is not measured", exc)
        return None, {}
    curve = {w: float(np.mean([c[w] for c in curves])) for w in curves[0]}
    best = max(curve, key=lambda w: (curve[w], -w))
    return best, curve


def replace_recognizer(bundle_dir: Path, checkpoint: Path, speech: tuple[Path, ...]) -> Bundle:
    """The bundle at ``bundle_dir`` with the recogniser of ``checkpoint`` (a tsd train visemes
    final.pt); its graphs are calibrated on held-out utterances of the ``speech`` sets."""
    try:
        bundle, root = load_bundle(bundle_dir)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    model = load_frozen(checkpoint, "viseme recognizer")
    sets = held_out_sets(speech)
    captured = Captured()
    captured.samples["visemes"] = visemes_samples(
        [audio for s in sets for _, audio, _ in s.clips[:CALIBRATION_UTTERANCES]], model.config)
    staging = root.with_name(f".{root.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(root, staging)
    variants = tuple(bundle.variants)
    specs, errors, recipes = export_graphs({"visemes": model}, captured, staging, variants)
    evaluation = dict(bundle.evaluation)
    parity = dict(evaluation.get("parity_max_abs_error_vs_torch", {}))
    for variant, graphs in errors.items():
        parity[variant] = dict(parity.get(variant, {}), **graphs)
    evaluation["parity_max_abs_error_vs_torch"] = parity
    evaluation["tflite_int8"] = dict(evaluation.get("tflite_int8", {}), **recipes)
    plan = {backend: dict(graphs, visemes="fp32") for backend, graphs in
            bundle.int8_plan.items()}
    updated = dataclasses.replace(
        bundle, variants={v: dict(graphs, **specs[v]) for v, graphs in bundle.variants.items()},
        recognizer=RecognizerSpec(model.config.context, model.config.lookahead,
                                  trained_on(checkpoint)),
        audio=dataclasses.replace(bundle.audio, floor=model.config.mel_floor),
        int8_plan=plan)
    weight, curve = measure_fusion(updated, staging, sets)
    evaluation["fusion_accuracy_by_pocketsphinx_weight"] = {
        "sets": [s.name for s in sets], "accuracy": {str(w): round(a, 4) for w, a in
                                                     curve.items()}}
    updated = dataclasses.replace(updated, recognizer=dataclasses.replace(
        updated.recognizer, pocketsphinx_weight=weight), evaluation=evaluation)
    write_bundle_yaml(updated, staging)
    load_bundle(staging)  # every file and hash as declared
    old = root.with_name(f".{root.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    root.rename(old)
    staging.rename(root)
    shutil.rmtree(old)
    log.info("%s: recogniser from %s", root, checkpoint)
    return updated
