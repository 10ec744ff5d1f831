"""``tsd train visemes``: the audio viseme recogniser (log-mel window -> viseme) that the
device runs on microphone audio.

Items are single video frames: the log-mel window around the frame (computed with the
runtime's own front end, so training and device features are identical) and the frame's
ground-truth viseme. Random gain and white noise make it less fragile to real microphones.
Metrics: frame accuracy and class-balanced accuracy on val clips.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from edge_runtime.audio.features import MelConfig, log_mel
from training.config import VisemeRecognizerConfig, VisemeRunConfig
from training.data.manifest import ClipRecord, Manifest
from training.data.media import read_wav
from training.models.visemes import VisemeRecognizer
from training.tasks.lipread import viseme_accuracy

MEL = MelConfig()
MEL_PER_FRAME = 4


def mel_window(audio: np.ndarray, frame: int, cfg: VisemeRecognizerConfig) -> np.ndarray:
    """Log-mel window [cfg.window, n_mels] for video frame ``frame`` of ``audio`` (16 kHz),
    zero audio beyond the clip (the device's silence)."""
    first = MEL_PER_FRAME * frame - cfg.context  # first mel frame of the window
    start = first * MEL.hop_length
    length = (cfg.window - 1) * MEL.hop_length + MEL.win_length
    segment = np.zeros(length, np.float32)
    lo, hi = max(start, 0), min(start + length, len(audio))
    if hi > lo:
        segment[lo - start:hi - start] = audio[lo:hi]
    return log_mel(segment, MEL)[:cfg.window]


@functools.lru_cache(maxsize=64)
def _audio(path: str) -> np.ndarray:
    return read_wav(path)[0]


class AudioVisemeDataset(Dataset):
    """Item: mel [W, n_mels] float32, viseme int64. Seeded by (seed, index) like the other
    datasets, so batches do not depend on the number of workers."""

    def __init__(self, manifest: Manifest, split: str, config: VisemeRunConfig, seed: int,
                 items_per_clip: int, augment: bool):
        self.manifest, self.config, self.seed = manifest, config, seed
        self.clips: list[ClipRecord] = manifest.split(split)
        if not self.clips:
            raise ValueError(f"no clips of split {split!r} in {manifest.path}")
        self.items_per_clip, self.augment = items_per_clip, augment

    def __len__(self) -> int:
        return len(self.clips) * self.items_per_clip

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        clip = self.clips[index % len(self.clips)]
        visemes = np.load(self.manifest.resolve(clip.visemes))
        frame = int(rng.integers(0, len(visemes)))
        audio = _audio(str(self.manifest.resolve(clip.audio)))
        if self.augment:
            audio = self._augment(audio, rng)
        mel = mel_window(audio, frame, self.config.model)
        return {"mel": torch.from_numpy(mel.astype(np.float32)),
                "viseme": torch.tensor(int(visemes[frame]))}

    def _augment(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gain = 10 ** (rng.uniform(*self.config.gain_db) / 20)
        out = audio * gain
        power = float(np.mean(out ** 2)) + 1e-10
        snr = 10 ** (rng.uniform(*self.config.noise_snr_db) / 10)
        out = out + rng.standard_normal(len(out)).astype(np.float32) * np.sqrt(power / snr)
        return np.clip(out, -1, 1).astype(np.float32)


class VisemeTask:
    def __init__(self, config: VisemeRunConfig, manifest: Manifest):
        self.config = config
        torch.manual_seed(config.train.seed)
        self.model = VisemeRecognizer(config.model)
        seed = config.train.seed
        self.train_set = AudioVisemeDataset(manifest, "train", config, seed,
                                            config.items_per_clip, augment=True)
        self.val_set = AudioVisemeDataset(manifest, "val", config, seed + 1, 16, augment=False)

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator):
        logits = model(batch["mel"])
        loss = F.cross_entropy(logits, batch["viseme"])
        accuracy = (logits.argmax(1) == batch["viseme"]).float().mean()
        return loss, {"ce": float(loss.detach()), "accuracy": float(accuracy)}

    @torch.no_grad()
    def validate(self, model: nn.Module, batches: list[dict]) -> dict[str, float]:
        losses, predicted, truth = [], [], []
        for batch in batches:
            logits = model(batch["mel"])
            losses.append(float(F.cross_entropy(logits, batch["viseme"])))
            predicted.append(logits.argmax(1))
            truth.append(batch["viseme"])
        scores = viseme_accuracy(torch.cat(predicted).numpy(), torch.cat(truth).numpy())
        return {"val_loss": float(np.mean(losses))} | scores

    def finish(self, model: nn.Module) -> None:
        """Nothing to measure: streaming accuracy is measured on the exported graph."""

