"""The float32 step in one pass and in two passes per block, on buffers whose lines evict each
other from a Zen core's L1 data cache and on buffers that do not; torch's eager and compiled step
beside it.

    python benchmarks/utag_collisions.py [--elements 4194304] [--dtype float32] [--rounds 9]

Zen's L1 picks a line's way by an 8-bit hash of address bits 12-27, each of bits 12-19 XORed with
one of bits 20-27 (a "utag"); two lines of one set with the same utag cannot both be held. The
parameter, the gradient and square_avg are views of one allocation, the parameter where bits
12-27 of its address are clear, and square_avg starts after it by
- 2^26 + 2^13 bytes ("collide"): the hash XORs bits 13 and 26, so square_avg's lines share the
  parameter's sets and utags on the pages where adding the distance carries no bit (half of them);
  two 32 MiB tensors allocated with one between them lie about so;
- 2^26 + 2^12 bytes ("apart"): the same sets, other utags on every page;
- 2^28 bytes ("all"): bits the hash does not read, the same utags on every page.
"one pass" is the loop the kernel runs on other CPUs, "two passes" the one it runs on Zen cores
(the state's buffers, then the parameter's, 256 elements at a time). The torch cases run
torch.optim.RMSprop's arithmetic (eager, and compiled with torch.compile) on the same views. Cases
run interleaved in shuffled rounds; reported: median nanoseconds per element with their range, and
per round each case's "collide" time over its "apart" time (median [range]). See
docs/storage_speed.md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import rmsprop_ext
import torch
from rmsprop_ext import _core

LR, ALPHA, EPS = 1e-12, 0.99, 1e-8
OFFSETS = {"collide": (1 << 26) + (1 << 13), "apart": (1 << 26) + (1 << 12), "all": 1 << 28}


def torch_step(param: torch.Tensor, grad: torch.Tensor, square_avg: torch.Tensor) -> None:
    square_avg.mul_(ALPHA).addcmul_(grad, grad, value=1 - ALPHA)
    param.addcdiv_(grad, square_avg.sqrt().add_(EPS), value=-LR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--elements", type=int, default=1 << 22)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per case and round")
    args = parser.parse_args()
    n = args.elements
    dtype = getattr(torch, args.dtype)
    itemsize = torch.empty(0, dtype=dtype).element_size()

    # One allocation; the parameter where bits 12-27 of its address are clear, so that each offset
    # flips exactly its own bits. Pages never touched cost no memory.
    block = torch.empty((1 << 29) + (1 << 28), dtype=torch.uint8)
    start = -block.data_ptr() % (1 << 28)

    def view_at(offset: int) -> torch.Tensor:
        return block[start + offset : start + offset + n * itemsize].view(dtype)

    generator = torch.Generator().manual_seed(0)
    param, grad = view_at(0), view_at((1 << 27) + 3 * 64)
    param.copy_(torch.randn(n, generator=generator))
    grad.copy_(torch.randn(n, generator=generator))
    square_avgs = {name: view_at(offset) for name, offset in OFFSETS.items()}
    for square_avg in square_avgs.values():
        square_avg.fill_(1.0)

    def ours(mode: str) -> Callable[[torch.Tensor], None]:
        def run(square_avg: torch.Tensor) -> None:
            _core._set_split_writes(mode)
            rmsprop_ext.rmsprop_step(param, grad, square_avg, lr=LR, alpha=ALPHA, eps=EPS)

        return run

    compiled = torch.compile(torch_step)
    impls: dict[str, Callable[[torch.Tensor], None]] = {
        "rmsprop_ext (one pass)": ours("never"),
        "rmsprop_ext (two passes)": ours("always"),
        "torch eager": lambda s: torch_step(param, grad, s),
        "torch.compile": lambda s: compiled(param, grad, s),
    }
    cases = [(impl, layout) for impl in impls for layout in OFFSETS]
    for impl, layout in cases:  # compile, warm up
        impls[impl](square_avgs[layout])
    times: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    try:
        for _ in range(args.rounds):
            random.shuffle(cases)
            for impl, layout in cases:
                run, square_avg = impls[impl], square_avgs[layout]
                run(square_avg)
                start_time = time.perf_counter()
                for _ in range(args.steps):
                    run(square_avg)
                elapsed = time.perf_counter() - start_time
                times[(impl, layout)].append(elapsed / args.steps / n * 1e9)
    finally:
        _core._set_split_writes("auto")

    info = rmsprop_ext.build_info()
    print(
        f"{n} elements of {args.dtype}, {torch.get_num_threads()} threads, kernel "
        f"{info['isa_active']}, Zen core (two passes by default): "
        f"{_core._cpu_has_zen_l1_utags()}; "
        f"{args.rounds} rounds; ns/element median [min-max]"
    )
    header = " ".join(f"{layout:>22s}" for layout in OFFSETS)
    print(f"{'case':24s} {header}   collide / apart")
    for impl in impls:
        cells = []
        for layout in OFFSETS:
            t = times[(impl, layout)]
            cells.append(f"{statistics.median(t):.3f} [{min(t):.3f}-{max(t):.3f}]")
        ratios = [c / a for c, a in zip(times[(impl, "collide")], times[(impl, "apart")])]
        row = " ".join(f"{cell:>22s}" for cell in cells)
        spread = f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
        print(f"{impl:24s} {row}   {spread}")


if __name__ == "__main__":
    main()
