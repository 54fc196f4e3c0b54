"""Native-vs-Python benchmark of one RMSProp step, measured against this machine's memory roofline.

Every implementation runs in this one process on buffers of the same size, so every ratio compares
figures from the same run. Each figure is the median of repeated, timed steps after warm-up; the
buffers of a case are made just before it is timed and freed right after.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import _core, reference
from ._threads import get_num_threads
from .functional import rmsprop_step

__all__ = ["VARIANTS", "BenchConfig", "Measurement", "run_benchmark", "torch_available"]

LR, ALPHA = 1e-4, 0.99
PYTHON_LOOP_SAMPLE = 2000

# Bytes one step must move per float32 element: read param, grad, square_avg and write param,
# square_avg (20), plus a read and a write of momentum_buffer or grad_avg (+8).
VARIANTS: dict[str, tuple[dict[str, Any], int]] = {
    "plain": ({}, 20),
    "momentum": ({"momentum": 0.9}, 28),
    "centered": ({"centered": True}, 28),
}

StepFn = Callable[[], Any]


@dataclass
class Measurement:
    section: str
    implementation: str
    variant: str
    elements: int
    tensors: int
    threads: int
    bytes_per_element: int
    median_s: float
    min_s: float
    max_s: float
    repeats: int
    note: str = ""

    @property
    def elements_per_s(self) -> float:
        return self.elements / self.median_s

    @property
    def gbytes_per_s(self) -> float:
        return self.elements * self.bytes_per_element / self.median_s / 1e9

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "elements_per_s": self.elements_per_s,
            "gbytes_per_s": self.gbytes_per_s,
        }


@dataclass
class BenchConfig:
    sizes: list[int]
    variant_size: int
    many: tuple[int, int]  # (tensors, elements each)
    small_model: tuple[int, int]
    scaling_sizes: list[int]
    thread_counts: list[int]
    repeat: int
    budget_s: float  # time one case may take, past its warm-up, before repeats are cut
    use_torch: bool = True
    progress: bool = True
    total_cases: int = field(default=0, init=False)

    @staticmethod
    def make(
        quick: bool,
        use_torch: bool,
        threads: int,
        sizes: Sequence[int] | None = None,
        repeat: int | None = None,
    ) -> BenchConfig:
        all_threads = list(range(1, threads + 1))
        if quick:
            return BenchConfig(
                sizes=list(sizes or [1 << 16, 1 << 20, 1 << 24]),
                variant_size=1 << 24,
                many=(1000, 1 << 14),
                small_model=(100, 4096),
                scaling_sizes=[1 << 18],
                thread_counts=sorted({1, threads}),
                repeat=repeat or 7,
                budget_s=0.6,
                use_torch=use_torch,
            )
        return BenchConfig(
            sizes=list(
                sizes or [1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 26]
            ),
            variant_size=1 << 24,
            many=(1000, 1 << 14),
            small_model=(100, 4096),
            scaling_sizes=[1 << 18, 1 << 24],
            thread_counts=all_threads,
            repeat=repeat or 21,
            budget_s=3.0,
            use_torch=use_torch,
        )


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


# ---------------------------------------------------------------- timing


def time_step(step: StepFn, repeat: int, budget_s: float) -> tuple[float, float, float, int]:
    """Median, min and max seconds of `step` over up to `repeat` timed calls after warm-up."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    step()  # a second warm-up: lazy state, page faults and caches settle
    repeats = max(3, min(repeat, int(budget_s / max(first, 1e-9))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times), repeats


@contextmanager
def torch_threads(threads: int, use_torch: bool) -> Iterator[None]:
    """Runs the torch peers on the same number of threads as the native kernel."""
    if not use_torch:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled and total > 0

    def show(self, label: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {label[:60]:60}")
        sys.stderr.flush()

    def advance(self) -> None:
        self.done += 1

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 110 + "\r")
            sys.stderr.flush()


# ---------------------------------------------------------------- the implementations


def _arrays(n: int, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = [rng.standard_normal(n, dtype=np.float32) for _ in range(count)]
    out[2] = np.abs(out[2])  # square_avg >= 0
    return out


def native_functional(n: int, variant: str, threads: int) -> StepFn:
    options, _ = VARIANTS[variant]
    x, g, s, b, a = _arrays(n, 5)
    state = {}
    if "momentum" in options:
        state["momentum_buffer"] = b
    if "centered" in options:
        state["grad_avg"] = a

    def step() -> None:
        rmsprop_step(x, g, s, lr=LR, alpha=ALPHA, num_threads=threads, **options, **state)

    return step


def roofline(n: int, variant: str, threads: int) -> StepFn:
    options, _ = VARIANTS[variant]
    x, g, s, b, a = _arrays(n, 5)
    momentum = [b] if "momentum" in options else None
    centered = [a] if "centered" in options else None

    def step() -> None:
        _core.roofline_step_many(
            [x],
            [g],
            [s],
            momentum,
            centered,
            momentum=options.get("momentum", 0.0),
            centered=options.get("centered", False),
            num_threads=threads,
        )

    return step


def numpy_scratch(n: int, variant: str, threads: int) -> StepFn:
    x, g, s = _arrays(n, 3)
    hyper = {"lr": LR, "gamma": ALPHA}
    return lambda: reference.rmsprop_numpy([(x, g)], [s], hyper)


def python_loop(n: int, variant: str, threads: int) -> StepFn:
    """The scalar textbook formula in a Python loop over PYTHON_LOOP_SAMPLE elements."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(PYTHON_LOOP_SAMPLE).tolist()
    g = rng.standard_normal(PYTHON_LOOP_SAMPLE).tolist()
    s = [0.0] * PYTHON_LOOP_SAMPLE
    eps = reference.TEXTBOOK_EPS

    def step() -> None:
        for i in range(PYTHON_LOOP_SAMPLE):
            s[i] = ALPHA * s[i] + (1 - ALPHA) * g[i] * g[i]
            x[i] -= LR * g[i] / math.sqrt(s[i] + eps)

    return step


def _torch_params(count: int, n: int) -> list[Any]:
    import torch

    gen = torch.Generator().manual_seed(0)
    params = []
    for _ in range(count):
        p = torch.nn.Parameter(torch.randn(n, generator=gen))
        p.grad = torch.randn(n, generator=gen)
        params.append(p)
    return params


def ours_optimizer(count: int, n: int, variant: str) -> StepFn:
    from .optimizer import RMSprop

    return RMSprop(_torch_params(count, n), lr=LR, alpha=ALPHA, **VARIANTS[variant][0]).step


def torch_rmsprop(count: int, n: int, variant: str, foreach: bool) -> StepFn:
    import torch

    opt = torch.optim.RMSprop(
        _torch_params(count, n), lr=LR, alpha=ALPHA, foreach=foreach, **VARIANTS[variant][0]
    )
    return opt.step


def torch_fused_adagrad(count: int, n: int, variant: str) -> StepFn:
    import torch

    return torch.optim.Adagrad(_torch_params(count, n), lr=LR, fused=True).step


def torch_scratch(n: int, variant: str, threads: int) -> StepFn:
    import torch

    (p,) = _torch_params(1, n)
    s = torch.zeros(n)
    grad = p.grad.clone()
    hyper = {"lr": LR, "gamma": ALPHA}

    def step() -> None:
        reference.rmsprop_torch([p], [s], hyper)
        p.grad.copy_(grad)  # the textbook step zeroes the gradient; restore it

    return step


# (label, factory(n, variant, threads), variants it runs, needs torch, note)
SingleTensorCase = tuple[str, Callable[[int, str, int], StepFn], tuple[str, ...], bool, str]

ALL = tuple(VARIANTS)
SINGLE_TENSOR_CASES: list[SingleTensorCase] = [
    ("roofline kernel", roofline, ALL, False, "same bytes, trivial arithmetic"),
    ("native rmsprop_step", native_functional, ALL, False, ""),
    ("native RMSprop.step", lambda n, v, t: ours_optimizer(1, n, v), ALL, True, ""),
    ("torch RMSprop for-loop", lambda n, v, t: torch_rmsprop(1, n, v, False), ALL, True, ""),
    ("torch RMSprop foreach", lambda n, v, t: torch_rmsprop(1, n, v, True), ALL, True, ""),
    (
        "torch fused Adagrad",
        lambda n, v, t: torch_fused_adagrad(1, n, v),
        ("plain",),
        True,
        "moves the same 20 B/element",
    ),
    ("numpy scratch formula", numpy_scratch, ("plain",), False, "reference.rmsprop_numpy"),
    ("torch scratch formula", torch_scratch, ("plain",), True, "reference.rmsprop_torch"),
    (
        "Python scalar loop",
        python_loop,
        ("plain",),
        False,
        f"timed on {PYTHON_LOOP_SAMPLE:,} elements, extrapolated",
    ),
]


# ---------------------------------------------------------------- the sections


class Runner:
    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.results: list[Measurement] = []
        self.progress = Progress(0, config.progress)

    def measure(
        self,
        section: str,
        label: str,
        factory: Callable[[], StepFn],
        *,
        variant: str,
        elements: int,
        tensors: int,
        threads: int,
        note: str = "",
        extrapolate_from: int = 0,
    ) -> None:
        self.progress.show(f"{section}: {label} @ {elements:,}")
        step = factory()
        with torch_threads(threads, self.config.use_torch):
            median, low, high, repeats = time_step(step, self.config.repeat, self.config.budget_s)
        del step
        gc.collect()
        if extrapolate_from:
            scale = elements / extrapolate_from
            median, low, high = median * scale, low * scale, high * scale
        self.results.append(
            Measurement(
                section,
                label,
                variant,
                elements,
                tensors,
                threads,
                VARIANTS[variant][1],
                median,
                low,
                high,
                repeats,
                note,
            )
        )
        self.progress.advance()

    def single_tensor_cases(self, variants: Sequence[str]) -> list[SingleTensorCase]:
        return [
            c
            for c in SINGLE_TENSOR_CASES
            if (self.config.use_torch or not c[3]) and any(v in c[2] for v in variants)
        ]

    def plan(self) -> list[Callable[[], None]]:
        c, threads = self.config, max(self.config.thread_counts)
        jobs: list[Callable[[], None]] = []
        for n in c.sizes:
            for label, make, _variants, _, note in self.single_tensor_cases(["plain"]):
                jobs.append(self._single(label, make, "sizes", n, "plain", threads, note))
        for variant in ("momentum", "centered"):
            for label, make, variants, _, note in self.single_tensor_cases([variant]):
                if variant in variants:
                    jobs.append(
                        self._single(
                            label, make, "variants", c.variant_size, variant, threads, note
                        )
                    )
        if c.use_torch:
            jobs += self._many_tensor_jobs(*c.many, threads)
            jobs += self._small_model_jobs(*c.small_model, threads)
        for n in c.scaling_sizes:
            for t in c.thread_counts:
                for label, make in (
                    ("roofline kernel", roofline),
                    ("native rmsprop_step", native_functional),
                ):
                    jobs.append(self._single(label, make, "threads", n, "plain", t, ""))
        return jobs

    def _single(
        self,
        label: str,
        make: Callable[[int, str, int], StepFn],
        section: str,
        n: int,
        variant: str,
        threads: int,
        note: str,
    ) -> Callable[[], None]:
        extrapolate = PYTHON_LOOP_SAMPLE if make is python_loop else 0
        return lambda: self.measure(
            section,
            label,
            lambda: make(n, variant, threads),
            variant=variant,
            elements=n,
            tensors=1,
            threads=threads,
            note=note,
            extrapolate_from=extrapolate,
        )

    def _many_tensor_jobs(self, count: int, n: int, threads: int) -> list[Callable[[], None]]:
        total = count * n
        makers: list[tuple[str, int, Callable[[], StepFn]]] = [
            ("native RMSprop.step", 1, lambda: ours_optimizer(1, total, "plain")),
            ("native RMSprop.step", count, lambda: ours_optimizer(count, n, "plain")),
            ("torch RMSprop foreach", count, lambda: torch_rmsprop(count, n, "plain", True)),
            ("torch fused Adagrad", count, lambda: torch_fused_adagrad(count, n, "plain")),
        ]
        return [
            self._job("many tensors", label, make, "plain", total, tensors, threads)
            for label, tensors, make in makers
        ]

    def _small_model_jobs(self, count: int, n: int, threads: int) -> list[Callable[[], None]]:
        makers: list[tuple[str, Callable[[], StepFn]]] = [
            ("native RMSprop.step", lambda: ours_optimizer(count, n, "plain")),
            ("torch RMSprop for-loop", lambda: torch_rmsprop(count, n, "plain", False)),
            ("torch RMSprop foreach", lambda: torch_rmsprop(count, n, "plain", True)),
            ("torch fused Adagrad", lambda: torch_fused_adagrad(count, n, "plain")),
        ]
        return [
            self._job("small model", label, make, "plain", count * n, count, threads)
            for label, make in makers
        ]

    def _job(
        self,
        section: str,
        label: str,
        make: Callable[[], StepFn],
        variant: str,
        elements: int,
        tensors: int,
        threads: int,
    ) -> Callable[[], None]:
        return lambda: self.measure(
            section,
            label,
            make,
            variant=variant,
            elements=elements,
            tensors=tensors,
            threads=threads,
        )

    def run(self) -> list[Measurement]:
        jobs = self.plan()
        self.progress = Progress(len(jobs), self.config.progress)
        for job in jobs:
            job()
        self.progress.close()
        return self.results


def run_benchmark(config: BenchConfig) -> list[Measurement]:
    """Runs every section of `config`; returns one Measurement per timed case."""
    return Runner(config).run()


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "threads": get_num_threads()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = names[0] if names else ""
    except OSError:
        info["cpu"] = ""
    return info
