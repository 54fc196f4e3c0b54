"""The benchmark's configuration, its variants and one measurement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

SECTIONS = ("sizes", "variants", "precision", "many", "small", "pages", "threads", "sparse")

LR, ALPHA = 1e-4, 0.99
PYTHON_LOOP_SAMPLE = 2000
# The small-model section measures per-step overhead, so its data stays in cache: every case
# runs this many steps back to back in each round.
SMALL_MODEL_STEPS_PER_ROUND = 20

# Bytes one step must move per float32 element: read param, grad, square_avg and write param,
# square_avg (20), plus a read and a write of momentum_buffer and of grad_avg (+8 each).
VARIANTS: dict[str, tuple[dict[str, Any], int]] = {
    "plain": ({}, 20),
    "momentum": ({"momentum": 0.9}, 28),
    "centered": ({"centered": True}, 28),
    "momentum+centered": ({"momentum": 0.9, "centered": True}, 36),
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
    # The sparse section's embedding table: (rows, dim, lookups per batch).
    sparse_table: tuple[int, int, int]
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
                sparse_table=(1 << 18, 64, 4096),
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
            sparse_table=(1 << 22, 64, 16384),
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
