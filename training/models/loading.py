"""Load a finished run's model (final.pt) for use by a later stage, frozen."""

from __future__ import annotations

import pickle
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


def read_checkpoint(path: Path, kind: str) -> dict:
    """A tsd train checkpoint's contents; UserError naming the file when it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise UserError(f"{path}: not a {kind} checkpoint ({str(exc).splitlines()[0]})") \
            from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a {kind} checkpoint")
    return state


def load_frozen(path: str | Path, kind: str) -> nn.Module:
    """final.pt -> model in eval mode with gradients off; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {kind} checkpoint not found (train it first: tsd train ...)")
    state = read_checkpoint(path, kind)
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


def load_autoencoder(trained_with: str, override: str | None = None) -> nn.Module:
    """The autoencoder a denoiser was trained with, or ``override``: another autoencoder with
    the same encoder and latent scale (a decoder-only run, ``encoder_from``), e.g. the
    narrower device decoder. Anything else would decode latents it has never seen."""
    model = load_frozen(trained_with, "autoencoder")
    if override is None or Path(override) == Path(trained_with):
        return model
    other = load_frozen(override, "autoencoder")
    same = (float(other.latent_scale) == float(model.latent_scale)
            and other.config.enc_channels == model.config.enc_channels
            and all(torch.equal(value, other.encoder.state_dict()[name])
                    for name, value in model.encoder.state_dict().items()))
    if not same:
        raise UserError(f"{override}: its encoder is not the one of {trained_with}, which "
                        "the denoisers were trained with (train a decoder with encoder_from)")
    return other
