"""Load a finished run's model (final.pt) for use by a later stage, frozen."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn

from training.config import (
    AutoencoderConfig,
    DenoiserConfig,
    IdentityEncoderConfig,
    LipReaderConfig,
    SyncExpertConfig,
    VisemeRecognizerConfig,
    from_dict,
)
from training.errors import UserError
from training.models.autoencoder import Autoencoder
from training.models.denoiser import PREDICTION, Denoiser
from training.models.identity import IdentityEncoder
from training.models.lipread import LipReader
from training.models.sync import SyncExpert
from training.models.visemes import VisemeRecognizer

_MODELS = {"autoencoder": (Autoencoder, AutoencoderConfig),
           "identity encoder": (IdentityEncoder, IdentityEncoderConfig),
           "teacher": (partial(Denoiser, prediction=PREDICTION["teacher"]), DenoiserConfig),
           "student": (partial(Denoiser, prediction=PREDICTION["student"]), DenoiserConfig),
           "sync expert": (SyncExpert, SyncExpertConfig),
           "lip reader": (LipReader, LipReaderConfig),
           "viseme recognizer": (VisemeRecognizer, VisemeRecognizerConfig)}


def load_frozen(path: str | Path, kind: str) -> nn.Module:
    """final.pt -> model in eval mode with gradients off; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {kind} checkpoint not found (train it first: tsd train ...)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    model_cls, config_cls = _MODELS[kind]
    try:
        model = model_cls(from_dict(config_cls, state["config"]["model"], f"{path}:model"))
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise UserError(f"{path}: not a {kind} checkpoint ({str(exc).splitlines()[0]})") \
            from None
    model.eval()
    model.requires_grad_(False)
    return model
