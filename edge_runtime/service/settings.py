"""edge-run's settings: one frozen dataclass, layered from (lowest first) built-in defaults,
/etc/temposync/edge.yaml, the user's config ($XDG_CONFIG_HOME/temposync/edge.yaml, else
~/.config/temposync/edge.yaml), an explicit --config file, and command-line flags.
``edge-run --print-config`` shows the merged result with the source of every value.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from edge_runtime.dataio import DataError, from_dict, read_yaml

SYSTEM_CONFIG = Path("/etc/temposync/edge.yaml")
SOURCE_TREE = Path(__file__).resolve().parents[2]
"""The checkout edge-run runs from (an editable install): it has bundles/demo and examples/."""
SERVICE_STATE = Path("/var/lib/temposync")
"""Where systemd/install.sh puts the service's bundle and reference photo."""
LIVE_PAGE = "http://127.0.0.1:8090"


def default_bundle() -> Path | None:
    """The built-in bundle: the demo bundle of the source tree, else the service's."""
    for path in (SOURCE_TREE / "bundles" / "demo", SERVICE_STATE / "bundles" / "current"):
        if (path / "bundle.yaml").is_file():
            return path
    return None


def default_reference() -> Path | None:
    """The built-in reference photo: the example face, else the service's photo."""
    for path in (SOURCE_TREE / "examples" / "face.png", SERVICE_STATE / "reference.png"):
        if path.is_file():
            return path
    return None


def user_config() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "temposync" / "edge.yaml"


@dataclass(frozen=True)
class EdgeSettings:
    bundle: str | None = None
    """Bundle folder (tsd export). None: the demo bundle (bundles/demo of the source tree,
    else /var/lib/temposync/bundles/current)."""
    mode: Literal["full", "hybrid"] = "full"
    """full (E1): frames on this device; hybrid (E2): latents to edge-receive."""
    steps: int = 2
    """Student steps per frame (1, 2, 4 or 8; the bundle's fixed schedule)."""
    audio: str = "mic"
    """mic, a wav file, or - for raw 16 kHz 16-bit mono PCM on stdin."""
    device: str | int | None = None
    """Microphone: sounddevice name or index (None: the system default input)."""
    duration: float | None = None
    """Microphone: stop after this many seconds (None: until SIGTERM / Ctrl-C)."""
    offline: bool = False
    """Files: process as fast as possible instead of at real-time pace."""
    reference: str | None = None
    """Reference photo (any size; the face is found and aligned). None: the example face
    (examples/face.png of the source tree, else /var/lib/temposync/reference.png)."""
    face: int | None = None
    """Which face of a photo with several (1 = leftmost; None: the largest)."""
    framing: Literal["photo", "face"] = "photo"
    """photo: frames are the reference photo with the rendered lower face pasted back (when
    the bundle has face graphs); face: the model's aligned face crop itself."""
    output_size: int = 720
    """Cap on the long side of photo-framed frames (pixels; smaller photos keep their
    size)."""
    sink: str | None = None
    """Frames: OUT.mp4, png:FOLDER, FOLDER/, http://HOST:PORT (live MJPEG page) or null;
    hybrid: latent://HOST:PORT.
    None: the live page http://127.0.0.1:8090 in full mode, latent://127.0.0.1:5599 in
    hybrid mode."""
    key_file: str | None = None
    """Hybrid: shared key file for HMAC-authenticated frames."""
    label: bool = True
    """Draw the visible "AI-generated" label in a corner of every frame. The invisible
    watermark and the provenance metadata are always written; no setting turns them off."""
    c2pa_keys: str | None = None
    """Folder of the device's C2PA signing key for mp4 recordings, made on first use (needs
    the c2pa extra). None: $STATE_DIRECTORY/c2pa under systemd (/var/lib/temposync/c2pa),
    else $XDG_STATE_HOME/temposync/c2pa, else ~/.local/state/temposync/c2pa."""
    visemes: str = "auto"
    """model, pocketsphinx[:FRAMES], fused, none, file:PATH, or auto (pocketsphinx, the best
    measured on real speech; the bundle's model where pocketsphinx is not installed)."""
    emit_visemes: str | None = None
    """Write the viseme stream as JSON lines to this path, - (stdout) or udp://HOST:PORT."""
    backend: Literal["onnxruntime", "tflite"] = "onnxruntime"
    """Inference runtime."""
    precision: Literal["fp32", "int8"] = "fp32"
    """Graph precision (int8 follows the bundle's int8 plan)."""
    threads: int = 2
    """Inference threads per graph."""
    sampler: Literal["unrolled", "step"] = "unrolled"
    """unrolled: one generate_K graph call per frame; step: K calls of the one-step graph
    (edge-run --autotune measures which is faster on this device)."""
    seed: int = 0
    """Seeds the stream's noise."""
    stats: str | None = None
    """Write the run's stats as JSON to this path."""

    def validate(self, where: str) -> None:
        if self.steps not in (1, 2, 4, 8):
            raise DataError(f"{where}.steps: must be 1, 2, 4 or 8, got {self.steps}")
        if self.threads < 1:
            raise DataError(f"{where}.threads: must be >= 1")
        if self.face is not None and self.face < 1:
            raise DataError(f"{where}.face: must be >= 1 (faces are numbered from the left)")
        if self.output_size < 32:
            raise DataError(f"{where}.output_size: must be >= 32 pixels")

    @property
    def resolved_sink(self) -> str:
        if self.sink is not None:
            return self.sink
        return "latent://127.0.0.1:5599" if self.mode == "hybrid" else LIVE_PAGE


FIELDS = tuple(f.name for f in dataclasses.fields(EdgeSettings))


def load_layers(explicit: str | None, flags: dict[str, Any]) -> tuple[EdgeSettings,
                                                                      dict[str, str]]:
    """Merge the layers -> (settings, field -> where its value came from)."""
    values: dict[str, Any] = {}
    sources = dict.fromkeys(FIELDS, "default")
    files = [SYSTEM_CONFIG, user_config()] + ([Path(explicit)] if explicit else [])
    for path in files:
        if path == Path(explicit or "") or path.is_file():
            data = read_yaml(path, "config") or {}
            if not isinstance(data, dict):
                raise DataError(f"{path}: expected a mapping of settings")
            from_dict(EdgeSettings, data, str(path))  # names the file on a bad key / type
            values |= data
            sources |= dict.fromkeys(data, str(path))
    given = {k: v for k, v in flags.items() if v is not None and k in FIELDS}
    values |= given
    sources |= dict.fromkeys(given, "command line")
    return from_dict(EdgeSettings, values, "settings"), sources


def describe(settings: EdgeSettings, sources: dict[str, str]) -> str:
    """YAML of the merged settings, each line commented with its source."""
    lines = []
    for name in FIELDS:
        value = yaml.safe_dump({name: getattr(settings, name)}, default_flow_style=True,
                               width=1000).strip().strip("{}")
        lines.append(f"{value}  # {sources[name]}")
    return "\n".join(lines) + "\n"
