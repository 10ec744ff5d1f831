"""MediaPipe's face graphs for a bundle: copied into its face/ folder with MediaPipe's
licence and declared in bundle.yaml with the canonical face positions (``face.template``)
measured on the model's own training frames (training.data.landmarks fetches them).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from edge_runtime.backends import tflite_io
from edge_runtime.bundle import Bundle, FaceGraphs, GraphSpec, sha256_file, write_bundle_yaml
from edge_runtime.face.reference import open_landmarker
from export.macs import count_tflite
from training.data.landmarks import LICENCE, MEMBERS, SOURCE, fetch, graph_name

FACE_DIR = "face"


def _spec(path: Path, root: Path) -> GraphSpec:
    inputs, outputs = tflite_io(path)
    counted = count_tflite(path)
    return GraphSpec(file=str(path.relative_to(root)), sha256=sha256_file(path),
                     inputs=inputs, outputs=outputs, precision="fp16",
                     macs=counted["macs"], params=counted["params"])


def add_face_graphs(bundle: Bundle, root: Path, template: tuple[tuple[float, float], ...]
                    ) -> Bundle:
    """Copy the face graphs into ``root``/face/ and declare them (bundle.yaml rewritten
    atomically); -> the updated bundle."""
    graphs = fetch()
    folder = root / FACE_DIR
    folder.mkdir(exist_ok=True)
    for name in [graph_name(kind) for kind in MEMBERS] + [LICENCE]:
        shutil.copyfile(graphs / name, folder / name)
    face = FaceGraphs(
        detector=_spec(folder / graph_name("detector"), root),
        landmarks=_spec(folder / graph_name("landmarks"), root),
        template=template, licence=f"{FACE_DIR}/{LICENCE}", source=SOURCE)
    updated = replace(bundle, face=face)
    write_bundle_yaml(updated, root)
    open_landmarker(updated, root)  # the declared I/O matches what the graphs report
    return updated
