"""The float32 step on buffers that start a few bytes apart modulo 2 MiB, direct and staged.

    python benchmarks/buffer_layout.py [--elements 1048576] [--rounding torch] [--rounds 15]

param, grad and square_avg are slices of one array, each starting n * 4 + delta bytes after the
one before, as numpy's heap places equal-sized arrays allocated one after another (delta 16) or
torch's allocator with its 64-byte alignment (delta 64). Where a written buffer starts up to 96
bytes above a read one, the avx2 kernel copies the written buffers through a block on the stack
("auto"); "never" is the direct loop, "always" stages every layout. Cases run interleaved in
shuffled rounds; reported: median milliseconds per step and the medians of the per-round ratios
direct / auto and direct / always with their ranges. Whether a layout slows the direct loop
depends on the physical pages too (2 MiB pages, which numpy asks for, make it likely), so a delta
can be slow in one process and not in the next.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import rmsprop_ext
from rmsprop_ext import _core
from rmsprop_ext.__main__ import _torch_sqrt_line

DELTAS = [0, 16, 64, 128]
MODES = ["never", "auto", "always"]


def packed_buffers(n: int, delta: int, rng: np.random.Generator) -> list[np.ndarray]:
    stride = n + delta // 4
    block = np.empty(3 * stride + 1024, np.float32)
    start = (-block.ctypes.data % 4096) // 4
    views = [block[start + k * stride : start + k * stride + n] for k in range(3)]
    views[0][:] = rng.standard_normal(n)
    views[1][:] = rng.standard_normal(n)
    views[2][:] = np.abs(rng.standard_normal(n))
    return views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--elements", type=int, default=1 << 20)
    parser.add_argument("--rounding", default="torch", choices=["torch", "fused"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20, help="steps timed per case and round")
    args = parser.parse_args()
    if args.rounding == "torch":
        # torch's rounding follows torch's square root only in a process that has torch.
        import torch  # noqa: F401

    rng = np.random.default_rng(0)
    layouts = {delta: packed_buffers(args.elements, delta, rng) for delta in DELTAS}
    cases = [(delta, mode) for delta in DELTAS for mode in MODES]
    times: dict[tuple[int, str], list[float]] = {case: [] for case in cases}
    try:
        for _ in range(args.rounds):
            random.shuffle(cases)
            for delta, mode in cases:
                _core._set_write_staging(mode)
                x, g, s = layouts[delta]
                rmsprop_ext.rmsprop_step(x, g, s, lr=1e-7, rounding=args.rounding)
                start = time.perf_counter()
                for _ in range(args.steps):
                    rmsprop_ext.rmsprop_step(x, g, s, lr=1e-7, rounding=args.rounding)
                times[(delta, mode)].append((time.perf_counter() - start) / args.steps * 1e3)
    finally:
        _core._set_write_staging("auto")

    info = rmsprop_ext.build_info()
    print(
        f"{args.elements:,} float32 elements, isa {info['isa_active']}, rounding "
        f"{args.rounding}, {args.rounds} rounds"
    )
    if args.rounding == "torch":
        print(f"torch's square root: {_torch_sqrt_line(info['isa_active'])}")
    for delta in DELTAS:
        direct = times[(delta, "never")]
        cells = [f"  +{delta:<4d} B  direct {statistics.median(direct):.3f} ms"]
        for mode in ("auto", "always"):
            other = times[(delta, mode)]
            ratios = sorted(d / o for d, o in zip(direct, other, strict=True))
            cells.append(
                f"{mode} {statistics.median(other):.3f} ms, direct/{mode} "
                f"{statistics.median(ratios):.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}]"
            )
        print("  ".join(cells))


if __name__ == "__main__":
    main()
