"""tsd models pack / check (training.models.packing): the tiny runs packed as the demo's are,
loaded by the usual loaders, exported to a bundle that matches the one from final.pt, and a
changed file refused with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from calibration.schedules import load_student
from edge_runtime.backends import open_graph
from edge_runtime.bundle import load_bundle
from training.cli import main as tsd
from training.config import StudentRunConfig, load_config
from training.data.manifest import read_manifest
from training.models.loading import load_frozen
from training.models.packing import MANIFEST
from training.tasks.student import StudentTask
from training.trainer import Trainer, read_metrics


@pytest.fixture(scope="module")
def packed(tiny_ae, tiny_idenc, tiny_teacher, tiny_student, tiny_visemes, tmp_path_factory
           ) -> Path:
    """The tiny runs laid out as runs/demo is, then packed with the CLI."""
    runs = tmp_path_factory.mktemp("runs")
    for stage, final in {"ae": tiny_ae, "idenc": tiny_idenc, "teacher": tiny_teacher,
                         "student": tiny_student, "visemes": tiny_visemes}.items():
        (runs / stage).mkdir()
        (runs / stage / "final.pt").symlink_to(final)
    out = tmp_path_factory.mktemp("models")
    assert tsd(["models", "pack", "--runs", str(runs), "--out", str(out)]) == 0
    return out


def test_packed_weights_are_half_precision_and_smaller(packed, tiny_student):
    state = torch.load(packed / "student.pt", map_location="cpu", weights_only=False)
    tensors = [v for v in state["model"].values() if v.is_floating_point()]
    assert all(v.dtype == (torch.float16 if v.dim() >= 2 else torch.float32) for v in tensors)
    assert any(v.dtype == torch.float16 for v in tensors)
    assert (packed / "student.pt").stat().st_size < 0.7 * tiny_student.stat().st_size
    rows = yaml.safe_load((packed / MANIFEST).read_text())["models"]
    assert sorted(rows) == ["ae", "idenc", "student", "teacher", "visemes"]


def test_the_usual_loaders_read_them_and_a_student_names_its_packed_models(packed,
                                                                           tiny_student):
    state, config, student = load_student(packed / "student.pt")
    assert (config.teacher, config.autoencoder, config.identity_encoder) == tuple(
        str(packed / f"{s}.pt") for s in ("teacher", "ae", "idenc"))
    original_state = torch.load(tiny_student, map_location="cpu", weights_only=False)
    assert state.get("schedules") == original_state.get("schedules")
    _, _, original = load_student(tiny_student)
    for name, value in original.state_dict().items():
        packed_value = student.state_dict()[name]
        assert packed_value.dtype == value.dtype
        torch.testing.assert_close(packed_value, value, rtol=1e-3, atol=1e-4)
    load_frozen(config.teacher, "teacher")
    load_frozen(packed / "visemes.pt", "viseme recognizer")


def test_a_bundle_from_the_packed_models_matches_the_one_from_final_pt(
        packed, tiny_student, tiny_visemes, tiny_dataset, tmp_path):
    from export.bundle import export_bundle
    from training.data.manifest import read_manifest

    manifest = read_manifest(tiny_dataset)
    bundles = {}
    for name, student, visemes in (("final", tiny_student, tiny_visemes),
                                   ("packed", packed / "student.pt", packed / "visemes.pt")):
        export_bundle(student, manifest, tmp_path / name, variants=("onnx-fp32",),
                      calibration_clips=1, frames_per_clip=2, visemes_path=visemes,
                      unrolled=(), face_graphs=False)
        bundles[name] = load_bundle(tmp_path / name)
    rng = np.random.default_rng(0)
    spec = bundles["final"][0].variants["onnx-fp32"]["decoder"].inputs[0]
    latent = rng.standard_normal(spec.shape).astype(np.float32)
    frames = [open_graph(b, root, "onnx-fp32", "decoder", threads=1).run({spec.name: latent})[0]
              for b, root in bundles.values()]
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() <= 1


def test_a_changed_model_is_refused_with_one_line(packed, tmp_path, capsys):
    copy = tmp_path / "models"
    copy.mkdir()
    for path in packed.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert tsd(["models", "check", str(copy)]) == 0
    with (copy / "teacher.pt").open("ab") as f:
        f.write(b"\0")
    assert tsd(["models", "check", str(copy)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tsd: error: {copy / 'teacher.pt'}: sha256 differs from {copy / MANIFEST}"]
    assert tsd(["models", "pack", "--runs", str(tmp_path / "none"), "--out",
                str(tmp_path / "x")]) != 0
    assert capsys.readouterr().err.strip().endswith("no run with a final.pt")


def test_stages_packed_one_by_one_add_up_and_refer_to_each_other(
        tiny_ae, tiny_idenc, tiny_teacher, tiny_student, tmp_path):
    """The recipe's progress is packed as each run finishes: earlier stages stay listed and a
    later student names the packed teacher, autoencoder and identity encoder."""
    runs, out = tmp_path / "runs", tmp_path / "models"
    for stage, final in {"ae": tiny_ae, "idenc": tiny_idenc, "teacher": tiny_teacher,
                         "student": tiny_student}.items():
        (runs / stage).mkdir(parents=True)
        (runs / stage / "final.pt").symlink_to(final)
    for stages in (["ae"], ["idenc", "teacher"], ["student"]):
        args = [a for s in stages for a in ("--stage", s)]
        assert tsd(["models", "pack", "--runs", str(runs), "--out", str(out), *args]) == 0
    rows = yaml.safe_load((out / MANIFEST).read_text())["models"]
    assert sorted(rows) == ["ae", "idenc", "student", "teacher"]
    assert tsd(["models", "check", str(out)]) == 0
    _, config, _ = load_student(out / "student.pt")
    assert (config.teacher, config.autoencoder, config.identity_encoder) == tuple(
        str(out / f"{s}.pt") for s in ("teacher", "ae", "idenc"))
    first = rows["ae"]["sha256"]
    assert tsd(["models", "pack", "--runs", str(runs), "--out", str(out), "--stage", "ae"]) == 0
    again = yaml.safe_load((out / MANIFEST).read_text())["models"]["ae"]["sha256"]
    assert again == first, "packing the same run twice must give the same bytes"


def test_a_packed_student_continues_as_a_later_stage(packed, tiny_dataset, tmp_path, capsys):
    """tsd train --init: a clone without runs/ goes on from models/ (weights, target network
    and step), and a checkpoint that does not fit, or is already past the run's end, gets one
    line."""
    tiny = Path(__file__).resolve().parent.parent / "configs" / "train" / "student-tiny.yaml"
    stage = tmp_path / "stage.yaml"
    stage.write_text(yaml.safe_dump({
        "extends": str(tiny), "train": {"steps": 24},
        "teacher": str(packed / "teacher.pt"), "autoencoder": str(packed / "ae.pt"),
        "identity_encoder": str(packed / "idenc.pt")}))
    start = torch.load(packed / "student.pt", map_location="cpu", weights_only=False)

    config = load_config(stage, StudentRunConfig)
    task = StudentTask(config, read_manifest(tiny_dataset))
    trainer = Trainer(task, config.train, tmp_path / "probe", config)
    trainer.start_from(packed / "student.pt")
    assert trainer.step == start["step"] == 20
    for name, value in start["model"].items():
        assert torch.equal(task.model.state_dict()[name], value.float()), name
        assert torch.equal(task.target.state_dict()[name], value.float()), name

    out = tmp_path / "run"
    assert tsd(["train", "student", "--config", str(stage), "--data", str(tiny_dataset),
                "--out", str(out), "--init", str(packed / "student.pt")]) == 0
    assert torch.load(out / "final.pt", weights_only=False)["step"] == 24
    assert min(row["step"] for row in read_metrics(out / "metrics.jsonl")) > 20

    for init, why in ((packed / "visemes.pt", "does not fit this run's model"),
                      (out / "final.pt", "already at step 24")):
        capsys.readouterr()
        assert tsd(["train", "student", "--config", str(stage), "--data", str(tiny_dataset),
                    "--out", str(tmp_path / "other"), "--init", str(init)]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], err
