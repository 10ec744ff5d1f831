"""``tsd train visemes``: the audio viseme recogniser (log-mel window -> viseme) that the
device runs on microphone audio.

Items are single video frames: the log-mel window around the frame (computed with the
runtime's own front end, so training and device features are identical) and the frame's
ground-truth viseme. Utterances come from the synthetic dataset's clips and from speech sets
(``--speech``: Festival's, flite's and espeak-ng's voices, training.data.festival, .flite
and .voices, and real recordings, training.data.asterisk; one utterance in ten of each is held
out for validation). Training audio passes through training.data.augment (speed, rooms,
microphones, backgrounds, gain; optionally a vocal-tract warp of the filterbank).
Metrics: frame accuracy and class-balanced accuracy on the held-out utterances.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from edge_runtime.audio.features import SAMPLE_RATE, MelConfig, log_mel
from training.config import VisemeRecognizerConfig, VisemeRunConfig
from training.data.augment import change_speed, degrade, mask_spectrum, warped_filterbank
from training.data.manifest import Manifest
from training.data.media import read_wav
from training.data.realspeech import read_speech_manifest
from training.errors import UserError
from training.models.visemes import VisemeRecognizer
from training.tasks.lipread import viseme_accuracy

MEL_PER_FRAME = 4
HISTORY_S = 1.0
"""Audio before an item's window that the simulated room's reverberation draws from."""
VAL_EVERY = 10
"""One utterance in this many of a speech set is held out for validation."""


def mel_config(cfg: VisemeRecognizerConfig) -> MelConfig:
    """The recogniser's front end: the runtime's log-mel with the recogniser's floor."""
    return MelConfig(floor=cfg.mel_floor)


def window_samples(cfg: VisemeRecognizerConfig) -> int:
    """Audio samples one log-mel window spans."""
    hop = MelConfig.hop_length
    return (cfg.window - 1) * hop + MelConfig.win_length


def mel_window(audio: np.ndarray, frame: int, cfg: VisemeRecognizerConfig) -> np.ndarray:
    """Log-mel window [cfg.window, n_mels] for video frame ``frame`` of ``audio`` (16 kHz),
    zero audio beyond the clip (the device's silence)."""
    start = (MEL_PER_FRAME * frame - cfg.context) * MelConfig.hop_length
    return log_mel(_cut(audio, start, window_samples(cfg)), mel_config(cfg))[:cfg.window]


def _cut(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """audio[start:start + length], zeros where that lies outside the audio."""
    segment = np.zeros(length, np.float32)
    lo, hi = max(start, 0), min(start + length, len(audio))
    if hi > lo:
        segment[lo - start:hi - start] = audio[lo:hi]
    return segment


@dataclass(frozen=True)
class Utterance:
    audio: str
    """Path of the 16 kHz wav."""
    visemes: str
    """Path of its per-frame viseme ids (.npy)."""


@functools.lru_cache(maxsize=4096)
def _audio(path: str) -> np.ndarray:
    return read_wav(path)[0]


@functools.lru_cache(maxsize=4096)
def _labels(path: str) -> np.ndarray:
    return np.load(path).astype(np.int64)


def held_out(clip_id: str) -> bool:
    """Whether a speech-set utterance is held out for validation (one in VAL_EVERY, by id)."""
    return int(hashlib.sha1(clip_id.encode()).hexdigest(), 16) % VAL_EVERY == 0


def utterances(manifest: Manifest | None, speech: tuple[Path, ...], split: str
               ) -> tuple[list[Utterance], list[str]]:
    """The ``split`` ("train" or "val") of the synthetic clips and of each speech set ->
    (utterances, one line per source saying what it holds)."""
    out, sources = [], []
    if manifest is not None:
        clips = manifest.split(split)
        out += [Utterance(str(manifest.resolve(c.audio)), str(manifest.resolve(c.visemes)))
                for c in clips]
        sources.append(f"synthetic dataset: {len(clips)} {split} clips, "
                       f"{len({c.speaker for c in clips})} espeak-ng speakers")
    for folder in speech:
        found = read_speech_manifest(folder)
        clips = [c for c in found.clips if held_out(c.id) == (split == "val")]
        out += [Utterance(str(found.resolve(c.audio)), str(found.resolve(c.visemes)))
                for c in clips]
        kinds = "+".join(sorted({c.source for c in clips}))
        voices = sorted({c.speaker for c in clips})
        named = f" ({', '.join(voices)})" if len(voices) <= 4 else ""
        sources.append(f"{kinds} speech set: {len(clips)} {split} utterances, "
                       f"{len(voices)} voices{named}")
    if not out:
        raise UserError(f"no {split} utterances in the dataset or the speech sets")
    return out, sources


class AudioVisemeDataset(Dataset):
    """Item: mel [W, n_mels] float32, viseme int64. Seeded by (seed, index) like the other
    datasets, so batches do not depend on the number of workers."""

    def __init__(self, items: list[Utterance], config: VisemeRunConfig, seed: int,
                 items_per_clip: int, augment: bool, fps: int = 25):
        self.items, self.config, self.seed, self.fps = items, config, seed, fps
        self.items_per_clip, self.augment = items_per_clip, augment

    def __len__(self) -> int:
        return len(self.items) * self.items_per_clip

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        item = self.items[index % len(self.items)]
        audio, visemes = _audio(item.audio), _labels(item.visemes)
        if self.augment:
            mel, viseme = self._degraded(audio, visemes, rng)
        else:
            frame = int(rng.integers(0, len(visemes)))
            mel, viseme = mel_window(audio, frame, self.config.model), int(visemes[frame])
        return {"mel": torch.from_numpy(mel.astype(np.float32)),
                "viseme": torch.tensor(viseme)}

    def _degraded(self, audio: np.ndarray, visemes: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, int]:
        """A frame of the utterance played ``speed`` times faster in a simulated room: its
        label is the viseme at the same moment of the original."""
        cfg, augment = self.config.model, self.config.augment
        speed = float(rng.uniform(*augment.speed))
        frame = int(rng.integers(0, max(int(len(visemes) / speed), 1)))
        viseme = int(visemes[min(int((frame + 0.5) * speed), len(visemes) - 1)])
        start = (MEL_PER_FRAME * frame - cfg.context) * MelConfig.hop_length  # sped-up time
        history = int(HISTORY_S * SAMPLE_RATE)
        length = window_samples(cfg)
        original = _cut(audio, int((start - history) * speed), int((history + length) * speed) + 32)
        heard = degrade(change_speed(original, speed), rng, augment,
                        functools.partial(self._other_speech, exclude=audio))
        segment = _cut(heard, history, length)
        bank = None
        if augment.vtlp != (1.0, 1.0):
            bank = warped_filterbank(mel_config(cfg), float(rng.uniform(*augment.vtlp)))
        mel = log_mel(segment, mel_config(cfg), bank)[:cfg.window]
        return mask_spectrum(mel, rng, augment), viseme

    def _other_speech(self, rng: np.random.Generator, n: int, exclude: np.ndarray
                      ) -> np.ndarray:
        """n samples from a random other utterance (babble)."""
        other = _audio(self.items[int(rng.integers(0, len(self.items)))].audio)
        if other is exclude or len(other) <= n:
            return _cut(other, 0, n)
        at = int(rng.integers(0, len(other) - n))
        return other[at:at + n]


class VisemeTask:
    def __init__(self, config: VisemeRunConfig, manifest: Manifest | None,
                 speech: tuple[Path, ...] = ()):
        self.config = config
        torch.manual_seed(config.train.seed)
        self.model = VisemeRecognizer(config.model)
        seed = config.train.seed
        train, self.sources = utterances(manifest, speech, "train")
        self.train_set = AudioVisemeDataset(train, config, seed, config.items_per_clip,
                                            augment=True)
        self.val_set = AudioVisemeDataset(utterances(manifest, speech, "val")[0], config,
                                          seed + 1, 16, augment=False)

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator):
        logits = model(batch["mel"])
        loss = F.cross_entropy(logits, batch["viseme"],
                               label_smoothing=self.config.label_smoothing)
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
        scores = viseme_accuracy(torch.cat(predicted).cpu().numpy(), torch.cat(truth).cpu().numpy())
        return {"val_loss": float(np.mean(losses))} | scores

    def finish(self, model: nn.Module) -> None:
        """Nothing to measure: streaming accuracy is measured on the exported graph."""

