"""``python -m rmsprop_ext bench``: native-vs-Python benchmark of one RMSProp step, measured
against this machine's memory roofline and beside torch's strongest peers.

Every implementation runs in this one process on buffers of the same size, so every ratio compares
figures from the same run. Each figure is the median of repeated, timed steps after warm-up; the
cases of a group are timed interleaved, in a new order every round.

- ``config``: the sections, the variants and a measurement;
- ``cases``: the implementations, each a step function over the group's shared buffers;
- ``precision``: the storage forms of the "precision" section;
- ``timing``: the interleaved rounds;
- ``runner``: which cases run together, and the run;
- ``report`` and ``plot``: the tables, the target summary and the PNG.
"""

from __future__ import annotations

from .cases import (
    compiled_step,
    inductor_available,
    native_functional,
    numpy_scratch,
    ours_optimizer,
    release_shared_buffers,
    roofline,
    torch_compiled_rmsprop,
    torch_fused_adagrad,
    torch_rmsprop,
    transparent_huge_pages,
)
from .config import ALPHA, LR, SECTIONS, VARIANTS, BenchConfig, Measurement, torch_available
from .report import format_report, summary_lines
from .runner import machine_info, run_benchmark
from .timing import Progress, time_interleaved

__all__ = [
    "ALPHA",
    "LR",
    "SECTIONS",
    "VARIANTS",
    "BenchConfig",
    "Measurement",
    "Progress",
    "compiled_step",
    "format_report",
    "inductor_available",
    "machine_info",
    "native_functional",
    "numpy_scratch",
    "ours_optimizer",
    "release_shared_buffers",
    "roofline",
    "run_benchmark",
    "summary_lines",
    "time_interleaved",
    "torch_available",
    "torch_compiled_rmsprop",
    "torch_fused_adagrad",
    "torch_rmsprop",
    "transparent_huge_pages",
]
