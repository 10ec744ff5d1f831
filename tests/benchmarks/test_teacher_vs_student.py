"""Host side: one frame by the teacher's 50-step DDIM vs by the student's 2 steps, both decoded
by the same decoder (``--ae``: the device decoder), in the same run (the models issue's
speed-up; tsd bench-report divides them). Twice: in torch (eager) and with the denoisers and
the decoder exported to ONNX and run by onnxruntime (fp32, 2 threads, the device's runtime),
where a small network's time is its arithmetic rather than torch's per-op dispatch. The
samplers are the evaluation's own (teacher_ddim, student_sample) in both. Measurements only."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from edge_runtime.backends import OnnxSession  # noqa: E402
from export.graphs import DecoderGraph, GraphDef  # noqa: E402
from export.onnx_export import export_onnx  # noqa: E402
from training.eval.generate import (  # noqa: E402
    Condition,
    StreamNoise,
    condition,
    student_sample,
    teacher_ddim,
)
from training.eval.report import EvalModels, load_models  # noqa: E402

METHODS = {"teacher_ddim_50": 50, "student_2": 2}
SIZE = 128
"""The deployment resolution (the networks are convolutional: any checkpoint runs at it)."""
THREADS = 2


class _RawOutput(nn.Module):
    """The denoiser with the step graph's input names and dtypes, returning its raw output
    (eps for the teacher, v for the student)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, noise_level, ref_latent, identity, visemes) -> torch.Tensor:
        return self.model(x, noise_level, ref_latent, identity, visemes.long())


class OnnxDenoiser:
    """An exported denoiser called like the torch module, so the samplers drive it unchanged."""

    def __init__(self, model: nn.Module, cond: Condition, path):
        inputs = {"x": torch.zeros_like(cond.ref), "noise_level": torch.zeros(1),
                  "ref_latent": cond.ref, "identity": cond.ident,
                  "visemes": cond.visemes[0].to(torch.int32)}
        graph = GraphDef(path.stem, _RawOutput(model.eval()), inputs, ("out",))
        self.session = OnnxSession(export_onnx(graph, path), THREADS)

    def __call__(self, x, noise_level, ref_latent, identity, visemes) -> torch.Tensor:
        out = self.session.run({"x": x.numpy(), "noise_level": noise_level.numpy(),
                                "ref_latent": ref_latent.numpy(), "identity": identity.numpy(),
                                "visemes": visemes.to(torch.int32).numpy()})[0]
        return torch.from_numpy(out)


@pytest.fixture(scope="module")
def setup(bench_student, bench_autoencoder):
    """The models and one frame's conditioning (a random picture: speed does not depend on
    it)."""
    torch.set_num_threads(THREADS)
    models = load_models(bench_student, None, None, (2,), bench_autoencoder)
    frame = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    visemes = torch.zeros(1, 2 * models.viseme_context + 1, dtype=torch.long)
    return models, condition(models.autoencoder, models.identity, frame, frame[0], visemes)


@pytest.fixture(scope="module")
def onnx_models(setup, tmp_path_factory) -> dict:
    models, cond = setup
    folder = tmp_path_factory.mktemp("teacher-vs-student")
    decoder = GraphDef("decoder", DecoderGraph(models.autoencoder.eval()),
                       {"latent": cond.ref}, ("frame",))
    return {"teacher": OnnxDenoiser(models.teacher, cond, folder / "teacher.onnx"),
            "student": OnnxDenoiser(models.student, cond, folder / "student.onnx"),
            "decoder": OnnxSession(export_onnx(decoder, folder / "decoder.onnx"), THREADS)}


def _frame(models: EvalModels, cond: Condition, method: str, onnx: dict | None):
    noise = StreamNoise.draw(tuple(cond.ref.shape[1:]), seed=0)
    teacher = onnx["teacher"] if onnx else models.teacher
    student = onnx["student"] if onnx else models.student

    @torch.no_grad()
    def one_frame():
        if method.startswith("teacher"):
            latent = teacher_ddim(teacher, cond, noise, METHODS[method])
        else:
            latent = student_sample(student, cond, noise, models.schedules[2])
        if onnx:
            return onnx["decoder"].run({"latent": latent.numpy()})[0]
        return models.autoencoder.decode(latent)

    return one_frame


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
@pytest.mark.parametrize("method", list(METHODS))
def test_frame_by_teacher_or_student(benchmark, request, setup, bench_autoencoder, method,
                                     runtime):
    models, cond = setup
    onnx = request.getfixturevalue("onnx_models") if runtime == "onnxruntime" else None
    # with onnxruntime, torch only does the samplers' elementwise arithmetic: one thread, so
    # its idle OpenMP workers do not spin against onnxruntime's on the same cores
    torch.set_num_threads(1 if onnx else THREADS)
    steps = METHODS[method]
    benchmark.pedantic(_frame(models, cond, method, onnx),
                       rounds=5 if steps > 2 else 30, warmup_rounds=1)
    benchmark.extra_info |= {"stage": f"host {runtime} frame: {method} + decoder",
                             "steps": steps, "method": method, "runtime": runtime,
                             "threads": THREADS,
                             "decoder": bench_autoencoder or "the student's autoencoder"}
