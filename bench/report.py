"""``tsd bench-report``: a pytest-benchmark JSON (tests/benchmarks, run with
``--benchmark-json``) -> the paper's Table 2 (steps) and Table 3 (modes) in Markdown with a
Raspberry Pi 4 estimate beside each measured row, a per-stage table, the teacher-vs-student
ratio, a JSON summary and a roofline-style PNG.

Every figure says what it includes: "whole frame" rows are the viseme front end and
recogniser on 40 ms of audio, the pipeline's glue, the K-step sampler and the decoder (E1)
or the wire encoding (E2); stage rows are one graph call.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.pi4 import PI4, estimate
from training.atomic import write_text
from training.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_VARIANT = ("onnxruntime", "fp32")
"""The variant of Tables 2 and 3 (others are in the per-variant table)."""


@dataclass(frozen=True)
class Row:
    """One benchmark: its test, parameters, extra_info and timings in ms."""

    test: str
    params: dict
    info: dict
    times_ms: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.times_ms.mean())

    @property
    def std(self) -> float:
        return float(self.times_ms.std())

    @property
    def p95(self) -> float:
        return float(np.percentile(self.times_ms, 95))

    def get(self, key: str, default=None):
        return self.params.get(key, self.info.get(key, default))


def read_rows(path: Path) -> tuple[list[Row], dict]:
    """-> (rows, machine_info) of a pytest-benchmark JSON file."""
    try:
        data = json.loads(path.read_text())
        rows = []
        for bench in data["benchmarks"]:
            times = bench["stats"].get("data") or [bench["stats"]["mean"]]
            rows.append(Row(bench["name"].split("[")[0], bench.get("params") or {},
                            bench.get("extra_info") or {}, 1000 * np.asarray(times, float)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a pytest-benchmark JSON file ({exc})") from None
    if not rows:
        raise UserError(f"{path}: no benchmarks in the file")
    return rows, data.get("machine_info", {})


def machine_text(info: dict) -> str:
    cpu = info.get("cpu", {})
    brand = cpu.get("brand_raw") or info.get("processor") or "unknown CPU"
    return (f"{brand}, {cpu.get('count', '?')} logical CPUs, {info.get('machine', '?')}, "
            f"{info.get('system', '?')} {info.get('release', '')}, Python "
            f"{info.get('python_version', '?')}").strip()


def _find(rows: list[Row], test: str, **params) -> list[Row]:
    return [r for r in rows if r.test == test
            and all(r.get(k) == v for k, v in params.items())]


def _one(rows: list[Row], test: str, **params) -> Row | None:
    found = _find(rows, test, **params)
    return found[0] if found else None


def _graph_ms(rows: list[Row], backend: str, precision: str, steps: int, threads: int,
              mode: str) -> float | None:
    """Time of the frame's graph calls alone (sampler + decoder + recogniser)."""
    parts = [_one(rows, "test_generate", backend=backend, precision=precision, steps=steps,
                  threads=threads, sampler="unrolled")]
    if mode == "full":
        parts.append(_one(rows, "test_decoder", backend=backend, precision=precision,
                          threads=threads))
    visemes = _one(rows, "test_visemes_per_frame", backend=backend, precision=precision,
                   threads=threads)
    if any(p is None for p in parts):
        return None
    return sum(p.mean for p in parts) + (visemes.mean if visemes else 0.0)


def glue_profile(rows: list[Row], backend: str) -> dict | None:
    """The cProfile split of E1 frames (test_glue_profile) per frame, in ms."""
    row = _one(rows, "test_glue_profile", backend=backend)
    if row is None or not row.info.get("frames"):
        return None
    frames = row.info["frames"]
    return {"frames": frames, "glue_share": row.info["glue_share"],
            **{k.replace("_s", "_ms"): 1000 * row.info[k] / frames
               for k in ("inference_s", "front_end_s", "glue_s", "total_s")}}


def frame_table(rows: list[Row], mode: str | None, backend: str, precision: str,
                threads: int) -> list[dict]:
    """Whole-frame rows (mode None: both) with the Pi 4 estimate. Its non-MAC part (log-mel
    front end + Python glue per frame) comes from the profile when the run has one, else
    from the whole frame minus its graph calls."""
    out = []
    modes = [mode] if mode else ["full", "hybrid"]
    profile = glue_profile(rows, backend)
    for m in modes:
        for row in sorted(_find(rows, "test_whole_frame", mode=m, backend=backend,
                                precision=precision, threads=threads),
                          key=lambda r: r.get("steps")):
            graphs = _graph_ms(rows, backend, precision, row.get("steps"), threads, m)
            if profile is not None:
                glue = profile["glue_ms"] + profile["front_end_ms"]
            else:
                glue = row.mean - graphs if graphs is not None else 0.0
            pi = estimate(int(row.get("macs", 0)), glue)
            out.append({"mode": m, "steps": row.get("steps"),
                        "resolution": row.get("resolution"), "mean_ms": row.mean,
                        "std_ms": row.std, "p95_ms": row.p95, "fps": 1000 / row.mean,
                        "macs": row.get("macs"), "glue_ms": glue,
                        "pi4_ms": [pi.fast_ms, pi.slow_ms], "pi4_fps": list(pi.fps_range),
                        "pi4_text": (pi.text_ms(), pi.text_fps())})
    return out


def _md_table(header: list[str], lines: list[list[str]]) -> str:
    rule = "|" + "|".join("---" for _ in header) + "|"
    body = ["| " + " | ".join(header) + " |", rule]
    body += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(body)


def table2(frames: list[dict]) -> str:
    return _md_table(
        ["steps", "resolution", "mean ms", "p95 ms", "FPS", "MAC/frame", "Pi 4 est. ms",
         "Pi 4 est. FPS"],
        [[str(f["steps"]), f"{f['resolution']}x{f['resolution']}", f"{f['mean_ms']:.2f}",
          f"{f['p95_ms']:.2f}", f"{f['fps']:.0f}", f"{f['macs'] / 1e6:.0f} M",
          f["pi4_text"][0], f["pi4_text"][1]] for f in frames if f["mode"] == "full"])


def table3(frames: list[dict]) -> str:
    names = {"full": "E1 full", "hybrid": "E2 hybrid"}
    return _md_table(
        ["mode", "steps", "resolution", "mean ms", "p95 ms", "FPS", "Pi 4 est. ms",
         "Pi 4 est. FPS"],
        [[names[f["mode"]], str(f["steps"]), f"{f['resolution']}x{f['resolution']}",
          f"{f['mean_ms']:.2f}", f"{f['p95_ms']:.2f}", f"{f['fps']:.0f}", f["pi4_text"][0],
          f["pi4_text"][1]] for f in frames])


def stage_rows(rows: list[Row]) -> list[dict]:
    out = []
    for row in rows:
        if row.test in ("test_whole_frame", "test_frame_by_teacher_or_student",
                        "test_edge_run_process", "test_glue_profile"):
            continue
        out.append({"stage": row.info.get("stage", row.test),
                    "backend": row.get("backend", "-"), "precision": row.get("precision", "-"),
                    "threads": row.get("threads", "-"), "sampler": row.get("sampler", "-"),
                    "mean_ms": row.mean, "std_ms": row.std, "p95_ms": row.p95,
                    "macs": row.get("macs"),
                    "gflops": 2 * row.get("macs") / row.mean / 1e6 if row.get("macs") else None,
                    "pi4_ms": _stage_pi4(row)})
    return out


def _stage_pi4(row: Row) -> str:
    """Pi 4 estimate of a stage: graphs from their MACs; work a benchmark marks as glue
    (``pi4: glue``, e.g. paste-back) as this machine's time times the glue slowdown."""
    if row.get("macs"):
        return estimate(int(row.get("macs"))).text_ms()
    if row.get("pi4") == "glue":
        return estimate(0, row.mean).text_ms()
    return "-"


def stage_table(stages: list[dict]) -> str:
    return _md_table(
        ["stage", "backend", "precision", "threads", "sampler", "mean ms", "std ms", "p95 ms",
         "GFLOP/s", "Pi 4 est. ms"],
        [[s["stage"], s["backend"], s["precision"], str(s["threads"]), s["sampler"],
          f"{s['mean_ms']:.3f}", f"{s['std_ms']:.3f}", f"{s['p95_ms']:.3f}",
          f"{s['gflops']:.1f}" if s["gflops"] else "-", s.get("pi4_ms", "-")]
         for s in stages])


def variant_table(rows: list[Row], steps: int = 2) -> tuple[str, list[dict]]:
    """E1 whole frame at ``steps`` for every backend, precision and thread count."""
    found = sorted(_find(rows, "test_whole_frame", mode="full", steps=steps),
                   key=lambda r: (r.get("backend"), r.get("precision"), r.get("threads")))
    data = [{"backend": r.get("backend"), "precision": r.get("precision"),
             "threads": r.get("threads"), "mean_ms": r.mean, "p95_ms": r.p95,
             "fps": 1000 / r.mean} for r in found]
    return _md_table(["backend", "precision", "threads", "mean ms", "p95 ms", "FPS"],
                     [[d["backend"], d["precision"], str(d["threads"]), f"{d['mean_ms']:.2f}",
                       f"{d['p95_ms']:.2f}", f"{d['fps']:.0f}"] for d in data]), data


def teacher_ratio(rows: list[Row]) -> dict[str, dict]:
    """Per runtime (torch, onnxruntime): teacher 50-step DDIM frame / student 2-step frame."""
    out = {}
    for runtime in ("torch", "onnxruntime"):
        teacher = _one(rows, "test_frame_by_teacher_or_student", method="teacher_ddim_50",
                       runtime=runtime)
        student = _one(rows, "test_frame_by_teacher_or_student", method="student_2",
                       runtime=runtime)
        if teacher and student:
            out[runtime] = {"teacher_ddim_50_ms": teacher.mean, "student_2_ms": student.mean,
                            "speedup": teacher.mean / student.mean}
    return out


def process_summary(rows: list[Row]) -> dict | None:
    row = _one(rows, "test_edge_run_process")
    if row is None:
        return None
    return {"wall_s_10s_audio": row.mean / 1000, "load_s": row.info.get("load_s"),
            "fps": row.info.get("fps"), "peak_rss_mb": row.info.get("peak_rss_mb"),
            "stages_ms": row.info.get("stages_ms")}


def peak_gflops(rows: list[Row]) -> float | None:
    row = _one(rows, "test_sgemm_peak")
    return 2 * row.info["macs"] / row.mean / 1e6 if row else None


def plot_roofline(stages: list[dict], peak: float | None, path: Path) -> None:
    """Achieved GFLOP/s of each fp32 ONNX graph call vs this CPU's sgemm rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [s for s in stages if s["gflops"] and s["backend"] == "onnxruntime"
              and s["precision"] == "fp32" and s["stage"].split()[0] != "sgemm"]
    labels = [f"{s['stage']} ({s['sampler']})" if s["sampler"] not in ("-", "unrolled")
              else s["stage"] for s in points]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(points) + 1.5))
    colors = ["tab:blue" if s["threads"] == 1 else "tab:orange" for s in points]
    ax.barh([f"{label}, {s['threads']} thr" for label, s in zip(labels, points)],
            [s["gflops"] for s in points], color=colors)
    if peak:
        ax.axvline(peak, color="k", linestyle="--", label=f"sgemm peak {peak:.0f} GFLOP/s")
        ax.legend(loc="lower right")
    ax.set_xlabel("achieved GFLOP/s (2 x counted MACs / mean time)")
    ax.set_title("fp32 ONNX graphs vs this CPU's matrix-multiply rate")
    ax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def bench_report(json_path: Path, out: Path, threads: int = 2) -> dict:
    """Write out/bench.md, out/bench.json and out/roofline.png; -> the summary."""
    rows, machine = read_rows(json_path)
    backend, precision = DEFAULT_VARIANT
    frames = frame_table(rows, None, backend, precision, threads)
    stages = stage_rows(rows)
    variants_md, variants = variant_table(rows)
    summary = {"machine": machine_text(machine), "source": str(json_path),
               "variant": {"backend": backend, "precision": precision, "threads": threads},
               "frames": frames, "variants_e1_2_steps": variants, "stages": stages,
               "teacher_vs_student": teacher_ratio(rows), "process": process_summary(rows),
               "glue_profile": {b: glue_profile(rows, b) for b in ("onnxruntime", "tflite")},
               "sgemm_peak_gflops": peak_gflops(rows), "pi4_assumptions": PI4.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "bench.json", json.dumps(summary, indent=2))
    write_text(out / "bench.md", markdown(summary, variants_md))
    plot_roofline(stages, summary["sgemm_peak_gflops"], out / "roofline.png")
    return summary


def markdown(summary: dict, variants_md: str) -> str:
    v = summary["variant"]
    parts = [f"# Latency ({summary['machine']})",
             f"Measured by `pytest tests/benchmarks` ({summary['source']}); tables 2 and 3 "
             f"use {v['backend']} {v['precision']}, {v['threads']} threads. A whole frame "
             "is the viseme front end and recogniser on 40 ms of audio, the pipeline's glue, "
             "the K-step sampler, then the decoder (E1) or the wire encoding (E2). Pi 4 "
             "columns are estimates from counted MACs (bench/pi4.py), not measurements on a "
             "Pi: MACs / 12-6.5 GMAC/s + the log-mel front end and Python glue measured "
             f"here x {PI4.glue_slowdown:g}.",
             "## Table 2: E1 frame by step count", table2(summary["frames"]),
             "## Table 3: E1 and E2", table3(summary["frames"]),
             "## E1 at 2 steps by variant", variants_md]
    ratios = summary["teacher_vs_student"]
    if ratios:
        parts += ["## Teacher vs student (host, same run, same decoder)",
                  " ".join(f"{runtime}: teacher 50-step DDIM + decoder "
                           f"{r['teacher_ddim_50_ms']:.1f} ms per frame, student 2 steps + "
                           f"decoder {r['student_2_ms']:.2f} ms, {r['speedup']:.0f}x."
                           for runtime, r in ratios.items())]
    process = summary["process"]
    if process:
        parts += ["## The edge-run process",
                  f"10 s of audio offline (2 steps, null sink): {process['wall_s_10s_audio']:.2f}"
                  f" s wall including start-up; bundle load + warm-up {process['load_s']:.2f} s;"
                  f" {process['fps']:.0f} fps; peak resident memory "
                  f"{process['peak_rss_mb']:.0f} MB."]
    profiles = {b: p for b, p in summary["glue_profile"].items() if p}
    if profiles:
        parts += ["## Python glue (cProfile of E1 frames at 2 steps)",
                  _md_table(["backend", "inference ms", "log-mel ms", "glue ms", "frame ms",
                             "glue share"],
                            [[b, f"{p['inference_ms']:.2f}", f"{p['front_end_ms']:.2f}",
                              f"{p['glue_ms']:.2f}", f"{p['total_ms']:.2f}",
                              f"{p['glue_share']:.1%}"] for b, p in profiles.items()])]
    if summary["sgemm_peak_gflops"]:
        parts += [f"sgemm peak (numpy, all cores): {summary['sgemm_peak_gflops']:.0f} GFLOP/s;"
                  " see roofline.png."]
    parts += ["## Stages", stage_table(summary["stages"])]
    return "\n\n".join(parts) + "\n"
