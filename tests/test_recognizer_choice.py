"""The viseme recogniser edge-run runs by default, and what it says when one cannot load."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from edge_runtime.visemes.sphinx import PocketsphinxRecognizer

ROOT = Path(__file__).resolve().parents[1]


def test_edge_run_prefers_pocketsphinx_and_says_what_runs_without_it(monkeypatch, caplog):
    from edge_runtime.bundle import load_bundle
    from edge_runtime.cli import _recognizer

    bundle, root = load_bundle(ROOT / "bundles" / "demo")
    with caplog.at_level(logging.INFO, logger="edge-run"):
        chosen = _recognizer("auto", bundle, root, "onnxruntime", "fp32", 1)
    assert isinstance(chosen, PocketsphinxRecognizer)
    assert "pocketsphinx" in caplog.text and "160 ms" in caplog.text
    caplog.clear()
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # not installed
    with caplog.at_level(logging.INFO, logger="edge-run"):
        fallback = _recognizer("pocketsphinx", bundle, root, "onnxruntime", "fp32", 1)
    assert not isinstance(fallback, PocketsphinxRecognizer)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "pip install pocketsphinx" in warnings[0] and "instead" in warnings[0]
