"""The float32 step in one pass and in two passes per block, on buffers whose lines evict each
other from a Zen core's L1 data cache and on buffers that do not; torch's eager and compiled step
beside it.

    python benchmarks/utag_collisions.py [--elements 4194304] [--dtype float32] [--rounds 9]
    python benchmarks/utag_collisions.py --scan [--elements 4194304] [--rounds 3]

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
per round each case's "collide" time over its "apart" time (median [range]).

--scan asks whether a CPU's L1 hashes other bits: square_avg 2^30 + 2^i + 2^j bytes after the
parameter for every 12 <= i < j < 30 (and 2^30 + 2^i, 2^30), the float32 step in one pass and in
two passes, alternated, per layout. On a CPU whose lines evict each other under some layout, the
one pass's time over the two passes' stands out there (up to 3x on a Zen 4 core, with bits 13 and
26); printed: the layouts where it is highest, whether zen_l1.h's hash pairs their bits, and the
median over all layouts. See docs/storage_speed.md.
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
# zen_l1.h's utag: address bit 12 + k XORed with bit ZEN4_PARTNER[k].
ZEN4_PARTNER = (27, 26, 25, 20, 21, 22, 23, 24)


def torch_step(param: torch.Tensor, grad: torch.Tensor, square_avg: torch.Tensor) -> None:
    square_avg.mul_(ALPHA).addcmul_(grad, grad, value=1 - ALPHA)
    param.addcdiv_(grad, square_avg.sqrt().add_(EPS), value=-LR)


def zen4_hash_pairs(offset: int) -> bool:
    """Whether zen_l1.h's hash gives a line and the line `offset` bytes on the same utag (bits 6-11
    of the offset clear, the hash's bits 12-27 paired as ZEN4_PARTNER pairs them)."""
    if offset & 0xFC0:
        return False
    return all(
        (offset >> (12 + k) ^ offset >> partner) & 1 == 0 for k, partner in enumerate(ZEN4_PARTNER)
    )


def scan(n: int, rounds: int, steps: int) -> None:
    """The one-pass loop's time over the two passes' with square_avg at each scanned offset."""
    block = torch.empty(1 << 32, dtype=torch.uint8)  # pages never touched cost no memory
    start = -block.data_ptr() % (1 << 30)

    def view_at(offset: int) -> torch.Tensor:
        return block[start + offset : start + offset + 4 * n].view(torch.float32)

    generator = torch.Generator().manual_seed(0)
    param, grad = view_at(0), view_at((1 << 31) + 3 * 64 + (5 << 12))
    param.copy_(torch.randn(n, generator=generator))
    grad.copy_(torch.randn(n, generator=generator))

    def per_element(mode: str, square_avg: torch.Tensor) -> float:
        _core._set_split_writes(mode)
        rmsprop_ext.rmsprop_step(param, grad, square_avg, lr=LR, alpha=ALPHA, eps=EPS)
        start_time = time.perf_counter()
        for _ in range(steps):
            rmsprop_ext.rmsprop_step(param, grad, square_avg, lr=LR, alpha=ALPHA, eps=EPS)
        return (time.perf_counter() - start_time) / steps / n * 1e9

    bits = range(12, 30)
    offsets = [1 << 30] + [(1 << 30) + (1 << i) for i in bits]
    offsets += [(1 << 30) + (1 << i) + (1 << j) for i in bits for j in bits if i < j]
    results = []
    try:
        for offset in offsets:
            square_avg = view_at(offset)
            square_avg.fill_(1.0)
            one, two = [], []
            for _ in range(rounds):
                one.append(per_element("never", square_avg))
                two.append(per_element("always", square_avg))
            results.append((statistics.median(one) / statistics.median(two), offset))
    finally:
        _core._set_split_writes("auto")
    info = rmsprop_ext.build_info()
    print(
        f"{n} float32 elements, {torch.get_num_threads()} threads, kernel {info['isa_active']}, "
        f"{len(offsets)} layouts, {rounds} rounds each; one pass's time / two passes' time:"
    )
    for ratio, offset in sorted(results, reverse=True)[:10]:
        set_bits = [k for k in range(12, 31) if offset >> k & 1]
        pairs = "zen4 hash pairs them" if zen4_hash_pairs(offset) else ""
        print(f"  square_avg + bits {set_bits}: {ratio:.2f} {pairs}")
    ratios = [ratio for ratio, _ in results]
    print(f"  median over all layouts: {statistics.median(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--elements", type=int, default=1 << 22)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per case and round")
    parser.add_argument("--scan", action="store_true", help="scan pairs of address bits")
    args = parser.parse_args()
    if args.scan:
        scan(args.elements, args.rounds, args.steps)
        return
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
