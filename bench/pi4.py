"""The Raspberry Pi 4 estimate: no Pi is available to this project, so Pi numbers are
estimated from counted MACs. Every assumption is here, once, and printed with the tables.

time(frame) = MACs(frame) / effective throughput + glue measured here x GLUE_SLOWDOWN

- MACs: counted on the bundle's ONNX graphs (export/macs.py), i.e. what ships.
- Peak: 4 Cortex-A72 cores x 1.5 GHz x 8 fp32 FLOP per cycle (a 4-lane NEON FMA = 8 FLOP)
  = 48 GFLOP/s.
- Effective throughput, a range: good CNN runtimes reach about half of peak on dense 3x3
  convolutions (24 GFLOP/s = 12 GMAC/s: the optimistic end); the pessimistic end is a public
  Pi 4 measurement, MobileNet v1 1.0/224 (569 M MAC) in 87 ms on the CPU with TFLite
  (dev.to/tildalice, "MobileNet vs EfficientNet-Lite: Pi 4 First Model 38ms Gap", 2026):
  6.5 GMAC/s. Depthwise-heavy MobileNet is a poor case for MACs/s, so our dense UNets
  should sit nearer the optimistic end, but the range is what we quote.
- int8 gets no speed-up in the estimate: the A72 has no dot-product instructions, so int8
  convolutions are not reliably faster there (edge-run --autotune decides on the device).
- Glue (the audio front end, Python, pre/post-processing): measured here as whole frame
  minus graph time, times GLUE_SLOWDOWN, an assumed single-thread ratio of this x86 core to
  an A72 at 1.5 GHz (not measured).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Pi4Assumptions:
    peak_gflops: float = 48.0
    """4 x A72 x 1.5 GHz x 8 fp32 FLOP/cycle."""
    optimistic_gmacs: float = 12.0
    """Half of peak, in MAC/s (1 MAC = 2 FLOP): dense 3x3 convolutions in a good runtime."""
    pessimistic_gmacs: float = 6.5
    """MobileNet v1 1.0/224, 569 M MAC in 87 ms on a Pi 4 CPU (TFLite), a public figure."""
    glue_slowdown: float = 4.0
    """Assumed: one A72 core at 1.5 GHz is this many times slower than one core here."""

    def to_dict(self) -> dict:
        return asdict(self)


PI4 = Pi4Assumptions()


@dataclass(frozen=True)
class Pi4Estimate:
    fast_ms: float
    slow_ms: float

    @property
    def fps_range(self) -> tuple[float, float]:
        return 1000.0 / self.slow_ms, 1000.0 / self.fast_ms

    def text_ms(self) -> str:
        return f"{self.fast_ms:.1f}-{self.slow_ms:.1f}"

    def text_fps(self) -> str:
        low, high = self.fps_range
        return f"{low:.0f}-{high:.0f}"


def estimate(macs: int, glue_ms_here: float = 0.0, assumptions: Pi4Assumptions = PI4
             ) -> Pi4Estimate:
    glue = max(glue_ms_here, 0.0) * assumptions.glue_slowdown
    return Pi4Estimate(macs / (assumptions.optimistic_gmacs * 1e6) + glue,
                       macs / (assumptions.pessimistic_gmacs * 1e6) + glue)
