"""Timing the cases of a group interleaved, in shuffled rounds, and the progress line."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .config import StepFn

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
