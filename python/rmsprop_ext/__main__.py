"""Command line: ``python -m rmsprop_ext info`` and ``python -m rmsprop_ext bench``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import build_info
from .bench import format_table, rows_as_dicts, run_benchmark, torch_available


def _info(_: argparse.Namespace) -> int:
    for key, value in build_info().items():
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f"{key:14} {shown}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    sizes = args.sizes or ([1 << 20, 1 << 24] if args.quick else [1 << 16, 1 << 20, 1 << 24])
    repeat = args.repeat or (5 if args.quick else 15)
    use_torch = torch_available()
    info = build_info()
    print(
        f"rmsprop_ext {info['version']}: isa {info['isa_active']}, {info['num_threads']} threads, "
        f"float32, median of {repeat} steps after warm-up"
    )
    if not use_torch:
        print("torch is not installed: the torch peers were skipped")
    rows = run_benchmark(sizes, repeat, use_torch=use_torch)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"build_info": info, "rows": rows_as_dicts(rows)}, f, indent=2)
        print(f"wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rmsprop_ext", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print the build and CPU information").set_defaults(run=_info)
    bench = commands.add_parser("bench", help="compare native RMSProp with torch and Python")
    bench.add_argument("--quick", action="store_true", help="fewer sizes and repeats (< 1 minute)")
    bench.add_argument("--sizes", type=int, nargs="+", help="element counts to time")
    bench.add_argument("--repeat", type=int, help="timed steps per implementation and size")
    bench.add_argument("--json", metavar="PATH", help="also write the raw figures as JSON")
    bench.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
