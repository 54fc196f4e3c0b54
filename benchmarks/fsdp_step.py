"""Step times of examples/fsdp_train.py with each optimizer, runs interleaved in shuffled rounds.

    python benchmarks/fsdp_step.py [--rounds 5] [--steps 40] [--json FILE] [-- EXAMPLE ARGS]

Each round runs the example once per case (rmsprop_ext and torch, float32 and bfloat16
parameters) under `torchrun --standalone --nproc-per-node 2`, in a fresh random order, and reads
the medians it prints (rank 0: step time and optimizer.step time). Reported per case: the median
over rounds with the range, and rmsprop_ext's optimizer.step against torch's as the median of the
per-round ratios with their range. The final losses of both optimizers must agree (they are the
same bits); a disagreement is reported.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fsdp_train.py"
CASES = {
    "rmsprop_ext float32": ["--optimizer", "rmsprop_ext"],
    "torch float32": ["--optimizer", "torch"],
    "rmsprop_ext bfloat16": ["--optimizer", "rmsprop_ext", "--bf16"],
    "torch bfloat16": ["--optimizer", "torch", "--bf16"],
}
SUMMARY = re.compile(r"step ([\d.]+) ms .*optimizer\.step ([\d.]+) ms")
LOSS = re.compile(r"step +\d+ +loss (\S+)")


def run_case(args: list[str]) -> dict[str, float | str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", str(EXAMPLE), *args]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = SUMMARY.search(out)
    if found is None:
        raise RuntimeError(f"no summary in the example's output:\n{out}")
    return {
        "step_ms": float(found.group(1)),
        "optimizer_ms": float(found.group(2)),
        "loss": LOSS.findall(out)[-1],
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--json", help="write the runs and the summary here")
    parser.add_argument("example_args", nargs="*", help="passed on to the example (after --)")
    args = parser.parse_args()
    extra = ["--steps", str(args.steps), *args.example_args]

    runs: dict[str, list[dict[str, float | str]]] = {name: [] for name in CASES}
    for round_number in range(args.rounds):
        order = list(CASES)
        random.shuffle(order)
        for name in order:
            runs[name].append(run_case(CASES[name] + extra))
        print(f"round {round_number + 1}/{args.rounds}: {', '.join(order)}", flush=True)

    summary = {}
    for name, results in runs.items():
        step = [float(r["step_ms"]) for r in results]
        opt = [float(r["optimizer_ms"]) for r in results]
        summary[name] = {"step_ms": spread(step), "optimizer_ms": spread(opt)}
        share = [o / s for o, s in zip(opt, step)]
        print(
            f"{name:22s} step {spread(step)} ms, optimizer.step {spread(opt)} ms, "
            f"share {statistics.median(share):.1%}"
        )
    for dtype in ("float32", "bfloat16"):
        ours, theirs = runs[f"rmsprop_ext {dtype}"], runs[f"torch {dtype}"]
        ratios = [float(t["optimizer_ms"]) / float(o["optimizer_ms"]) for o, t in zip(ours, theirs)]
        same_loss = all(o["loss"] == t["loss"] for o, t in zip(ours, theirs))
        summary[f"speedup {dtype}"] = {"optimizer_step": spread(ratios), "same_loss": same_loss}
        print(
            f"{dtype}: rmsprop_ext's optimizer.step {spread(ratios)}x faster than torch's "
            f"(median of per-round ratios); final losses {'equal' if same_loss else 'DIFFER'}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
