"""Native-vs-Python benchmark of one RMSProp step: the kernel, torch, the scratch formulas.

Every implementation runs on buffers of the same size in the same process; each figure is the
median of repeated timed steps after warm-up, and speedups are ratios within this one run.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import reference
from .functional import rmsprop_step

__all__ = ["BenchRow", "format_table", "run_benchmark"]

BYTES_PER_ELEMENT_F32 = 20  # read param, grad, square_avg; write param, square_avg
LR, ALPHA = 1e-3, 0.99


@dataclass
class BenchRow:
    implementation: str
    elements: int
    median_s: float
    min_s: float
    max_s: float
    repeats: int
    note: str = ""

    @property
    def gbytes_per_s(self) -> float:
        return self.elements * BYTES_PER_ELEMENT_F32 / self.median_s / 1e9


def _time(fn: Callable[[], Any], repeat: int, warmup: int = 2) -> tuple[float, float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def _numpy_cases(n: int, rng: np.random.Generator) -> list[tuple[str, Callable[[], Any], str]]:
    x = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    s = np.zeros(n, np.float32)

    def native() -> None:
        rmsprop_step(x, g, s, lr=LR, alpha=ALPHA)

    xs, gs, ss = x.copy(), g.copy(), s.copy()
    hyper = {"lr": LR, "gamma": ALPHA}

    def scratch_numpy() -> None:
        reference.rmsprop_numpy([(xs, gs)], [ss], hyper)

    return [
        ("native rmsprop_step (numpy)", native, ""),
        ("scratch numpy formula", scratch_numpy, "reference.rmsprop_numpy"),
    ]


def _torch_cases(n: int) -> list[tuple[str, Callable[[], Any], str]]:
    import torch

    from .optimizer import RMSprop

    def make_param() -> torch.nn.Parameter:
        gen = torch.Generator().manual_seed(0)
        p = torch.nn.Parameter(torch.randn(n, generator=gen))
        p.grad = torch.randn(n, generator=gen)
        return p

    cases = []
    p_native = make_param()
    native_opt = RMSprop([p_native], lr=LR, alpha=ALPHA)
    cases.append(("native rmsprop_ext.RMSprop.step", native_opt.step, ""))
    for foreach in (False, True):
        p = make_param()
        opt = torch.optim.RMSprop([p], lr=LR, alpha=ALPHA, foreach=foreach)
        label = "foreach" if foreach else "for-loop"
        cases.append((f"torch.optim.RMSprop ({label})", opt.step, ""))

    p_scratch = make_param()
    s_scratch = torch.zeros(n)
    grad = p_scratch.grad.clone()
    hyper = {"lr": LR, "gamma": ALPHA}

    def scratch_torch() -> None:
        reference.rmsprop_torch([p_scratch], [s_scratch], hyper)
        p_scratch.grad.copy_(grad)  # the textbook step zeroes the gradient; restore it

    cases.append(("scratch torch formula", scratch_torch, "reference.rmsprop_torch + grad reset"))
    return cases


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def run_benchmark(
    sizes: Sequence[int], repeat: int, *, use_torch: bool | None = None, log: Any = sys.stderr
) -> list[BenchRow]:
    """Times every implementation at each size; returns one row per (implementation, size)."""
    if use_torch is None:
        use_torch = torch_available()
    rows: list[BenchRow] = []
    rng = np.random.default_rng(0)
    for n in sizes:
        cases = _numpy_cases(n, rng) + (_torch_cases(n) if use_torch else [])
        for name, fn, note in cases:
            print(f"  timing {name} at {n:,} elements ...", file=log, flush=True)
            median, low, high = _time(fn, repeat)
            rows.append(BenchRow(name, n, median, low, high, repeat, note))
    return rows


def format_table(rows: Sequence[BenchRow]) -> str:
    """A fixed-width table: per size, each row's time relative to the native functional call."""
    lines = []
    header = (
        f"{'implementation':34} {'elements':>11} {'median ms':>10} {'min-max ms':>15} "
        f"{'GB/s':>7} {'native speedup':>15}"
    )
    for n in sorted({r.elements for r in rows}):
        group = [r for r in rows if r.elements == n]
        native = next(r for r in group if r.implementation.startswith("native rmsprop_step"))
        lines.append(header)
        lines.append("-" * len(header))
        for r in group:
            spread = f"{r.min_s * 1e3:.2f}-{r.max_s * 1e3:.2f}"
            speedup = r.median_s / native.median_s
            lines.append(
                f"{r.implementation:34} {n:>11,} {r.median_s * 1e3:>10.3f} {spread:>15} "
                f"{r.gbytes_per_s:>7.1f} {speedup:>14.2f}x"
            )
        lines.append("")
    return "\n".join(lines)


def rows_as_dicts(rows: Sequence[BenchRow]) -> list[dict[str, Any]]:
    return [{**asdict(r), "gbytes_per_s": r.gbytes_per_s} for r in rows]
