"""Identity encoder: the contrastive loss and a short training run that learns identity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from training.config import IdentityRunConfig, load_config
from training.data.dataset import to_tensor_image
from training.data.manifest import read_manifest
from training.data.media import read_frame
from training.models.identity import IdentityEncoder
from training.tasks.identity import identity_accuracy, supcon_loss

TINY = Path(__file__).resolve().parent.parent / "configs" / "train" / "idenc-tiny.yaml"


def test_supcon_is_low_for_separated_identities_and_high_for_swapped():
    labels = torch.tensor([0, 0, 1, 1])
    good = F.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]]), dim=1)
    bad = good[[0, 2, 1, 3]]  # each identity's two samples now point apart
    assert supcon_loss(good, labels, 0.1) < 0.01
    assert supcon_loss(bad, labels, 0.1) > 1.0


def cross_clip_views(manifest):
    """Two frames of every training clip -> (images, identity labels, clip labels)."""
    clips = manifest.split("train")
    speakers = sorted({c.speaker for c in clips})
    images = torch.stack([to_tensor_image(read_frame(manifest.resolve(c.frames), k))
                          for c in clips for k in (5, 25)])
    labels = torch.tensor([speakers.index(c.speaker) for c in clips for _ in (5, 25)])
    clip_ids = torch.tensor([i for i in range(len(clips)) for _ in (5, 25)])
    return images, labels, clip_ids


@pytest.mark.slow
def test_short_training_learns_identity_across_clips(tiny_dataset, tiny_idenc):
    """Same person, different clip (scene): the encoder must match them by the face."""
    manifest = read_manifest(tiny_dataset)
    config = load_config(TINY, IdentityRunConfig)
    state = torch.load(tiny_idenc, weights_only=False)["model"]
    model = IdentityEncoder(config.model)
    model.load_state_dict(state)
    model.eval()
    images, labels, clips = cross_clip_views(manifest)
    with torch.no_grad():
        trained = identity_accuracy(model(images), labels, clips)
    # clips of one person differ in clothes and background: pixels cannot match them
    pixels = identity_accuracy(F.normalize(F.avg_pool2d(images, 8).flatten(1), dim=1),
                               labels, clips)
    assert trained >= 0.75 and trained > pixels + 0.3, (trained, pixels)
