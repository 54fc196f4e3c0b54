"""The benchmark's sparse section: an embedding table stepped with sparse gradients.

One table (rows x dim float32) shared by every case, batches of lookups drawn from a Zipf
distribution (click logs and word counts follow one with an exponent near 1), the same batches for
every case:

* rmsprop_ext's exact and lazy sparse steps (``RMSprop(sparse=...)``, the gradient as
  ``nn.Embedding(sparse=True)`` gives it);
* torch.optim.RMSprop on the same table with the densified gradient: what a user of torch does;
* torch.optim.Adagrad with the sparse gradient: torch's exact sparse optimizer of this family;
* the roofline kernel on the same rows: the bytes of the touched rows, moved by the native
  driver with one add per buffer instead of the update.

The exact step's peak memory is measured too (the process's peak RSS over its steps, against
the table's size): no buffer of the table's size may appear.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _core
from .._huge_pages import filled_on_huge_pages
from ..functional import hyperparams, native_hyperparams
from .config import StepFn

__all__ = ["ZIPF_EXPONENT", "sparse_cases", "zipf_lookups"]

ZIPF_EXPONENT = 1.05
BATCHES = 8  # distinct batches, cycled: rows go idle and come back as in training
LR = 1e-3
OURS_EXACT = "native sparse, exact"
OURS_LAZY = "native sparse, lazy"
DENSE_TORCH = "torch RMSprop, dense grad"
SPARSE_ADAGRAD = "torch Adagrad, sparse grad"
ROOFLINE_ROWS = "roofline kernel, same rows"


def zipf_lookups(rows: int, count: int, batches: int, seed: int = 0) -> list[np.ndarray]:
    """`batches` arrays of `count` row numbers drawn with P(row k) proportional to
    (k + 1)^-ZIPF_EXPONENT, the ranks shuffled over the table (the hot rows are anywhere)."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, rows + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    cumulative = np.cumsum(weights)
    cumulative /= cumulative[-1]
    placement = rng.permutation(rows)
    return [
        placement[np.searchsorted(cumulative, rng.random(count), side="right").clip(0, rows - 1)]
        for _ in range(batches)
    ]


class SparseTable:
    """The table, its batches' sparse gradients, and what each case needs, made once."""

    def __init__(self, rows: int, dim: int, batches: list[np.ndarray]):
        import torch

        self.rows, self.dim = rows, dim
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(rows, dim, generator=generator) * 0.1)
        self.grads = []
        for indices in batches:  # uncoalesced, as nn.Embedding(sparse=True) gives them
            values = torch.randn(len(indices), dim, generator=generator) * 0.01
            index = torch.from_numpy(indices).unsqueeze(0)
            self.grads.append(
                torch.sparse_coo_tensor(index, values, (rows, dim), check_invariants=True)
            )

    def stepper(self, optimizer: Any, dense: bool = False) -> StepFn:
        """One step per call, the batches in turn; a dense step takes the densified gradient."""
        grads = [g.to_dense() for g in self.grads[:1]] if dense else self.grads
        turn = itertools.cycle(grads)

        def step() -> None:
            self.weight.grad = next(turn)
            optimizer.step()

        return step


def peak_rss_increase(step: StepFn, steps: int) -> int | None:
    """Bytes the process's peak resident set grew by over `steps` steps, measured from the RSS
    before them (Linux: the peak is reset through /proc/self/clear_refs); None elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return None

    def status(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"{field} not in /proc/self/status")

    before = status("VmRSS:")
    for _ in range(steps):
        step()
    return status("VmHWM:") - before


def sparse_cases(
    rows: int, dim: int, lookups: int, threads: int, case: Callable[..., Any]
) -> tuple[list[Any], int]:
    """The sparse section's cases (Case objects made with `case`), sharing one table, and the
    elements one step updates (the distinct rows of a batch, on average, times dim)."""
    import torch

    import rmsprop_ext

    batches = zipf_lookups(rows, lookups, BATCHES)
    distinct = round(float(np.mean([len(np.unique(b)) for b in batches])))
    table: list[SparseTable] = []

    def shared() -> SparseTable:
        if not table:
            table.append(SparseTable(rows, dim, batches))
        return table[0]

    def ours(mode: str) -> StepFn:
        t = shared()
        optimizer = rmsprop_ext.RMSprop([t.weight], lr=LR, sparse=mode)
        step = t.stepper(optimizer)
        step()
        if mode == "exact":
            grown = peak_rss_increase(step, 2 * BATCHES)
            table_bytes = rows * dim * 4
            if grown is not None:
                step.note = (  # type: ignore[attr-defined]
                    f"{distinct:,} distinct rows of {lookups:,} lookups; peak RSS "
                    f"+{grown / 2**20:.1f} MiB over {2 * BATCHES} steps, table "
                    f"{table_bytes / 2**20:,.0f} MiB"
                )
        return step

    def roofline_rows() -> StepFn:
        t = shared()
        # allocated as the optimizer allocates a table's state (on huge pages, see _huge_pages)
        square_avg = filled_on_huge_pages(torch.empty_like(t.weight), 0.0)
        native = native_hyperparams(hyperparams(LR, 0.99, 1e-8, 0, 0, False, False, False, False))
        turn = itertools.cycle(t.grads)

        def step() -> None:
            grad = next(turn)
            _core.rmsprop_sparse_step_many(
                [t.weight.detach().numpy()],
                [square_avg.numpy()],
                indices=[grad._indices()[0].numpy()],
                values=[grad._values().numpy()],
                hyperparams=native,
                num_threads=threads,
                step=1.0,
                roofline=True,
            )

        return step

    def dense_torch() -> StepFn:
        t = shared()
        return t.stepper(torch.optim.RMSprop([t.weight], lr=LR), dense=True)

    def sparse_adagrad() -> StepFn:
        t = shared()
        step = t.stepper(torch.optim.Adagrad([t.weight], lr=LR))

        def checked_off() -> None:
            # Adagrad builds sparse tensors of its own; torch warns unless told whether to check
            # them (as it does not by default).
            with torch.sparse.check_sparse_tensor_invariants(enable=False):
                step()

        return checked_off

    note = f"{rows:,} x {dim} float32 table, Zipf({ZIPF_EXPONENT}) lookups"
    cases = [
        # the touched rows' bytes: read param, grad, square_avg; write param, square_avg
        case(ROOFLINE_ROWS, roofline_rows, note="20 B per element of the distinct rows"),
        case(OURS_EXACT, lambda: ours("exact"), note=note),
        case(OURS_LAZY, lambda: ours("lazy")),
        case(SPARSE_ADAGRAD, sparse_adagrad),
        case(DENSE_TORCH, dense_torch, note="the whole table every step"),
    ]
    return cases, distinct * dim
