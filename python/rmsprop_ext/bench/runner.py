"""The sections of the benchmark: which cases run together, and the run itself."""

from __future__ import annotations

import gc
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from .._threads import get_num_threads
from .cases import (
    _numpy_hugepage_switch,
    inductor_available,
    native_functional,
    native_on_pages,
    numpy_scratch,
    ours_on_shared_memory,
    ours_optimizer,
    python_loop,
    release_shared_buffers,
    roofline,
    torch_compiled_rmsprop,
    torch_fused_adagrad,
    torch_rmsprop,
    torch_scratch,
    transparent_huge_pages,
)
from .config import (
    PYTHON_LOOP_SAMPLE,
    SMALL_MODEL_STEPS_PER_ROUND,
    VARIANTS,
    BenchConfig,
    Measurement,
    StepFn,
)
from .precision import precision_cases
from .sparse import sparse_cases
from .timing import Progress, time_interleaved, torch_threads

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
        for variant in [v for v in VARIANTS if v != "plain"] if c.runs("variants") else []:
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
        if c.use_torch and c.runs("sparse"):
            sparse, touched = sparse_cases(*c.sparse_table, threads, Case)
            group("sparse", sparse, touched, threads)
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
