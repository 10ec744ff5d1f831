"""What every sink applies to every frame: the optional visible label, then the invisible
watermark carrying the bundle's payload; and the provenance the sink writes as metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.bundle import Bundle
from edge_runtime.marking.label import Label
from edge_runtime.marking.provenance import Provenance
from edge_runtime.marking.watermark import Watermarker, payload_of

LABEL_HELP = ("leave out the visible \"AI-generated\" corner label (the invisible watermark "
              "and the metadata are always written)")
"""--no-label's help, for every command that writes frames."""
C2PA_KEYS_HELP = ("folder of the device's C2PA signing key, made on first use (mp4 sinks, with "
                  "the c2pa extra; default: $XDG_STATE_HOME/temposync/c2pa, under systemd "
                  "/var/lib/temposync/c2pa)")
"""--c2pa-keys's help, for every command that writes frames."""


class Marker:
    def __init__(self, provenance: Provenance, label: bool = True,
                 c2pa_keys: str | None = None):
        self.provenance = provenance
        self.c2pa_keys = c2pa_keys
        """Folder of the device's C2PA signing key (None: the default,
        edge_runtime.marking.credentials.key_folder)."""
        self.fields = provenance.fields()
        self.watermark = Watermarker(payload_of(provenance.bundle_sha256))
        self.label = Label() if label else None

    @classmethod
    def of_bundle(cls, bundle: Bundle, root: Path, label: bool = True,
                  c2pa_keys: str | None = None) -> Marker:
        return cls(Provenance.of_bundle(bundle, root), label, c2pa_keys)

    @classmethod
    def unknown(cls) -> Marker:
        """For sinks opened without a bundle: the frames are still marked as generated."""
        return cls(Provenance.unknown())

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] RGB -> the marked frame (a new array; ``frame`` is untouched)."""
        if self.label is not None:
            frame = self.label(frame.copy())
        return self.watermark(frame)
