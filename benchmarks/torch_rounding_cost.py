"""What the default (torch's) rounding costs, and where the step stands against its peers.

One size and variant per run, every case interleaved in shuffled rounds on the same buffers'
sizes: the roofline kernel, rmsprop_ext.RMSprop with its default rounding, the same update with
rounding="fused" (the CPU's IEEE square root), torch.compile(torch.optim.RMSprop.step) and, for
the plain variant, torch's fused Adagrad (the same 20 bytes per element). Ratios are each peer's
time over the default step's, round by round: median [range].

    python benchmarks/torch_rounding_cost.py 16777216 plain
    RMSPROP_EXT_ISA=avx2 MKL_ENABLE_INSTRUCTIONS=SSE4_2 python benchmarks/torch_rounding_cost.py \
        1048576 centered

MKL reads MKL_ENABLE_INSTRUCTIONS when it loads, so set it in the environment of the process.
"""

from __future__ import annotations

import argparse
import statistics

import rmsprop_ext
import torch
from rmsprop_ext import bench
from rmsprop_ext._rounding import torch_square_roots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("elements", type=int)
    parser.add_argument("variant", choices=["plain", "centered", "momentum"])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rmsprop_ext.set_num_threads(args.threads)
    n, variant = args.elements, args.variant
    cases = {
        "roofline": bench.roofline(n, variant, args.threads),
        "native step": bench.ours_optimizer(1, n, variant),
        "native IEEE": bench.native_functional(n, variant, args.threads, rounding="fused"),
        "torch compiled": bench.torch_compiled_rmsprop(1, n, variant),
    }
    if variant == "plain":
        cases["torch fused Adagrad"] = bench.torch_fused_adagrad(1, n, variant)
    names = list(cases)
    times = bench.time_interleaved(
        [cases[name] for name in names], args.rounds, 1e9, min_rounds=args.rounds
    )
    base = times[names.index("native step")]
    print(
        f"{n:,} elements, {variant}, {args.threads} threads, isa {rmsprop_ext.get_isa()}, "
        f"torch's float32 square root {torch_square_roots()['float32']}, {len(base)} rounds"
    )
    for name, samples in zip(names, times):
        ratios = sorted(peer / ours for peer, ours in zip(samples, base))
        print(
            f"  {name:20} {statistics.median(samples) * 1e3:8.3f} ms   peer / native step: "
            f"{statistics.median(ratios):.3f} [{ratios[0]:.3f}-{ratios[-1]:.3f}]"
        )


if __name__ == "__main__":
    main()
