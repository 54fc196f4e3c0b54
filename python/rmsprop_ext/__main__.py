"""Command line: ``python -m rmsprop_ext info`` and ``python -m rmsprop_ext bench``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import build_info
from .bench import (
    SECTIONS,
    BenchConfig,
    format_report,
    machine_info,
    run_benchmark,
    summary_lines,
    torch_available,
)
from .converge.charlm import CharLMConfig
from .converge.embeddings import EmbeddingsConfig

CHARLM_STEPS = CharLMConfig.steps
EMBEDDINGS_STEPS = EmbeddingsConfig.steps


def _info(_: argparse.Namespace) -> int:
    info = build_info()
    for key, value in info.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f"{key:14} {shown}")
    print(f"{'cpu':14} {machine_info()['cpu'] or 'unknown'}")
    if torch_available():
        import torch

        print(f"{'torch':14} {torch.__version__}")
        print(f"{'torch_isa':14} {_torch_capability()}")
        # Which square root torch.sqrt takes here (MKL's code path differs by CPU), and whether
        # the active kernel computes it in its pass or calls MKL's function on blocks.
        print(f"{'torch_sqrt':14} {_torch_sqrt_line(info['isa_active'])}")
    return 0


def _torch_sqrt_line(isa: str) -> str:
    """Which of MKL's square roots torch.sqrt is here, per dtype, and how the kernel takes it."""
    from ._rounding import square_root_computed_by, torch_square_roots

    return "; ".join(
        f"{dtype} {form or 'none it can follow'} ({square_root_computed_by(form, dtype, isa)})"
        for dtype, form in torch_square_roots().items()
    )


def _torch_capability() -> str:
    """The instruction set of torch's own kernels and of inductor's generated C++ (both follow
    ATEN_CPU_CAPABILITY), which sets the speed of every torch peer."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability()).lower()


def _table_context(isa: str, use_torch: bool) -> str:
    """The kernel, torch's instruction set and torch's square root, for every table's title."""
    if not use_torch:
        return f"{isa} kernel"
    from ._rounding import torch_square_roots

    forms = torch_square_roots()
    return (
        f"{isa} kernel, torch {_torch_capability()}, torch sqrt float32 {forms['float32']}, "
        f"float64 {forms['float64']}"
    )


def _bench(args: argparse.Namespace) -> int:
    use_torch = torch_available() and not args.no_torch
    info, machine = build_info(), machine_info()
    threads = args.threads or info["num_threads"]
    config = BenchConfig.make(args.quick, use_torch, threads, args.sizes, args.repeat)
    config.progress = not args.no_progress
    if args.variant_size:
        config.variant_size = args.variant_size
    if args.many:
        config.many = (args.many[0], args.many[1])
    if args.small_model:
        config.small_model = (args.small_model[0], args.small_model[1])
    if args.scaling_sizes:
        config.scaling_sizes = args.scaling_sizes
    if args.precision_sizes:
        config.precision_sizes = args.precision_sizes
    if args.sparse_table:
        rows, dim, lookups = args.sparse_table
        config.sparse_table = (rows, dim, lookups)
    if args.sections:
        config.sections = set(args.sections)
    headline = (
        f"rmsprop_ext {info['version']} on {machine['cpu'] or 'this CPU'}: isa "
        f"{info['isa_active']}, up to {threads} threads, float32; medians over up to "
        f"{config.repeat} interleaved rounds; transparent huge pages: "
        f"{machine['transparent_huge_pages'] or 'unknown'}"
    )
    print(headline)
    if use_torch:
        print(f"torch's kernels: {_torch_capability()}")
        print(f"torch's square root: {_torch_sqrt_line(info['isa_active'])}")
    if not use_torch:
        print("torch is not installed: the torch peers were skipped")
    rows = run_benchmark(config)
    print(format_report(rows, _table_context(info["isa_active"], use_torch)))
    print("Summary (ratios taken round by round within a table: median [worst-best]):")
    for line in summary_lines(rows):
        print(f"  {line}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "build_info": info,
                    "machine": machine,
                    "torch_isa": _torch_capability() if use_torch else None,
                    "torch_sqrt": _torch_sqrt_line(info["isa_active"]) if use_torch else None,
                    "rows": [r.as_dict() for r in rows],
                    "summary": summary_lines(rows),
                },
                f,
                indent=2,
            )
        print(f"wrote {args.json}")
    if args.plot:
        from .bench.plot import write_plot

        write_plot(rows, args.plot, headline)
        print(f"wrote {args.plot}")
    return 0


def _converge(args: argparse.Namespace) -> int:
    from .converge import CharLMConfig, EmbeddingsConfig, run_converge, summary

    charlm = CharLMConfig(steps=args.charlm_steps)
    embeddings = EmbeddingsConfig(steps=args.embeddings_steps)
    results = run_converge(
        args.seeds, not args.no_progress, args.tasks, charlm, args.bf16_seeds, embeddings
    )
    lines = summary(results)
    for line in lines:
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "runs": [
                        {"task": r.task, "run": r.run, "seed": r.seed, "losses": r.losses}
                        for r in results
                    ],
                    "summary": lines,
                },
                f,
                indent=2,
            )
        print(f"wrote {args.json}")
    if args.plot:
        from .converge import plot

        plot(results, args.plot, charlm, embeddings)
        print(f"wrote {args.plot}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    for line in run_demo(args.out, args.steps, args.width, not args.no_progress):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rmsprop_ext", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print the build and CPU information").set_defaults(run=_info)
    bench = commands.add_parser("bench", help="compare native RMSProp with torch, numpy, Python")
    bench.add_argument("--quick", action="store_true", help="fewer sizes and repeats (< 1 minute)")
    bench.add_argument("--sizes", type=int, nargs="+", help="element counts of the size sweep")
    bench.add_argument("--repeat", type=int, help="timed steps per case (at most)")
    bench.add_argument("--variant-size", type=int, help="elements for momentum/centered (2**24)")
    bench.add_argument(
        "--many",
        type=int,
        nargs=2,
        metavar=("COUNT", "SIZE"),
        help="the many-tensor case (default 1000 16384)",
    )
    bench.add_argument(
        "--small-model",
        type=int,
        nargs=2,
        metavar=("COUNT", "SIZE"),
        help="the per-step overhead case (default 100 4096)",
    )
    bench.add_argument("--scaling-sizes", type=int, nargs="+", help="sizes of the thread sweep")
    bench.add_argument(
        "--precision-sizes", type=int, nargs="+", help="sizes of the storage-form section"
    )
    bench.add_argument(
        "--sparse-table",
        type=int,
        nargs=3,
        metavar=("ROWS", "DIM", "LOOKUPS"),
        help="the sparse section's embedding table and lookups per batch "
        "(default 4194304 64 16384; --quick 262144 64 4096)",
    )
    bench.add_argument(
        "--sections", nargs="+", choices=SECTIONS, help="run only these sections (default: all)"
    )
    bench.add_argument("--threads", type=int, help="most threads to use (default: all)")
    bench.add_argument("--no-torch", action="store_true", help="skip the torch peers")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    bench.add_argument("--json", metavar="PATH", help="also write the raw figures as JSON")
    bench.add_argument("--plot", metavar="PATH", help="also write a PNG (needs matplotlib)")
    bench.set_defaults(run=_bench)
    converge = commands.add_parser(
        "converge", help="training to convergence in float32 and in bfloat16 with each state form"
    )
    converge.add_argument("--seeds", type=int, default=3, help="seeds per run (default 3)")
    converge.add_argument(
        "--bf16-seeds",
        type=int,
        help="seeds per bfloat16 run (default: --seeds); the float32 runs set the target band",
    )
    converge.add_argument(
        "--tasks",
        nargs="+",
        choices=["airfoil", "charlm", "embeddings"],
        default=["airfoil", "charlm"],
        help="which tasks to run (default airfoil and charlm; embeddings: dense and sparse "
        "gradients of word vectors)",
    )
    converge.add_argument(
        "--embeddings-steps",
        type=int,
        default=EMBEDDINGS_STEPS,
        help=f"training steps of the word vectors (default {EMBEDDINGS_STEPS})",
    )
    converge.add_argument(
        "--charlm-steps",
        type=int,
        default=CHARLM_STEPS,
        help=f"training steps of the language model (default {CHARLM_STEPS})",
    )
    converge.add_argument("--json", metavar="PATH", help="also write the losses as JSON")
    converge.add_argument("--plot", metavar="PATH", help="also write the loss curves as a PNG")
    converge.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    converge.set_defaults(run=_converge)
    demo = commands.add_parser("demo", help="the textbook chapter as pictures, and a training run")
    demo.add_argument("--out", default="rmsprop_demo", help="folder for the PNG files")
    demo.add_argument("--steps", type=int, default=300, help="training steps per optimizer")
    demo.add_argument("--width", type=int, default=2048, help="hidden width of the MLP")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
