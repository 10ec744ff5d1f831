"""Calibration inputs for int8 quantization, captured from the real pipeline on held-out
clips: the device graphs (export.graphs, in torch) run exactly as the runtime runs them, and
every graph's inputs are recorded.

Per clip: the reference graph on the clip's reference photo; one stream noise; for a spread
of frames, the unrolled K-step sampler (generate_K) for every exported step count, with each
of its step-graph calls recorded, and the decoder on the resulting latent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from edge_runtime.bundle import generate_graph
from edge_runtime.render.schedule import StepSchedule
from export.graphs import STEP_INPUTS, GenerateGraph, ReferenceGraph, StepGraph, generate_inputs
from training.config import VisemeRecognizerConfig
from training.data.manifest import Manifest
from training.data.media import read_wav
from training.eval.clips import load_clips, select_clips, viseme_context
from training.tasks.visemes import mel_window

log = logging.getLogger(__name__)

Sample = dict[str, np.ndarray]


@dataclass
class Captured:
    """Input samples per graph name (``generate_K`` per step count)."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, graph: str, sample: dict[str, torch.Tensor]) -> None:
        self.samples.setdefault(graph, []).append(
            {k: v.detach().numpy().copy() for k, v in sample.items()})


def _uint8_image(image: torch.Tensor) -> torch.Tensor:
    """[3, H, W] in [-1, 1] -> uint8 [H, W, 3], as a photo would arrive."""
    return ((image.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def capture(manifest: Manifest, reference: ReferenceGraph, step: StepGraph,
            schedules: dict[int, StepSchedule], split: str = "val", clips: int = 4,
            frames_per_clip: int = 8, seed: int = 0) -> Captured:
    """-> inputs of reference, step, generate_K and decoder over ``clips`` held-out clips."""
    out = Captured()
    samplers = {k: GenerateGraph(step.student, s) for k, s in schedules.items()}
    for generate in samplers.values():  # every step call of the unrolled sampler
        generate.step.register_forward_pre_hook(
            lambda _, args: out.add("step", dict(zip(STEP_INPUTS, args))))
    for index, clip in enumerate(load_clips(manifest, split, clips, max_frames=10_000)):
        image = _uint8_image(clip.reference)
        out.add("reference", {"image": image})
        ref, ident = reference(image)
        generator = torch.Generator().manual_seed(seed * 7919 + index)
        noise = torch.randn(ref.shape, generator=generator)
        renoise = torch.randn((max(schedules), *ref.shape[1:]), generator=generator)
        windows = viseme_context(clip, step.student.config.viseme_window // 2)
        for frame in np.linspace(0, len(windows) - 1, frames_per_clip).round().astype(int):
            visemes = windows[frame:frame + 1].to(torch.int32)
            for k, generate in samplers.items():
                values = {"noise": noise, "renoise": renoise[:k - 1], "ref_latent": ref,
                          "identity": ident, "visemes": visemes}
                inputs = {name: values[name] for name in generate_inputs(k)}
                out.add(generate_graph(k), inputs)
                out.add("decoder", {"latent": generate(*inputs.values())})
    log.info("captured %s", {k: len(v) for k, v in out.samples.items()})
    return out


def capture_visemes(manifest: Manifest, cfg: VisemeRecognizerConfig, split: str = "val",
                    clips: int = 4, frames_per_clip: int = 32) -> list[Sample]:
    """Log-mel windows of the visemes graph over held-out clips (what the device computes);
    only each clip's audio is read."""
    return visemes_samples([read_wav(manifest.resolve(c.audio))[0]
                            for c in select_clips(manifest, split, clips)], cfg, frames_per_clip)


def visemes_samples(audios: list[np.ndarray], cfg: VisemeRecognizerConfig,
                    frames_per_clip: int = 32, fps: int = 25) -> list[Sample]:
    """Log-mel windows of the visemes graph at ``frames_per_clip`` frames spread over each
    16 kHz audio [N]."""
    samples = []
    for audio in audios:
        frames = max(len(audio) * fps // 16000, 1)
        for frame in np.linspace(0, frames - 1, frames_per_clip).round().astype(int):
            samples.append({"mel": mel_window(audio, int(frame), cfg)[None]})
    return samples
