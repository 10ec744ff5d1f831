"""onnxsim against onnxslim on the demo bundle's graphs: nodes left and onnxruntime latency
(1 thread, median of interleaved runs) of each graph as torch exports it, through each
simplifier, and through both in turn. The models are the demo recipe's architectures
(configs/demo) with seeded random weights, which give the trained graphs' structure; the
inputs have the committed bundle's shapes and dtypes.

    .venv/bin/python -m bench.simplifiers [--runs 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from edge_runtime.bundle import Bundle, load_bundle
from export.bundle import OUTPUTS
from export.graphs import DecoderGraph, GraphDef, ReferenceGraph, StepGraph
from export.onnx_export import export_raw, simplified
from training.config import (
    AERunConfig,
    IdentityRunConfig,
    StudentRunConfig,
    VisemeRunConfig,
    load_config,
)
from training.models.autoencoder import Autoencoder
from training.models.denoiser import PREDICTION, Denoiser
from training.models.identity import IdentityEncoder
from training.models.visemes import N_MELS, VisemeRecognizer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "demo"
DTYPES = {"float32": np.float32, "uint8": np.uint8, "int32": np.int32, "int64": np.int64}


def modules() -> dict[str, torch.nn.Module]:
    """The demo bundle's device graphs."""
    torch.manual_seed(0)
    student = Denoiser(load_config(CONFIGS / "student.yaml", StudentRunConfig).model,
                       prediction=PREDICTION["student"])
    ae = Autoencoder(load_config(CONFIGS / "ae.yaml", AERunConfig).model)
    decoder = Autoencoder(load_config(CONFIGS / "decoder.yaml", AERunConfig).model)
    identity = IdentityEncoder(load_config(CONFIGS / "idenc.yaml", IdentityRunConfig).model)
    visemes = VisemeRecognizer(load_config(CONFIGS / "visemes.yaml", VisemeRunConfig).model)
    return {"reference": ReferenceGraph(ae, identity), "step": StepGraph(student),
            "decoder": DecoderGraph(decoder), "visemes": visemes}


def example_inputs(name: str, bundle: Bundle) -> dict[str, np.ndarray]:
    """Random inputs with ``bundle``'s shapes and dtypes for graph ``name`` (the recogniser's
    window from its config, which may be newer than the bundle's)."""
    rng = np.random.default_rng(0)
    if name == "visemes":
        window = load_config(CONFIGS / "visemes.yaml", VisemeRunConfig).model.window
        return {"mel": rng.standard_normal((1, window, N_MELS)).astype(np.float32)}
    inputs = {}
    for spec in bundle.variants["onnx-fp32"][name].inputs:
        dtype = DTYPES[spec.dtype]
        if np.issubdtype(dtype, np.integer):
            inputs[spec.name] = rng.integers(0, 15 if spec.name == "visemes" else 255,
                                             spec.shape).astype(dtype)
        else:
            inputs[spec.name] = rng.standard_normal(spec.shape).astype(dtype)
    return inputs


def latency_ms(models: dict[str, onnx.ModelProto], inputs: dict[str, np.ndarray],
               runs: int) -> dict[str, float]:
    """Median ms per run of each model, the models taking turns so load hits them alike."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {k: ort.InferenceSession(m.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])
                for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for key, session in sessions.items():
            start = time.perf_counter()
            session.run(None, inputs)
            times[key].append((time.perf_counter() - start) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300,
                        help="timed runs per graph and simplification (default 300)")
    args = parser.parse_args()
    print("| graph | nodes: exported / onnxsim / onnxslim / onnxsim+onnxslim | "
          "ms: exported / onnxsim / onnxslim / onnxsim+onnxslim |")
    print("|---|---|---|")
    bundle, _ = load_bundle(ROOT / "bundles" / "demo")
    for name, module in modules().items():
        inputs = example_inputs(name, bundle)
        graph = GraphDef(name, module, {k: torch.from_numpy(v) for k, v in inputs.items()},
                         OUTPUTS[name])
        raw = export_raw(graph)
        variants = {"exported": raw, "onnxsim": simplified(raw, "onnxsim"),
                    "onnxslim": simplified(raw, "onnxslim")}
        variants["both"] = simplified(variants["onnxsim"], "onnxslim")
        ms = latency_ms(variants, inputs, args.runs)
        nodes = " / ".join(str(len(m.graph.node)) for m in variants.values())
        print(f"| {name} | {nodes} | {' / '.join(f'{v:.3f}' for v in ms.values())} |",
              flush=True)


if __name__ == "__main__":
    main()
