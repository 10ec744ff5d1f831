"""Audio viseme recogniser: log-mel window [B, W, n_mels] -> the centre video frame's viseme
logits [B, len(VISEMES)]. Temporal convolutions only (cheap on a Pi, quantizes well).

Window layout (VisemeRecognizerConfig): ``context`` mel frames, the video frame's own 4,
``lookahead`` mel frames; the network sees exactly what the device has when it decides.

With ``loudness_norm`` the graph starts by shifting the window's log-mel so that its loudest
frame (mean over bands) sits at 0: a gain only adds a constant to every log-mel value, so this
removes the microphone's level. Windows quieter than LOUDNESS_MIN (silence, or speech below
about -60 dBFS) are not raised further, so room noise is not blown up to speech level.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_runtime.visemes.vocabulary import VISEMES
from training.config import VisemeRecognizerConfig
from training.models.sync import MEL_CENTRE, MEL_SPREAD

N_MELS = 80
LOUDNESS_MIN = -15.0
"""Mean log-mel of the loudest frame below which a window is not raised (natural log of
power; speech at -20 dBFS reaches about -5, each 20 dB less lowers it by 4.6)."""
LOUDNESS_SPREAD = 3.0
"""Scale of the normalised log-mel (about its spread in speech)."""


class VisemeRecognizer(nn.Module):
    def __init__(self, cfg: VisemeRecognizerConfig, n_mels: int = N_MELS):
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        cin = n_mels
        for c in cfg.channels:
            layers += [nn.Conv1d(cin, c, cfg.kernel, padding=cfg.kernel // 2), nn.BatchNorm1d(c),
                       nn.SiLU(), nn.Conv1d(c, c, 3, stride=2, padding=1), nn.BatchNorm1d(c),
                       nn.SiLU()]
            cin = c
        self.trunk = nn.Sequential(*layers)
        steps = cfg.window
        for _ in cfg.channels:
            steps = (steps + 1) // 2
        self.head = nn.Linear(cin * steps, len(VISEMES))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: [B, W, n_mels] log-mel (edge_runtime.audio.features) -> logits [B, 15]."""
        x = mel.transpose(1, 2)  # [B, n_mels, W]
        if self.config.loudness_norm:
            level = x.mean(1, keepdim=True).amax(2, keepdim=True)  # [B, 1, 1]
            x = (x - level.clamp(min=LOUDNESS_MIN)) / LOUDNESS_SPREAD
        else:
            x = (x + MEL_CENTRE) / MEL_SPREAD
        return self.head(self.trunk(x).flatten(1))
