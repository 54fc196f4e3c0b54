"""rmsprop_ext.RMSprop's step in one pass and in two passes per block (kernel.cpp's two_pass_blocks)
beside torch.compile's step of torch.optim.RMSprop, each on tensors torch allocates itself: the
parameter and gradient, then the state in the order the first step makes it (square_avg,
momentum_buffer, grad_avg), so that the buffers lie as they do in training. On AMD's Zen cores
which of them share the L1's hash depends on that layout (docs/storage_speed.md, "Lines that evict
each other"); the script prints each state buffer's distance from the parameter. One more case
runs the default step on torch.compile's own tensors: the same layout as torch's step, so that a
difference between those two is the loops'.

    python benchmarks/loops_on_torch_tensors.py --elements 8388608 --variant m+c --rounds 9

The avx2 kernel against torch on AVX2: RMSPROP_EXT_ISA=avx2 ATEN_CPU_CAPABILITY=avx2.
Cases interleaved in shuffled rounds, 5 steps each, 2 threads; printed: median ms [range] and
the median [range] of the per-round ratios of torch.compile's time to each case's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import rmsprop_ext
import torch
from rmsprop_ext import _core
from rmsprop_ext.bench import ALPHA, LR, compiled_step

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "momentum": {"momentum": 0.9},
    "centered": {"centered": True},
    "m+c": {"momentum": 0.9, "centered": True},
}


def parameter(n: int, generator: torch.Generator) -> torch.nn.Parameter:
    p = torch.nn.Parameter(torch.randn(n, generator=generator))
    p.grad = torch.randn(n, generator=generator)
    return p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", type=int, default=1 << 23)
    parser.add_argument("--variant", choices=list(VARIANTS), default="m+c")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    options = VARIANTS[args.variant]
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(0)

    ours_param = parameter(args.elements, generator)
    ours = rmsprop_ext.RMSprop([ours_param], lr=LR, alpha=ALPHA, **options)
    ours.step()  # makes the state
    for name, buffer in ours.state[ours_param].items():
        if isinstance(buffer, torch.Tensor) and buffer.numel() == args.elements:
            print(
                f"{name}: {buffer.data_ptr() - ours_param.data_ptr():+d} bytes from the parameter"
            )
    torch_param = parameter(args.elements, generator)
    torch_optimizer = torch.optim.RMSprop([torch_param], lr=LR, alpha=ALPHA, **options)
    compiled = compiled_step(torch_optimizer.step)
    compiled()  # makes torch's state
    torch_state = torch_optimizer.state[torch_param]
    torch_grad = torch_param.grad
    assert torch_grad is not None

    def on_torch_tensors() -> None:
        """The default step on the tensors of torch.compile's step: the same layout, so that a
        difference from it is the loop's."""
        rmsprop_ext.rmsprop_step(
            torch_param.detach(),
            torch_grad,
            torch_state["square_avg"],
            lr=LR,
            alpha=ALPHA,
            momentum_buffer=torch_state.get("momentum_buffer"),
            grad_avg=torch_state.get("grad_avg"),
            **options,
        )

    def loop(mode: str) -> Callable[[], None]:
        def run() -> None:
            _core._set_split_writes(mode)
            ours.step()

        return run

    # "two passes, apart" keeps the written pairs apart on any CPU (with_written_pairs_apart);
    # "the default" is what this CPU runs (two passes, pairs apart, on Zen to Zen 4 cores).
    cases = {
        "one pass": loop("never"),
        "two passes, apart": loop("always"),
        "the default": loop("auto"),
        "the default, torch's tensors": on_torch_tensors,
        "torch.compile": compiled,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for _ in range(args.rounds):
            order = list(cases)
            random.shuffle(order)
            for name in order:
                cases[name]()
                start = time.perf_counter()
                for _ in range(5):
                    cases[name]()
                times[name].append((time.perf_counter() - start) / 5 * 1e3)
    finally:
        _core._set_split_writes("auto")
    print(
        f"{args.elements:,} float32, {args.variant}, {rmsprop_ext.get_isa()} kernel, "
        f"two passes by default here: {rmsprop_ext.build_info()['two_pass_loops']}"
    )
    for name, values in times.items():
        median, low, high = statistics.median(values), min(values), max(values)
        # torch.compile's time over this case's, round by round: above 1 where this one is faster
        ratios = [c / v for c, v in zip(times["torch.compile"], values)]
        speed = f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        print(
            f"  {name:28s} {median:7.2f} ms [{low:.2f}-{high:.2f}]  {speed} torch.compile's speed"
        )


if __name__ == "__main__":
    main()
