"""What the default (torch's) rounding costs, and where the step stands against its peers.

One size and variant per run, every case interleaved in shuffled rounds on the same buffers'
sizes: the roofline kernel, rmsprop_ext.RMSprop with its default rounding, the same update with
rounding="fused" (the CPU's IEEE square root), torch.compile(torch.optim.RMSprop.step) and, for
the plain variant, torch's fused Adagrad (the same 20 bytes per element). Ratios are each peer's
time over the default step's, round by round: median [range]. With --dtype float64: the
rmsprop_ext.RMSprop step with each rounding, the same step with MKL's function called on blocks
(how float64 took MKL's AVX2-class roots before the kernels computed them), and torch.compile's.

    python benchmarks/torch_rounding_cost.py 16777216 plain
    RMSPROP_EXT_ISA=avx2 MKL_ENABLE_INSTRUCTIONS=SSE4_2 python benchmarks/torch_rounding_cost.py \
        1048576 centered

MKL reads MKL_ENABLE_INSTRUCTIONS when it loads, so set it in the environment of the process.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import rmsprop_ext
import torch
from rmsprop_ext import bench
from rmsprop_ext._rounding import install_square_roots, torch_square_roots


def float64_cases(n: int, variant: str) -> dict[str, Callable[[], None]]:
    """The float64 steps, each on its own tensors (same values)."""
    options = bench.VARIANTS[variant][0]
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(n, generator=generator, dtype=torch.float64)
    grad = torch.randn(n, generator=generator, dtype=torch.float64)

    def optimizer(kind: str, rounding: str = "torch") -> torch.optim.Optimizer:
        param = torch.nn.Parameter(start.clone())
        param.grad = grad.clone()
        if kind == "torch":
            return torch.optim.RMSprop([param], lr=bench.LR, alpha=bench.ALPHA, **options)
        return rmsprop_ext.RMSprop(
            [param], lr=bench.LR, alpha=bench.ALPHA, rounding=rounding, **options
        )

    default, ieee, outside = optimizer("ours"), optimizer("ours", "fused"), optimizer("ours")
    forms = {dtype: form or "ieee" for dtype, form in torch_square_roots().items()}

    def on_blocks() -> None:
        install_square_roots({**forms, "float64": "outside"})
        try:
            outside.step()
        finally:
            install_square_roots(forms)

    return {
        "native step": default.step,
        "native IEEE": ieee.step,
        "MKL on blocks": on_blocks,
        "torch compiled": bench.compiled_step(optimizer("torch").step),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("elements", type=int)
    parser.add_argument("variant", choices=["plain", "centered", "momentum"])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rmsprop_ext.set_num_threads(args.threads)
    n, variant = args.elements, args.variant
    if args.dtype == "float64":
        cases = float64_cases(n, variant)
    else:
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
        f"{args.dtype}, torch's square root {torch_square_roots()[args.dtype]}, "
        f"{len(base)} rounds"
    )
    for name, samples in zip(names, times):
        ratios = sorted(peer / ours for peer, ours in zip(samples, base))
        print(
            f"  {name:20} {statistics.median(samples) * 1e3:8.3f} ms   peer / native step: "
            f"{statistics.median(ratios):.3f} [{ratios[0]:.3f}-{ratios[-1]:.3f}]"
        )


if __name__ == "__main__":
    main()
