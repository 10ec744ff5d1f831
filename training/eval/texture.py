"""How a bundle's autoencoder keeps a dataset's texture (``tsd eval-texture``): every frame of
a split through the bundle's reference encoder and its decoder (the round trip every
generated frame goes through), scored against the frame, and the held truth's mouth
darkness against the mouth model's opening. Run on the synthetic and the real-texture sets,
it measures the gap a model trained on synthetic faces has on real ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge_runtime.backends import open_graph
from edge_runtime.bundle import load_bundle
from training.atomic import write_text
from training.data.manifest import ClipRecord, Manifest, read_manifest
from training.data.media import read_frames
from training.errors import UserError


@dataclass(frozen=True)
class TextureReport:
    """One dataset's split through one bundle's autoencoder."""

    data: str
    split: str
    clips: int
    frames: int
    psnr: float
    """Mean per-frame PSNR (dB) of the round trip against the frame."""
    mouth_psnr: float
    """The same inside the mouth box."""
    mouth_sharpness: float
    """Laplacian variance of the round trip inside the mouth box over the frame's (1 = as
    sharp, mean over frames)."""
    darkness_r: float
    """Correlation of the held truth's mouth darkness (minus the luma of the inner half of
    the mouth box, less its clip mean) with the mouth model's opening over all frames:
    positive when the mouth darkens as it opens; NaN without mouth_params."""
    darkness_swing: float
    """Mean over clips of the held truth's mouth luma range (grey levels)."""
    round_trip_r: float
    """The same correlation on the round trip of the recorded frames."""
    round_trip_swing: float
    """The round trip's mouth luma range over the recorded frames' (mean over clips each)."""


def luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float64) @ (0.299, 0.587, 0.114)


def mouth_slices(box: np.ndarray, shape: tuple[int, int], share: float = 1.0
                 ) -> tuple[slice, slice]:
    """Rows and columns of a mouth box [4] (its central ``share`` of the side) in an image
    of ``shape`` (height, width), clipped to it."""
    x0, y0, x1, y1 = box
    half = share * (x1 - x0) / 2
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    lo = [int(np.clip(round(c - half), 0, n - 1)) for c, n in zip(centre, shape[::-1])]
    hi = [int(np.clip(round(c + half), 1, n)) for c, n in zip(centre, shape[::-1])]
    return slice(lo[1], hi[1]), slice(lo[0], hi[0])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(luma(image), cv2.CV_64F).var())


class RoundTrip:
    """The bundle's reference encoder (latent) and decoder, frame by frame."""

    def __init__(self, bundle_dir: Path, variant: str, threads: int):
        bundle, root = load_bundle(bundle_dir)
        self.encoder = open_graph(bundle, root, variant, "reference", threads)
        self.decoder = open_graph(bundle, root, variant, "decoder", threads)
        self.size = bundle.resolution

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        latent = self.encoder.run({self.encoder.inputs[0].name: frame})[0]
        return self.decoder.run({self.decoder.inputs[0].name: latent})[0]


def darkness(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[T] minus the mean luma of the inner half of each frame's mouth box."""
    return np.array([-frame[mouth_slices(box, frames.shape[1:3], 0.5)].mean()
                     for frame, box in zip(luma(frames), boxes)])


def _clip_scores(manifest: Manifest, clip: ClipRecord, model: RoundTrip) -> dict:
    frames = read_frames(manifest.resolve(clip.frames))
    boxes = np.load(manifest.resolve(clip.mouth_boxes))
    recons = np.stack([model(frame) for frame in frames])
    out: dict = {"psnr": [], "mouth_psnr": [], "sharpness": []}
    for frame, recon, box in zip(frames, recons, boxes):
        rows, cols = mouth_slices(box, (clip.size, clip.size))
        out["psnr"].append(_psnr(recon, frame))
        out["mouth_psnr"].append(_psnr(recon[rows, cols], frame[rows, cols]))
        out["sharpness"].append(sharpness(recon[rows, cols])
                                / max(sharpness(frame[rows, cols]), 1e-6))
    if clip.mouth_params and clip.held_frames and clip.held_mouth_boxes:
        curves = {"held": darkness(read_frames(manifest.resolve(clip.held_frames)),
                                    np.load(manifest.resolve(clip.held_mouth_boxes))),
                  "truth": darkness(frames, boxes), "round_trip": darkness(recons, boxes)}
        for name, curve in curves.items():
            out[f"{name}_swing"] = [float(np.ptp(curve))]
            out[name] = curve - curve.mean()  # faces differ in brightness
        out["opening"] = np.load(manifest.resolve(clip.mouth_params))[:, 0]
    return out


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 else float("nan")


def texture_report(data: Path, bundle_dir: Path, split: str, clips: int,
                   variant: str = "onnx-fp32", threads: int = 2) -> TextureReport:
    manifest = read_manifest(data)
    chosen = sorted(manifest.split(split), key=lambda c: c.id)[:clips]
    if not chosen:
        raise UserError(f"{manifest.path}: no {split} clips")
    model = RoundTrip(bundle_dir, variant, threads)
    if chosen[0].size != model.size:
        raise UserError(f"{manifest.path}: frames of {chosen[0].size} px, the bundle "
                        f"{bundle_dir} works at {model.size} px")
    scores = [_clip_scores(manifest, c, model)
              for c in tqdm(chosen, desc=f"round trip {data}", unit="clip")]
    keys = {k for s in scores for k in s}
    joined = {k: np.concatenate([s[k] for s in scores if k in s]) for k in keys}
    empty = np.array([])
    mean = {k: float(joined[k].mean()) if len(joined.get(k, empty)) else float("nan")
            for k in ("psnr", "mouth_psnr", "sharpness", "held_swing", "truth_swing",
                      "round_trip_swing")}
    opening = joined.get("opening", empty)
    return TextureReport(
        str(data), split, len(chosen), len(joined["psnr"]), mean["psnr"], mean["mouth_psnr"],
        mean["sharpness"], _correlation(joined.get("held", empty), opening),
        mean["held_swing"], _correlation(joined.get("round_trip", empty), opening),
        mean["round_trip_swing"] / mean["truth_swing"])


def write_reports(reports: list[TextureReport], out: Path) -> str:
    """OUT/texture.json and a markdown table (returned and written to OUT/texture.md)."""
    lines = ["| data | split | clips | frames | PSNR dB | mouth PSNR dB | mouth sharpness kept "
             "| held darkness r | held swing (grey) | round-trip darkness r | round-trip swing "
             "kept |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        lines.append(f"| {r.data} | {r.split} | {r.clips} | {r.frames} | {r.psnr:.2f} | "
                     f"{r.mouth_psnr:.2f} | {100 * r.mouth_sharpness:.0f}% | "
                     f"{r.darkness_r:.2f} | {r.darkness_swing:.1f} | {r.round_trip_r:.2f} | "
                     f"{100 * r.round_trip_swing:.0f}% |")
    table = "\n".join(lines) + "\n"
    write_text(out / "texture.json", json.dumps([asdict(r) for r in reports], indent=2))
    write_text(out / "texture.md", table)
    return table
