"""The native step inside a real training loop against the same step run on its own.

    python benchmarks/training_loop.py [--steps 50]

Times, round by round (one of each per round, so a slow spell of a shared machine hits all alike):

* the step inside an MLP training loop, right after torch's forward and backward;
* the step on its own after a 256 MB buffer was streamed through the caches (the cache state a
  training loop leaves behind), and back to back with the previous step (warm caches);
* as a control, the roofline kernel (the step's loads and stores with trivial arithmetic, on the
  same buffers and threads, no Python optimizer) at the same two points.

If torch's and rmsprop_ext's OpenMP threads fought (oversubscription, spin-waiting), the step in
the loop would be slower than after the cache flush while the control would not be. On a shared
virtual machine, memory can also run slower for a while after heavy compute; that hits the
control as much as the step, and the last line separates the two.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import rmsprop_ext
import torch
from rmsprop_ext import _core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(1024, 2048),
        torch.nn.ReLU(),
        torch.nn.Linear(2048, 2048),
        torch.nn.ReLU(),
        torch.nn.Linear(2048, 10),
    )
    x, y = torch.randn(256, 1024), torch.randint(0, 10, (256,))
    opt = rmsprop_ext.RMSprop(model.parameters(), lr=1e-4)
    params = list(model.parameters())

    def forward_backward() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()

    def roofline() -> None:
        # The same buffers the step reads and writes; the gradients are new after each backward.
        _core.roofline_step_many(
            [p.detach().numpy() for p in params],
            [p.grad.numpy() for p in params if p.grad is not None],
            [opt.state[p]["square_avg"].numpy() for p in params],
            None,
            None,
            momentum=0.0,
            centered=False,
            num_threads=torch.get_num_threads(),
        )

    flush = np.ones(64 << 20, np.float32)
    forward_backward()
    opt.step()
    times: dict[str, list[float]] = {
        key: [] for key in ("in loop", "after flush", "back to back", "roof in loop", "roof flush")
    }

    def timed(key: str, run: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        run()
        times[key].append(time.perf_counter() - t0)

    for _ in range(args.steps):
        forward_backward()
        timed("in loop", opt.step)
        forward_backward()
        timed("roof in loop", roofline)
        flush.sum()
        timed("after flush", opt.step)
        flush.sum()
        timed("roof flush", roofline)
        opt.step()
        timed("back to back", opt.step)

    def ms(key: str) -> str:
        v = times[key]
        return f"{statistics.median(v) * 1e3:.2f} ms [{min(v) * 1e3:.2f}-{max(v) * 1e3:.2f}]"

    def median(key: str) -> float:
        return statistics.median(times[key])

    count = sum(p.numel() for p in params)
    print(
        f"MLP with {count / 1e6:.1f}M parameters; torch threads {torch.get_num_threads()}, "
        f"native threads {rmsprop_ext.last_num_threads()}; medians [min-max] of {args.steps} rounds"
    )
    print(f"step inside the training loop:         {ms('in loop')}")
    print(f"step after a cache flush:              {ms('after flush')}")
    print(f"step back to back (warm cache):        {ms('back to back')}")
    print(f"roofline kernel inside the loop:       {ms('roof in loop')}")
    print(f"roofline kernel after a cache flush:   {ms('roof flush')}")
    step_ratio = median("in loop") / median("after flush")
    roof_ratio = median("roof in loop") / median("roof flush")
    print(f"step in loop / after flush = {step_ratio:.2f}")
    print(f"roofline kernel in loop / after flush = {roof_ratio:.2f}")
    print(f"the step's own part (step ratio / roofline ratio) = {step_ratio / roof_ratio:.2f}")


if __name__ == "__main__":
    main()
