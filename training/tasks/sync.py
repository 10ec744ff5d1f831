"""``tsd train sync``: the sync expert, contrastive over aligned and shifted audio.

A sample is a window of frames + 2 * max_offset frames of one clip: the centre ``frames``
video frames give the mouth-crop window; audio windows start at every offset in
-max_offset..+max_offset frames. Two InfoNCE terms: the aligned audio against the other clips
of the batch (what is said), and against the same clip's shifted audio (when it is said).

Metrics (SyncNet / Wav2Lip conventions): LSE-D, the mean over windows of the smallest
embedding distance over offsets; LSE-C, the mean of (median - smallest) distance; and offset
accuracy, how often the smallest distance is at offset 0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.audio.features import MelConfig, log_mel
from training.config import SyncRunConfig, WindowConfig
from training.data.dataset import TalkingFaceDataset
from training.data.manifest import Manifest
from training.data.media import SAMPLE_RATE
from training.models.sync import SyncExpert, mouth_crops, sync_distances

MEL = MelConfig()
MEL_PER_FRAME = 4  # 40 ms video frame / 10 ms hop


def audio_windows(audio: torch.Tensor, frames: int, max_offset: int, fps: int = 25
                  ) -> torch.Tensor:
    """audio [B, (frames + 2K) * spf] (any device) -> log-mel windows for offsets -K..K:
    [B, 2K + 1, 4 * frames, n_mels]. Zero-padded so the last window is complete."""
    spf = SAMPLE_RATE // fps
    pad = MEL.win_length - MEL.hop_length
    padded = np.pad(audio.cpu().numpy(), ((0, 0), (0, pad)))
    out = []
    for clip in padded:
        windows = []
        for offset in range(-max_offset, max_offset + 1):
            start = (max_offset + offset) * spf
            segment = clip[start:start + frames * spf + pad]
            windows.append(log_mel(segment, MEL)[:MEL_PER_FRAME * frames])
        out.append(np.stack(windows))
    return torch.from_numpy(np.stack(out))


class SyncTask:
    def __init__(self, config: SyncRunConfig, manifest: Manifest):
        self.config = config
        torch.manual_seed(config.train.seed)
        self.model = SyncExpert(config.model)
        window = WindowConfig(frames=config.model.frames + 2 * config.max_offset,
                              viseme_context=0, p_cross=0.0, with_flow=False)
        seed = config.train.seed
        self.train_set = TalkingFaceDataset(manifest, "train", window, seed,
                                            config.items_per_clip)
        self.val_set = TalkingFaceDataset(manifest, "val", window, seed + 1, 4)

    def embed(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """-> video [B, D], audio per offset [B, 2K + 1, D]."""
        k, n = self.config.max_offset, self.config.model.frames
        frames = batch["frames"][:, k:k + n]
        b = frames.shape[0]
        crops = mouth_crops(frames.flatten(0, 1), batch["mouth_boxes"][:, k:k + n].flatten(0, 1),
                            self.config.model.crop).unflatten(0, (b, n))
        mel = audio_windows(batch["audio"], n, k).to(frames.device)
        audio = model.embed_audio(mel.flatten(0, 1)).unflatten(0, (b, 2 * k + 1))
        return model.embed_video(crops), audio

    def _losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        video, audio = self.embed(model, batch)
        k, tau = self.config.max_offset, self.config.temperature
        aligned = audio[:, k]
        labels = torch.arange(len(video), device=video.device)
        content = F.cross_entropy(video @ aligned.T / tau, labels)
        offsets = torch.einsum("bd,bod->bo", video, audio) / tau
        timing = F.cross_entropy(offsets, torch.full((len(video),), k, device=offsets.device))
        return {"content": content, "timing": timing, "video": video, "audio": audio}

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator):
        terms = self._losses(model, batch)
        total = terms["content"] + terms["timing"]
        return total, {"content": float(terms["content"].detach()),
                       "timing": float(terms["timing"].detach())}

    def validate(self, model: nn.Module, batches: list[dict]) -> dict[str, float]:
        losses, dists = [], []
        for batch in batches:
            terms = self._losses(model, batch)
            losses.append(float(terms["content"] + terms["timing"]))
            dists.append(sync_distances(terms["video"], terms["audio"]))
        return {"val_loss": float(np.mean(losses))} | sync_metrics(torch.cat(dists),
                                                                   self.config.max_offset)

    def finish(self, model: nn.Module) -> None:
        """Nothing to measure: the expert is used frozen as trained."""


def mouth_windows(expert: SyncExpert, images: torch.Tensor, boxes: torch.Tensor
                  ) -> torch.Tensor:
    """The expert's input: grey mouth crops of the first ``expert.config.frames`` frames.
    images: [B, T, 3, H, W]; boxes: [B, T, 4] -> [B, frames, crop, crop]."""
    n = expert.config.frames
    return mouth_crops(images[:, :n].flatten(0, 1), boxes[:, :n].flatten(0, 1),
                       expert.config.crop).unflatten(0, (images.shape[0], n))


def sync_loss(expert: SyncExpert, images: torch.Tensor, boxes: torch.Tensor,
              audio: torch.Tensor, fps: int = 25) -> torch.Tensor:
    """The sync term of the denoiser losses, per sample [B]: 1 - cosine between the expert's
    embedding of the first ``expert.config.frames`` decoded frames' mouths and of the audio
    under them. images: [B, T, 3, H, W]; boxes: [B, T, 4]; audio: [B, T * SAMPLE_RATE/fps]."""
    n = expert.config.frames
    crops = mouth_windows(expert, images, boxes)
    mel = audio_windows(audio[:, :n * (SAMPLE_RATE // fps)], n, 0, fps)[:, 0]
    return 1 - (expert.embed_video(crops) * expert.embed_audio(mel.to(images.device))).sum(1)


def sync_feature_gap(expert: SyncExpert, images: torch.Tensor, truth: torch.Tensor,
                     boxes: torch.Tensor) -> torch.Tensor:
    """Per sample [B]: the distance between the expert's video-trunk activations
    (SyncExpert.video_activations) for the decoded and the true mouth windows: squared
    distance summed over channels, averaged over positions, summed over layers, as LPIPS
    does. images, truth: [B, T, 3, H, W]; boxes: [B, T, 4]."""
    with torch.no_grad():
        target = expert.video_activations(mouth_windows(expert, truth, boxes))
    decoded = expert.video_activations(mouth_windows(expert, images, boxes))
    return torch.stack([(a - t).pow(2).sum(1).mean((1, 2))
                        for a, t in zip(decoded, target)]).sum(0)


def sync_metrics(distances: torch.Tensor, max_offset: int) -> dict[str, float]:
    """distances [N, 2K + 1] (offsets -K..K) -> LSE-D, LSE-C, offset accuracy."""
    smallest = distances.min(dim=1).values
    return {"lse_d": float(smallest.mean()),
            "lse_c": float((distances.median(dim=1).values - smallest).mean()),
            "offset_accuracy": float((distances.argmin(dim=1) == max_offset).float().mean())}
