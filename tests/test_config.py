"""YAML configs: typed loading, and errors that name the file and the key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from training.config import (
    ConfigError,
    Lrs3Config,
    RealConfig,
    SynthConfig,
    WindowConfig,
    from_dict,
    load_config,
    override,
    to_dict,
)

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "data"


@pytest.mark.parametrize("name, cls", [("synth-demo.yaml", SynthConfig),
                                       ("synth-tiny.yaml", SynthConfig),
                                       ("lrs3.yaml", Lrs3Config), ("window.yaml", WindowConfig)])
def test_shipped_configs_load(name, cls):
    config = load_config(CONFIGS / name, cls)
    assert isinstance(config, cls)
    assert from_dict(cls, to_dict(config)) == config


def test_demo_config_values_are_typed():
    config = load_config(CONFIGS / "synth-demo.yaml", SynthConfig)
    assert config.identities == 24 and config.lead_silence_s == (0.15, 0.5)
    assert isinstance(config.noise_snr_db[0], float) and config.splits.val == 0.1


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, fragment", [
    ("identitees: 3\n", "unknown key 'identitees'"),
    ("identities: three\n", "bad.yaml.identities: expected an integer, got 'three'"),
    ("identities: 2.5\n", "identities: expected an integer"),
    ("flow: yes please\n", "flow: expected true/false"),
    ("lead_silence_s: [0.1]\n", "lead_silence_s: expected 2 items"),
    ("splits: {train: 0.8, val: 0.1, tset: 0.1}\n", "bad.yaml.splits: unknown key 'tset'"),
    ("splits: {train: 0.5, val: 0.1, test: 0.1}\n", "splits: fractions must be positive"),
    ("identities: 2\n", "identities: needs at least 3"),
    ("size: 100\n", "size: must be >= 64, multiple of 8"),
    ("identities: [\n", "invalid YAML"),
])
def test_bad_configs_name_file_and_key(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, SynthConfig)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_literal_choice_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="align: must be one of"):
        load_config(write(tmp_path, "align: sometimes\n"), Lrs3Config)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml", SynthConfig)


def test_override_applies_flags_and_validates():
    config = override(SynthConfig(), identities=5, size=None)
    assert config.identities == 5 and config.size == 128
    with pytest.raises(ConfigError, match="command line.identities"):
        override(SynthConfig(), identities=1)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SynthConfig().identities = 3  # type: ignore[misc]


TRAIN_CONFIGS = sorted((CONFIGS.parent / "train").rglob("*.yaml"))


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_shipped_train_configs_load(path):
    from training.train import RUN_CONFIGS

    cls = RUN_CONFIGS[run_target(path, RUN_CONFIGS)]
    config = load_config(path, cls)
    assert from_dict(cls, to_dict(config)) == config


def run_target(path: Path, targets) -> str:
    """The `tsd train` target a run config is named after: the longest that starts its name
    (student-regress-tiny.yaml is student-regress's, student-leak.yaml student's)."""
    found = [t for t in targets if path.stem == t or path.stem.startswith(t + "-")]
    assert found, (f"{path}: no config class for it; name the file after its tsd target or "
                   "add it to tests/test_config.py")
    return max(found, key=len)


def test_denoiser_viseme_window_must_match_the_data_window(tmp_path):
    from training.config import TeacherRunConfig

    path = write(tmp_path, "window: {viseme_context: 3}\n")
    with pytest.raises(ConfigError, match="model.viseme_window: must equal"):
        load_config(path, TeacherRunConfig)


def test_window_target_is_checked(tmp_path):
    from training.config import TeacherRunConfig

    path = write(tmp_path, "window: {target: posed}\n")
    with pytest.raises(ConfigError, match=r"window.target: must be one of \('recorded', 'held'\)"):
        load_config(path, TeacherRunConfig)


@pytest.mark.parametrize("loss", ["{sync: 0.05}", "{sync: 0.0, mouth_feature: 0.02}"])
def test_terms_of_the_sync_expert_need_one(tmp_path, loss):
    from training.config import StudentRunConfig

    path = write(tmp_path, f"loss: {loss}\n")
    with pytest.raises(ConfigError, match="bad.yaml.sync_expert: is needed when loss.sync"):
        load_config(path, StudentRunConfig)


def test_extends_merges_the_base_under_the_file(tmp_path):
    from training.config import StudentRunConfig

    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "first.yaml").write_text(
        "loss: {leak: 1.0, mouth: 0.3}\ntrain: {steps: 800, lr: 0.0005}\nitems_per_clip: 4\n")
    (tmp_path / "second.yaml").write_text(
        "extends: base/first.yaml\nloss: {leak: 3.0}\ntrain: {steps: 1100}\n")
    (tmp_path / "third.yaml").write_text("extends: second.yaml\ntrain: {lr: 0.0015}\n")
    config = load_config(tmp_path / "third.yaml", StudentRunConfig)
    assert (config.loss.leak, config.loss.mouth) == (3.0, 0.3)
    assert (config.train.steps, config.train.lr) == (1100, 0.0015)
    assert config.items_per_clip == 4
    assert config.loss.match == StudentRunConfig().loss.match


@pytest.mark.parametrize("files, fragment", [
    ({"a.yaml": "extends: missing.yaml\n"}, "missing.yaml: cannot read config"),
    ({"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"}, "a.yaml: extends itself"),
    ({"a.yaml": "extends: [b.yaml]\n"}, "a.yaml.extends: must be the path of a config file"),
    ({"a.yaml": "extends: b.yaml\n", "b.yaml": "- 1\n"}, "b.yaml: a config must be a mapping"),
])
def test_bad_extends_is_one_config_error(tmp_path, files, fragment):
    from training.config import StudentRunConfig

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(tmp_path / "a.yaml", StudentRunConfig)


def makefile_student_stages() -> list[str]:
    """The student configs make train-demo runs, in its order."""
    text = (CONFIGS.parent.parent / "Makefile").read_text().replace("\\\n", " ")
    return re.search(r"for c in ([^;]+); do", text).group(1).split()


@pytest.mark.parametrize("recipe", ["demo", "lrs3"])
def test_student_stages_resume_one_model(recipe):
    """Each later stage resumes runs/RECIPE/student: it must keep the model, data window and
    frozen networks of the first, and train further than the stage before it."""
    from training.config import StudentRunConfig

    names = makefile_student_stages()
    assert names[0] == "student" and len(names) >= 4
    stages = [load_config(CONFIGS.parent / recipe / f"{name}.yaml", StudentRunConfig)
              for name in names]
    keep = ("model", "window", "teacher", "autoencoder", "identity_encoder", "sync_expert")
    for stage in stages[1:]:
        assert all(getattr(stage, key) == getattr(stages[0], key) for key in keep)
    steps = [stage.train.steps for stage in stages]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)


ALL_CONFIGS = sorted(CONFIGS.parent.rglob("*.yaml"))
DATA_CONFIGS = {"synth": SynthConfig, "lrs3": Lrs3Config, "window": WindowConfig,
                "real": RealConfig}


def config_class(path: Path) -> type:
    """The dataclass a config under configs/ loads into: data configs by name, run configs by
    the `tsd train` target their name starts with (decoder.yaml trains an autoencoder)."""
    from training.train import RUN_CONFIGS

    runs = {**RUN_CONFIGS, "decoder": RUN_CONFIGS["ae"]}
    table = DATA_CONFIGS if path.parent == CONFIGS else runs
    return table[run_target(path, table)]


@pytest.mark.parametrize("path", ALL_CONFIGS,
                         ids=lambda p: str(p.relative_to(CONFIGS.parent)))
def test_every_config_under_configs_loads(path):
    cls = config_class(path)
    config = load_config(path, cls)
    assert from_dict(cls, to_dict(config)) == config


LRS3 = CONFIGS.parent / "lrs3"
DEMO = CONFIGS.parent / "demo"


HELD_RENDER_ONLY = {"student-regress.yaml", "student-after-regress.yaml"}
"""Demo stages that learn from the held render, which LRS3's recorded clips do not have."""


def test_every_demo_config_has_an_lrs3_counterpart():
    names = [sorted(p.name for p in folder.glob("*.yaml")) for folder in (LRS3, DEMO)]
    assert names[0] == sorted(set(names[1]) - HELD_RENDER_ONLY)


@pytest.mark.parametrize("path", sorted(LRS3.glob("*.yaml")), ids=lambda p: p.name)
def test_lrs3_configs_are_the_demo_recipe_on_lrs3_runs(tmp_path, path):
    """configs/lrs3/X.yaml resolves to configs/demo/X.yaml with the run paths under runs/lrs3/
    and the training window on the recorded frames (real clips have no held render), and
    nothing else changed."""
    for demo in DEMO.glob("*.yaml"):
        text = demo.read_text().replace("runs/demo/", "runs/lrs3/").replace(", target: held", "")
        (tmp_path / demo.name).write_text(text)
    cls = config_class(path)
    expected = load_config(tmp_path / path.name, cls)
    assert to_dict(load_config(path, cls)) == to_dict(expected)
    assert "runs/demo/" not in str(to_dict(expected))
