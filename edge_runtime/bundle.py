"""The bundle: the contract between the host (tsd export) and the device (edge-run).

A folder with ``bundle.yaml`` and graph files per variant::

    bundle.yaml
    onnx/fp32/{reference,step,generate_1,...,decoder}.onnx
    onnx/int8/...          (static QDQ)
    tflite/fp32/...        (where exported)
    tflite/int8/...
    face/{face_detection_short_range,face_landmark}.tflite, LICENSE.mediapipe   (optional)

``load_bundle`` validates the schema version, every key and type, the viseme vocabulary and
every file's sha256, and refuses a bad bundle with one line that says what is wrong.
``check_io`` compares a graph's declared inputs/outputs with what a backend session reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_runtime.audio.features import SAMPLE_RATE, MelConfig
from edge_runtime.dataio import DataError, from_dict, read_yaml, to_dict
from edge_runtime.render.schedule import StepSchedule
from edge_runtime.visemes.vocabulary import VISEMES

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 2 added the optional face graphs; a version 1 bundle is one without them."""
BUNDLE_FILE = "bundle.yaml"
NOTICE = ("The frames this model produces are synthetic media: a machine-generated face "
          "animated from audio. Do not present them as real footage of a person, and do not "
          "animate a person's photo without their consent.")
VARIANTS = ("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8")
DTYPES = ("float32", "uint8", "int32", "int64")
REQUIRED_GRAPHS = ("reference", "step", "decoder")
GRAPH_KINDS = ("reference", "generate", "decoder", "visemes")
"""What precision plans address; ``generate`` covers the step and generate_K graphs."""


def generate_graph(steps: int) -> str:
    """Name of the unrolled K-step sampler graph (optional: without it the runtime calls the
    step graph K times)."""
    return f"generate_{steps}"


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the bundle and what is wrong."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str
    """One of DTYPES."""


@dataclass(frozen=True)
class GraphSpec:
    file: str
    """Path relative to the bundle folder."""
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    precision: str
    """fp32, int8 (static QDQ / full-integer) or int8-dynamic (weights only)."""
    macs: int
    """Multiply-accumulates of one call (counted on the graph file itself)."""
    params: int


@dataclass(frozen=True)
class LatentSpec:
    channels: int
    size: int
    """Latent grid is size x size."""
    scale: float
    """Latents are the autoencoder's raw latents times this (about unit variance)."""


@dataclass(frozen=True)
class RecognizerSpec:
    """How the ``visemes`` graph windows the log-mel stream."""

    context: int
    """Log-mel frames (10 ms) before the video frame's own 4."""
    lookahead: int
    """Log-mel frames after them: the recogniser's look-ahead."""
    trained_on: tuple[str, ...] = ()
    """What the recogniser learnt from, one line per source (datasets, speech sets, voices)."""
    pocketsphinx_weight: float | None = None
    """Weight of pocketsphinx's viseme when fused with this recogniser (``--visemes fused``,
    edge_runtime.visemes.fusion), measured on held-out speech; None: never measured."""

    @property
    def window(self) -> int:
        return self.context + 4 + self.lookahead


@dataclass(frozen=True)
class FaceGraphs:
    """MediaPipe's face detection and 468-point landmark graphs (run by LiteRT) that find,
    align and paste back the face of a reference photo (edge_runtime.face)."""

    detector: GraphSpec
    """face_detection_short_range: [1, 128, 128, 3] in [-1, 1] -> 896 boxes and scores."""
    landmarks: GraphSpec
    """face_landmark: [1, 192, 192, 3] in [0, 1] -> 468 x 3 points and a face score."""
    template: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    """Where the training frames put the subject's right eye, left eye and mouth (fractions
    of the frame side; edge_runtime.face.align.POINTS), measured on them at export."""
    licence: str
    """The graphs' licence notice, relative to the bundle folder."""
    source: str
    """Where the graphs come from (package, version, licence)."""


@dataclass(frozen=True)
class Bundle:
    schema_version: int
    name: str
    notice: str
    resolution: int
    """Frames are resolution x resolution RGB."""
    fps: int
    latent: LatentSpec
    visemes: tuple[str, ...]
    """Viseme vocabulary, in token order (must equal edge_runtime.visemes.vocabulary.VISEMES)."""
    viseme_context: int
    """The step graphs see tokens t-context..t+context."""
    audio: MelConfig
    schedules: dict[int, StepSchedule]
    """Fixed schedule per step count (calibrated on held-out clips)."""
    variants: dict[str, dict[str, GraphSpec]]
    """variant (VARIANTS) -> graph name -> spec."""
    provenance: dict[str, str]
    """git commit, config hash, dataset, creation time."""
    evaluation: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Quality/latency measurements of the variants (written by the host)."""
    recognizer: RecognizerSpec | None = None
    """Present when the bundle has a ``visemes`` graph (tsd export --visemes)."""
    face_margin: float = 0.35
    """Margin around a detected face when cropping a reference photo: the framing of the
    training frames, measured on them at export (edge_runtime.face.detect.framing_margin).
    Used with OpenCV's Haar cascade when the bundle has no face graphs."""
    int8_plan: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    """backend (onnx, tflite) -> graph kind (GRAPH_KINDS) -> int8 or fp32:
    what ``--precision int8`` runs; graphs whose int8 version alone lost more than the
    budget stay fp32 (measured by tsd bundle-report)."""
    face: FaceGraphs | None = None
    """Landmark alignment and paste-back of real photos (tsd export adds them)."""

    def precision_of(self, backend: str, precision: str, kind: str) -> str:
        """The variant to run graph ``kind`` from for a backend and requested precision."""
        if precision == "int8":
            precision = self.int8_plan.get(backend, {}).get(kind, "int8")
        return f"{backend}-{precision}"

    def has_unrolled(self, variant: str, steps: int) -> bool:
        """Whether ``variant`` ships the unrolled sampler graph for ``steps``."""
        return generate_graph(steps) in self.variants.get(variant, {})

    def graph(self, variant: str, name: str) -> GraphSpec:
        try:
            return self.variants[variant][name]
        except KeyError:
            have = ", ".join(sorted(self.variants.get(variant, {}))) or "none"
            raise BundleError(f"bundle {self.name!r} has no graph {name!r} in variant "
                              f"{variant!r} (graphs: {have})") from None

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _parse(data: Any, source: str) -> Bundle:
    if not isinstance(data, dict):
        raise BundleError(f"{source}: expected a mapping at the top level")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise BundleError(f"{source}: unknown schema version {version!r} (this runtime reads "
                          f"versions {list(READABLE_VERSIONS)}); re-export the bundle or "
                          "update edge-run")
    try:
        return from_dict(Bundle, data, source)
    except DataError as exc:
        raise BundleError(str(exc)) from None
    except (ValueError, TypeError) as exc:  # e.g. a schedule that is not decreasing
        raise BundleError(f"{source}: {exc}") from None


def _check_file(spec: GraphSpec, root: Path, where: str, verify_files: bool) -> None:
    for tensor in spec.inputs + spec.outputs:
        if tensor.dtype not in DTYPES:
            raise BundleError(f"{where}: tensor {tensor.name!r} has unknown dtype "
                              f"{tensor.dtype!r}")
    path = root / spec.file
    if not path.is_file():
        raise BundleError(f"{where}: graph file {spec.file} is missing")
    if verify_files and sha256_file(path) != spec.sha256:
        raise BundleError(f"{where}: checksum mismatch for {spec.file} (the file is "
                          "corrupt or was changed after export)")


def _check_face(face: FaceGraphs, root: Path, source: str, verify_files: bool) -> None:
    for name in ("detector", "landmarks"):
        _check_file(getattr(face, name), root, f"{source}: face/{name}", verify_files)
    if not (root / face.licence).is_file():
        raise BundleError(f"{source}: face.licence: {face.licence} is missing")
    points = [p for point in face.template for p in point]
    if not all(0 < p < 1 for p in points):
        raise BundleError(f"{source}: face.template: points must lie inside the frame "
                          f"(fractions in (0, 1)), got {face.template}")


MAX_FPS = 120
MAX_SIDE = 4096
"""Largest frame or latent side a bundle may declare (pixels)."""


def _ranges(bundle: Bundle) -> list[tuple[str, Any, bool, str]]:
    """(key, value, whether it is in range, the range) of every number a run divides by,
    allocates by or indexes with."""
    mel, latent, inf = bundle.audio, bundle.latent, float("inf")
    checks = [
        ("fps", bundle.fps, 1 <= bundle.fps <= MAX_FPS, f"1 to {MAX_FPS}"),
        ("resolution", bundle.resolution, 16 <= bundle.resolution <= MAX_SIDE,
         f"16 to {MAX_SIDE}"),
        ("viseme_context", bundle.viseme_context, 0 <= bundle.viseme_context <= bundle.fps,
         "0 to fps"),
        ("latent.channels", latent.channels, 1 <= latent.channels <= 1024, "1 to 1024"),
        ("latent.size", latent.size, 1 <= latent.size <= bundle.resolution,
         "1 to resolution"),
        ("latent.scale", latent.scale, 0 < latent.scale < inf, "above 0"),
        ("face_margin", bundle.face_margin, 0 <= bundle.face_margin <= 4, "0 to 4"),
        ("audio.sample_rate", mel.sample_rate, mel.sample_rate == SAMPLE_RATE,
         f"{SAMPLE_RATE}, the runtime's rate"),
        ("audio.win_length", mel.win_length, 1 <= mel.win_length <= mel.n_fft, "1 to n_fft"),
        ("audio.hop_length", mel.hop_length, 1 <= mel.hop_length <= mel.win_length,
         "1 to win_length"),
        ("audio.n_fft", mel.n_fft, 1 <= mel.n_fft <= SAMPLE_RATE, f"1 to {SAMPLE_RATE}"),
        ("audio.n_mels", mel.n_mels, 1 <= mel.n_mels <= mel.n_fft // 2, "1 to n_fft / 2"),
        ("audio.fmin", mel.fmin, 0 <= mel.fmin < mel.fmax, "0 to fmax"),
        ("audio.fmax", mel.fmax, mel.fmax <= mel.sample_rate / 2, "up to sample_rate / 2"),
        ("audio.floor", mel.floor, 0 < mel.floor < 1, "between 0 and 1"),
    ]
    if bundle.recognizer is not None:
        for key in ("context", "lookahead"):
            value = getattr(bundle.recognizer, key)
            checks.append((f"recognizer.{key}", value, 0 <= value <= 1000, "0 to 1000"))
    return checks


def _check_contents(bundle: Bundle, root: Path, source: str, verify_files: bool) -> None:
    for key, value, ok, expected in _ranges(bundle):
        if not ok:
            raise BundleError(f"{source}: {key}: {value!r} is out of range ({expected})")
    if tuple(bundle.visemes) != VISEMES:
        raise BundleError(f"{source}: viseme set {list(bundle.visemes)} differs from this "
                          f"runtime's {list(VISEMES)}")
    unknown = sorted(set(bundle.variants) - set(VARIANTS))
    if unknown:
        raise BundleError(f"{source}: unknown variant {unknown[0]!r} (known: "
                          f"{', '.join(VARIANTS)})")
    if not bundle.variants:
        raise BundleError(f"{source}: no graph variants")
    for variant, graphs in bundle.variants.items():
        for name in REQUIRED_GRAPHS:
            if name not in graphs:
                raise BundleError(f"{source}: variant {variant!r} lacks the {name!r} graph")
        for name, spec in graphs.items():
            _check_file(spec, root, f"{source}: {variant}/{name}", verify_files)
    if bundle.face is not None:
        _check_face(bundle.face, root, source, verify_files)
    for k in bundle.schedules:
        if k < 1:
            raise BundleError(f"{source}: schedule for {k} steps")
    for backend, graphs in bundle.int8_plan.items():
        for kind, precision in graphs.items():
            if precision not in ("int8", "fp32") or kind not in GRAPH_KINDS:
                raise BundleError(f"{source}: int8_plan.{backend}.{kind}: expected a graph "
                                  f"kind of {GRAPH_KINDS} mapped to int8 or fp32")


def load_bundle(folder: str | Path, verify_files: bool = True) -> tuple[Bundle, Path]:
    """-> (bundle, its folder). Raises BundleError with one line on any problem."""
    root = Path(folder)
    path = root / BUNDLE_FILE
    source = str(path)
    if not path.is_file():
        raise BundleError(f"{root}: not a bundle (no {BUNDLE_FILE})")
    try:
        data = read_yaml(path, "the bundle")
    except DataError as exc:
        raise BundleError(str(exc)) from None
    bundle = _parse(data, source)
    _check_contents(bundle, root, source, verify_files)
    return bundle, root


def check_io(spec: GraphSpec, inputs: list[TensorSpec], outputs: list[TensorSpec],
             where: str) -> None:
    """Refuse a graph whose session I/O differs from what the bundle declares."""
    for kind, declared, actual in (("input", spec.inputs, inputs),
                                   ("output", spec.outputs, outputs)):
        if [t.name for t in declared] != [t.name for t in actual]:
            raise BundleError(f"{where}: {kind}s are {[t.name for t in actual]}, the bundle "
                              f"declares {[t.name for t in declared]}")
        for want, have in zip(declared, actual):
            if tuple(want.shape) != tuple(have.shape) or want.dtype != have.dtype:
                raise BundleError(f"{where}: {kind} {want.name!r} is {have.dtype}"
                                  f"{list(have.shape)}, the bundle declares {want.dtype}"
                                  f"{list(want.shape)}")


def write_bundle_yaml(bundle: Bundle, root: Path) -> Path:
    """bundle.yaml (written atomically: a reader never sees half a file)."""
    path = root / BUNDLE_FILE
    tmp = root / f".{BUNDLE_FILE}.partial"
    tmp.write_text(yaml.safe_dump(bundle.to_dict(), sort_keys=False, width=100))
    tmp.replace(path)
    return path
