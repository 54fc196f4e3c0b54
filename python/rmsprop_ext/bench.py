"""Native-vs-Python benchmark of one RMSProp step, measured against this machine's memory roofline.

Every implementation runs in this one process on buffers of the same size, so every ratio compares
figures from the same run. Each figure is the median of repeated, timed steps after warm-up; the
buffers of a case are made just before it is timed and freed right after.
"""

from __future__ import annotations

import gc
import math
import os
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from . import _core, reference
from ._threads import get_num_threads
from .bench_precision import precision_cases
from .functional import rmsprop_step

__all__ = [
    "SECTIONS",
    "VARIANTS",
    "BenchConfig",
    "Measurement",
    "run_benchmark",
    "torch_available",
]

SECTIONS = ("sizes", "variants", "precision", "many", "small", "pages", "threads")

LR, ALPHA = 1e-4, 0.99
PYTHON_LOOP_SAMPLE = 2000
# The small-model section measures per-step overhead, so its data stays in cache: every case
# runs this many steps back to back in each round.
SMALL_MODEL_STEPS_PER_ROUND = 20

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
    bytes_per_element: float
    median_s: float
    min_s: float
    max_s: float
    repeats: int
    note: str = ""
    # Seconds per step in each round, in round order: rows of one group share their rounds, so
    # two of them can be compared round by round.
    samples: list[float] = field(default_factory=list)

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
    precision_sizes: list[int]
    thread_counts: list[int]
    repeat: int
    budget_s: float  # time one group may take, past its warm-up, before rounds are cut
    min_rounds: int = 3  # rounds even when that takes longer than budget_s
    use_torch: bool = True
    progress: bool = True
    # The sections to run (None: all of SECTIONS).
    sections: set[str] | None = None
    total_cases: int = field(default=0, init=False)

    def runs(self, section: str) -> bool:
        return self.sections is None or section in self.sections

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
                precision_sizes=[1 << 20, 1 << 24],
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
            precision_sizes=[1 << 20, 1 << 24],
            thread_counts=all_threads,
            repeat=repeat or 21,
            budget_s=20.0,
            min_rounds=11,
            use_torch=use_torch,
        )


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


# ---------------------------------------------------------------- timing


BLOCK_S = 1e-3  # a round runs each case for about this long, so tiny steps are not timer noise


def time_interleaved(
    steps: Sequence[StepFn],
    repeat: int,
    budget_s: float,
    inner: int = 0,
    pace: Sequence[bool] | None = None,
    min_rounds: int = 3,
) -> list[list[float]]:
    """Seconds per step of each of `steps`: one block of each per round, in a new order each round.

    Interleaving makes every case see the same machine: on a shared, noisy host a slow spell then
    hits all of them alike instead of whichever case happened to run during it. Every case runs
    the same number of steps back to back in a round (`inner`, or enough for the slowest case to
    fill BLOCK_S) after one untimed step, so each is timed as a loop of its own steps would run,
    whichever case (perhaps sharing its buffers) ran before. `pace` marks the cases that count
    for the choice of `inner` (a case timed on a sample does not).
    """
    first = []
    for step in steps:
        start = time.perf_counter()
        step()
        first.append(time.perf_counter() - start)
        step()  # a second warm-up: lazy state, page faults and caches settle
    pacing = [f for f, p in zip(first, pace or [True] * len(steps)) if p] or first
    if inner <= 0:
        inner = max(1, int(BLOCK_S / max(max(pacing), 1e-9)))
    rounds = max(min_rounds, min(repeat, int(budget_s / max(sum(first) * (inner + 1), 1e-9))))
    times: list[list[float]] = [[] for _ in steps]
    order = list(range(len(steps)))
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        # A new order every round: what a case leaves behind (freed temporaries, a memory that
        # runs slower for a while after heavy work on this VM) then falls on a different case
        # each time instead of always on the one that follows it.
        shuffle(order)
        for i in order:
            step = steps[i]
            step()  # untimed: its own data is back in cache, whatever case ran before it
            t0 = time.perf_counter()
            for _ in range(inner):
                step()
            times[i].append((time.perf_counter() - t0) / inner)
    return times


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
    """A one-line progress bar on stderr, drawn only on a terminal and at most 10 times a second:
    redrawing it on every step woke the process reading the output often enough to slow the
    very steps being timed."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done = total, 0
        self.enabled = enabled and total > 0 and sys.stderr.isatty()
        self.last_draw = 0.0

    def show(self, label: str) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last_draw < 0.1 and self.done < self.total):
            return
        self.last_draw = now
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


# Buffers shared by every case of one group: the roofline kernel, the native calls, each torch
# optimizer (its parameter, gradient and state) and the Python formulas all step on the very same
# memory, so no case gains or loses by where (or on what pages) its own buffers would sit.
_SHARED: dict[int, list[np.ndarray]] = {}

CACHE_LINE_BYTES = 64
PAGE_BYTES = 4096


def _aligned(n: int) -> np.ndarray:
    """n float32 starting one cache line into a page, as torch's allocator returns large tensors
    (each mapped on its own). numpy's heap packs arrays allocated one after another a few bytes
    apart beyond their size, and a written buffer that starts just above a read one slows every
    kernel's loop (docs/storage_speed.md, "Buffers that start just above each other"): a layout
    torch's tensors of this size never have, so the peers would not meet it."""
    raw = np.empty(n + (PAGE_BYTES + CACHE_LINE_BYTES) // 4, dtype=np.float32)
    skip = ((CACHE_LINE_BYTES - raw.ctypes.data) % PAGE_BYTES) // 4
    return raw[skip : skip + n]


def _arrays(n: int, count: int) -> list[np.ndarray]:
    """param, grad, square_avg and `count - 3` more state buffers (momentum_buffer or grad_avg,
    zero) of n float32: the group's shared set, grown when a case needs more buffers."""
    arrays = _SHARED.setdefault(n, [])
    rng = np.random.default_rng(len(arrays))
    while len(arrays) < count:
        a = _aligned(n)
        if len(arrays) < 3:
            a[:] = rng.standard_normal(n, dtype=np.float32)
        else:
            a[:] = 0.0
        if len(arrays) == 2:
            np.abs(a, out=a)  # square_avg >= 0
        arrays.append(a)
    return arrays[:count]


def release_shared_buffers() -> None:
    _SHARED.clear()


def _extra_state(variant: str, extra: Sequence[Any]) -> dict[str, Any]:
    """The variant's extra state buffer by its RMSprop name (momentum_buffer or grad_avg), taken
    from the buffers _arrays returns past square_avg."""
    options, _ = VARIANTS[variant]
    state: dict[str, Any] = {}
    if "momentum" in options:
        state["momentum_buffer"] = extra[0]
    if "centered" in options:
        state["grad_avg"] = extra[0]
    return state


def _params_on_shared_memory(
    count: int, n: int, variant: str = "plain"
) -> tuple[list[Any], dict[str, Any]]:
    """count parameters of n elements, with gradients, that are views of the group's shared flat
    param and grad of count * n elements; returns them and the shared RMSProp state by name."""
    import torch

    options, _ = VARIANTS[variant]
    param, grad, square_avg, *extra = map(torch.from_numpy, _arrays(count * n, 3 + len(options)))
    params = [torch.nn.Parameter(param[i * n : (i + 1) * n]) for i in range(count)]
    for i, p in enumerate(params):
        p.grad = grad[i * n : (i + 1) * n]
    return params, {"square_avg": square_avg, **_extra_state(variant, extra)}


def _share_state(opt: Any, state: dict[str, Any], n: int) -> None:
    """Points the optimizer's per-parameter state at views of the shared buffers: after one
    step (which builds the state), every optimizer updates the same state memory."""
    opt.step()
    for group in opt.param_groups:
        for i, p in enumerate(group["params"]):
            for key, buffer in state.items():
                if key not in opt.state[p]:
                    raise KeyError(f"{type(opt).__name__} keeps no {key!r} state")
                opt.state[p][key] = buffer[i * n : (i + 1) * n]
    if hasattr(opt, "_plans"):
        opt._plans = []  # rmsprop_ext prepares its step again, over the new state


def ours_on_shared_memory(count: int, n: int, variant: str = "plain") -> StepFn:
    """rmsprop_ext.RMSprop over `count` parameters of `n` elements that are views of the group's
    shared buffers: 1 x N and count x n then run on the very same memory, and their ratio shows
    the per-tensor overhead alone."""
    from .optimizer import RMSprop

    params, state = _params_on_shared_memory(count, n, variant)
    opt = RMSprop(params, lr=LR, alpha=ALPHA, **VARIANTS[variant][0])
    _share_state(opt, state, n)
    return opt.step


def transparent_huge_pages() -> str:
    """The kernel's THP mode ("always", "madvise", "never"), or "" where it cannot be read."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return next(word[1:-1] for word in f.read().split() if word.startswith("["))
    except (OSError, StopIteration):
        return ""


def _numpy_hugepage_switch() -> Callable[[bool], bool] | None:
    """numpy's switch for madvise(MADV_HUGEPAGE) on its large allocations (on by default on
    Linux), or None where this numpy has none."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            switch = getattr(__import__(module, fromlist=["_"]), "_set_madvise_hugepage", None)
        except ImportError:
            continue
        if switch is not None:
            return switch  # type: ignore[no-any-return]
    return None


def native_on_pages(n: int, huge: bool, threads: int) -> StepFn:
    """The native step on its own param, grad and square_avg, backed by 2 MiB transparent huge
    pages (what numpy asks for, and torch with THP_MEM_ALLOC_ENABLE=1) or by 4 KiB pages (what
    torch's allocator gets by default)."""
    switch = _numpy_hugepage_switch()
    assert switch is not None
    previous = switch(huge)
    try:
        x, g, s = (_aligned(n) for _ in range(3))
    finally:
        switch(previous)
    rng = np.random.default_rng(0)
    for a in (x, g, s):
        a[:] = rng.standard_normal(n, dtype=np.float32)
    np.abs(s, out=s)
    return lambda: rmsprop_step(x, g, s, lr=LR, alpha=ALPHA, num_threads=threads)


def native_functional(n: int, variant: str, threads: int, rounding: str = "torch") -> StepFn:
    options, _ = VARIANTS[variant]
    x, g, s, *extra = _arrays(n, 3 + len(options))
    state = _extra_state(variant, extra)

    def step() -> None:
        rmsprop_step(
            x, g, s, lr=LR, alpha=ALPHA, num_threads=threads, rounding=rounding, **options, **state
        )

    return step


def roofline(n: int, variant: str, threads: int) -> StepFn:
    options, _ = VARIANTS[variant]
    x, g, s, *extra = _arrays(n, 3 + len(options))
    momentum = extra if "momentum" in options else None
    centered = extra if "centered" in options else None

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
    """count parameters of n elements with gradients, each allocated on its own."""
    import torch

    gen = torch.Generator().manual_seed(0)
    params = []
    for _ in range(count):
        p = torch.nn.Parameter(torch.randn(n, generator=gen))
        p.grad = torch.randn(n, generator=gen)
        params.append(p)
    return params


def ours_optimizer(count: int, n: int, variant: str) -> StepFn:
    """rmsprop_ext.RMSprop: on the shared buffers for one tensor, else on its own tensors."""
    from .optimizer import RMSprop

    if count == 1:
        return ours_on_shared_memory(1, n, variant)
    return RMSprop(_torch_params(count, n), lr=LR, alpha=ALPHA, **VARIANTS[variant][0]).step


def torch_rmsprop(count: int, n: int, variant: str, foreach: bool) -> StepFn:
    import torch

    if count > 1:
        params = _torch_params(count, n)
        return torch.optim.RMSprop(
            params, lr=LR, alpha=ALPHA, foreach=foreach, **VARIANTS[variant][0]
        ).step
    params, state = _params_on_shared_memory(1, n, variant)
    opt = torch.optim.RMSprop(params, lr=LR, alpha=ALPHA, foreach=foreach, **VARIANTS[variant][0])
    _share_state(opt, state, n)
    return opt.step


def inductor_available() -> bool:
    """Whether torch.compile's inductor backend can build here: it compiles C++ with the
    system's compiler."""
    import shutil

    return torch_available() and any(shutil.which(cc) for cc in ("g++", "c++", "clang++"))


def compiled_step(step: Callable[[], Any]) -> StepFn:
    """torch.compile(step), compiled here by one call (before any timing); the step it returns
    carries the compile time as its `note`."""
    import torch

    with warnings.catch_warnings():
        # inductor's import calls torch's own deprecated torch.jit.script_method (torch 2.13)
        warnings.filterwarnings(
            "ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning
        )
        compiled = torch.compile(step)
        start = time.perf_counter()
        compiled()
        seconds = time.perf_counter() - start

    def run() -> None:
        compiled()

    run.note = f"torch.compile(opt.step); compiled in {seconds:.1f} s"  # type: ignore[attr-defined]
    return run


def torch_compiled_rmsprop(count: int, n: int, variant: str) -> StepFn:
    """torch.compile(opt.step) of torch.optim.RMSprop, as the PyTorch docs suggest for a faster
    optimizer: inductor generates one C++ loop for the whole step (see compiled_step)."""
    import torch

    params, state = _params_on_shared_memory(count, n, variant)
    opt = torch.optim.RMSprop(params, lr=LR, alpha=ALPHA, **VARIANTS[variant][0])
    _share_state(opt, state, n)
    return compiled_step(opt.step)


def torch_fused_adagrad(count: int, n: int, variant: str) -> StepFn:
    import torch

    if count > 1:
        return torch.optim.Adagrad(_torch_params(count, n), lr=LR, fused=True).step
    params, state = _params_on_shared_memory(1, n)
    opt = torch.optim.Adagrad(params, lr=LR, fused=True)
    # Adagrad's sum takes square_avg's memory: the same 20 bytes per element on the same buffers
    # as rmsprop_ext. One sums squares and the other averages them, so the values stay finite.
    _share_state(opt, {"sum": state["square_avg"]}, n)
    return opt.step


def torch_scratch(n: int, variant: str, threads: int) -> StepFn:
    (p,), state = _params_on_shared_memory(1, n)
    s = state["square_avg"]
    grad = p.grad.clone()
    hyper = {"lr": LR, "gamma": ALPHA}

    def step() -> None:
        reference.rmsprop_torch([p], [s], hyper)
        p.grad.copy_(grad)  # the textbook step zeroes the gradient; restore it

    return step


# The functional step with rounding="fused": what following torch's square root costs.
IEEE_NATIVE = "native, IEEE sqrt"

# torch.compile's step: needs torch and a C++ compiler for inductor.
COMPILED_TORCH = "torch RMSprop compiled"

# (label, factory(n, variant, threads), variants it runs, needs torch, note)
SingleTensorCase = tuple[str, Callable[[int, str, int], StepFn], tuple[str, ...], bool, str]

ALL = tuple(VARIANTS)
SINGLE_TENSOR_CASES: list[SingleTensorCase] = [
    ("roofline kernel", roofline, ALL, False, "same bytes, trivial arithmetic"),
    ("native rmsprop_step", native_functional, ALL, False, ""),
    (
        IEEE_NATIVE,
        lambda n, v, t: native_functional(n, v, t, rounding="fused"),
        ALL,
        False,
        "IEEE square roots instead of torch's MKL ones",
    ),
    ("native RMSprop.step", lambda n, v, t: ours_optimizer(1, n, v), ALL, True, ""),
    ("torch RMSprop for-loop", lambda n, v, t: torch_rmsprop(1, n, v, False), ALL, True, ""),
    ("torch RMSprop foreach", lambda n, v, t: torch_rmsprop(1, n, v, True), ALL, True, ""),
    (
        COMPILED_TORCH,
        lambda n, v, t: torch_compiled_rmsprop(1, n, v),
        ALL,
        True,
        "torch.compile(opt.step)",
    ),
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


@dataclass
class Case:
    label: str
    make: Callable[[], StepFn]
    variant: str = "plain"
    tensors: int = 1
    note: str = ""
    extrapolate_from: int = 0  # timed on this many elements, reported for `elements`
    threads: int = 0  # the native threads of this case when it differs from the group's
    bytes_per_element: float = 0  # when it is not the variant's (the precision section)


class Runner:
    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.results: list[Measurement] = []
        self.progress = Progress(0, config.progress)

    def measure_group(
        self, section: str, cases: Sequence[Case], elements: int, threads: int, inner: int = 0
    ) -> None:
        """Times `cases` interleaved with each other; one Measurement each."""
        self.progress.show(f"{section}: {len(cases)} implementations @ {elements:,}, {threads} thr")
        with torch_threads(threads, self.config.use_torch):
            steps = [case.make() for case in cases]
            # A step may say more about itself than its case could before it was made (the
            # compiled peer: its compile time).
            notes = [getattr(step, "note", case.note) for case, step in zip(cases, steps)]
            pace = [not case.extrapolate_from for case in cases]
            times = time_interleaved(
                steps, self.config.repeat, self.config.budget_s, inner, pace, self.config.min_rounds
            )
        del steps
        release_shared_buffers()
        gc.collect()
        for case, t, note in zip(cases, times, notes):
            scale = elements / case.extrapolate_from if case.extrapolate_from else 1.0
            self.results.append(
                Measurement(
                    section,
                    case.label,
                    case.variant,
                    elements,
                    case.tensors,
                    case.threads or threads,
                    case.bytes_per_element or VARIANTS[case.variant][1],
                    statistics.median(t) * scale,
                    min(t) * scale,
                    max(t) * scale,
                    len(t),
                    note,
                    [s * scale for s in t],
                )
            )
        self.progress.advance()

    def single_tensor_group(self, n: int, variant: str, threads: int) -> list[Case]:
        cases = []
        for label, make, variants, needs_torch, note in SINGLE_TENSOR_CASES:
            if variant not in variants or (needs_torch and not self.config.use_torch):
                continue
            if label == COMPILED_TORCH and not inductor_available():
                continue
            extrapolate = PYTHON_LOOP_SAMPLE if make is python_loop else 0
            cases.append(
                Case(label, partial(make, n, variant, threads), variant, 1, note, extrapolate)
            )
        return cases

    def plan(self) -> list[Callable[[], None]]:
        c, threads = self.config, max(self.config.thread_counts)
        jobs: list[Callable[[], None]] = []

        def group(section: str, cases: list[Case], elements: int, t: int, inner: int = 0) -> None:
            jobs.append(lambda: self.measure_group(section, cases, elements, t, inner))

        for n in c.sizes if c.runs("sizes") else []:
            group("sizes", self.single_tensor_group(n, "plain", threads), n, threads)
        for variant in ("momentum", "centered") if c.runs("variants") else ():
            group(
                "variants",
                self.single_tensor_group(c.variant_size, variant, threads),
                c.variant_size,
                threads,
            )
        if c.use_torch and c.runs("precision"):
            for n in c.precision_sizes:
                group("precision", precision_cases(n, threads, Case), n, threads)
        many_count, many_n = c.many
        total = many_count * many_n
        if c.use_torch and c.runs("many"):
            group(
                "many tensors",
                [
                    Case(
                        "native RMSprop.step",
                        lambda: ours_on_shared_memory(1, total),
                        note="same memory as the next row",
                    ),
                    Case(
                        "native RMSprop.step",
                        lambda: ours_on_shared_memory(many_count, many_n),
                        tensors=many_count,
                        note="views of the row above's memory",
                    ),
                    Case(
                        "native RMSprop.step",
                        lambda: ours_optimizer(many_count, many_n, "plain"),
                        tensors=many_count,
                        note="allocated one by one",
                    ),
                    Case(
                        "torch RMSprop foreach",
                        lambda: torch_rmsprop(many_count, many_n, "plain", True),
                        tensors=many_count,
                        note="allocated one by one",
                    ),
                    Case(
                        "torch fused Adagrad",
                        lambda: torch_fused_adagrad(many_count, many_n, "plain"),
                        tensors=many_count,
                        note="allocated one by one",
                    ),
                ],
                total,
                threads,
            )
        small_count, small_n = c.small_model
        if c.use_torch and c.runs("small"):
            group(
                "small model",
                [
                    Case(
                        "native RMSprop.step",
                        lambda: ours_optimizer(small_count, small_n, "plain"),
                        tensors=small_count,
                    ),
                    Case(
                        "torch RMSprop for-loop",
                        lambda: torch_rmsprop(small_count, small_n, "plain", False),
                        tensors=small_count,
                    ),
                    Case(
                        "torch RMSprop foreach",
                        lambda: torch_rmsprop(small_count, small_n, "plain", True),
                        tensors=small_count,
                    ),
                    Case(
                        "torch fused Adagrad",
                        lambda: torch_fused_adagrad(small_count, small_n, "plain"),
                        tensors=small_count,
                    ),
                ],
                small_count * small_n,
                threads,
                inner=SMALL_MODEL_STEPS_PER_ROUND,
            )
        huge_pages = _numpy_hugepage_switch() is not None and transparent_huge_pages() != "never"
        if huge_pages and c.runs("pages"):
            group(
                "pages",
                [
                    Case(
                        "native rmsprop_step",
                        partial(native_on_pages, c.variant_size, False, threads),
                        note="4 KiB pages, as torch allocates by default",
                    ),
                    Case(
                        "native rmsprop_step",
                        partial(native_on_pages, c.variant_size, True, threads),
                        note="2 MiB huge pages",
                    ),
                ],
                c.variant_size,
                threads,
            )
        for n in c.scaling_sizes if c.runs("threads") else []:
            # One group per size: every thread count is timed interleaved with the others.
            scaling = []
            for t in c.thread_counts:
                scaling.append(Case("roofline kernel", partial(roofline, n, "plain", t), threads=t))
                scaling.append(
                    Case(
                        "native rmsprop_step",
                        partial(native_functional, n, "plain", t),
                        threads=t,
                    )
                )
            group("threads", scaling, n, threads)
        return jobs

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
    info["transparent_huge_pages"] = transparent_huge_pages()
    return info
