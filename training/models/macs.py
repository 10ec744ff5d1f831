"""Multiply-accumulate counts of torch modules (FlopCounterMode counts 2 FLOPs per MAC)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_macs(fn: Callable[[], object]) -> float:
    """MACs of one call of ``fn`` (convs, matmuls and linears; elementwise ops are free)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2
