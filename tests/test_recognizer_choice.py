"""The viseme recogniser edge-run runs by default, and what it says when one cannot load."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from edge_runtime.visemes.fusion import FusedRecognizer
from edge_runtime.visemes.sphinx import PocketsphinxRecognizer
from edge_runtime.visemes.stream import LearnedRecognizer

ROOT = Path(__file__).resolve().parents[1]


def test_edge_run_fuses_by_default_and_says_what_runs_without_pocketsphinx(monkeypatch,
                                                                            caplog):
    from edge_runtime.bundle import load_bundle
    from edge_runtime.cli import _recognizer

    bundle, root = load_bundle(ROOT / "bundles" / "demo")
    with caplog.at_level(logging.INFO, logger="edge-run"):
        chosen = _recognizer("auto", bundle, root, "onnxruntime", "fp32", 1)
    assert isinstance(chosen, FusedRecognizer)
    assert "fused with pocketsphinx" in caplog.text and "160 ms" in caplog.text
    caplog.clear()
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # not installed
    for spec in ("auto", "pocketsphinx"):
        with caplog.at_level(logging.INFO, logger="edge-run"):
            fallback = _recognizer(spec, bundle, root, "onnxruntime", "fp32", 1)
        assert isinstance(fallback, LearnedRecognizer), spec
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, spec
        assert "pip install pocketsphinx" in warnings[0] and "instead" in warnings[0]
        caplog.clear()


def test_a_bundle_without_a_fusion_weight_gets_pocketsphinx(caplog):
    import dataclasses

    from edge_runtime.bundle import load_bundle
    from edge_runtime.cli import _recognizer

    bundle, root = load_bundle(ROOT / "bundles" / "demo")
    unmeasured = dataclasses.replace(
        bundle, recognizer=dataclasses.replace(bundle.recognizer, pocketsphinx_weight=None))
    with caplog.at_level(logging.INFO, logger="edge-run"):
        chosen = _recognizer("auto", unmeasured, root, "onnxruntime", "fp32", 1)
    assert isinstance(chosen, PocketsphinxRecognizer)
    assert "pocketsphinx phone recognition" in caplog.text
