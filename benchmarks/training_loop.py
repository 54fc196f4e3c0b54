"""The native step inside a real training loop against the same step run on its own.

    python benchmarks/training_loop.py [--steps 30]

Prints the median step time inside an MLP training loop (torch forward and backward between
steps), the median of isolated back-to-back steps, and the median of isolated steps each after a
256 MB buffer has been streamed through the caches (the state a training loop leaves them in).
If torch's and rmsprop_ext's OpenMP threads fought (oversubscription, spin-waiting), the step in
the loop would be slower than the isolated step after the cache flush.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import rmsprop_ext
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
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

    def forward_backward() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()

    flush = np.ones(64 << 20, np.float32)
    forward_backward()
    opt.step()
    in_loop, back_to_back, after_flush = [], [], []
    for _ in range(args.steps):
        forward_backward()
        t0 = time.perf_counter()
        opt.step()
        in_loop.append(time.perf_counter() - t0)
    for _ in range(args.steps):
        t0 = time.perf_counter()
        opt.step()
        back_to_back.append(time.perf_counter() - t0)
    for _ in range(args.steps):
        flush.sum()
        t0 = time.perf_counter()
        opt.step()
        after_flush.append(time.perf_counter() - t0)

    def ms(v: list[float]) -> str:
        return f"{statistics.median(v) * 1e3:.2f} ms [{min(v) * 1e3:.2f}-{max(v) * 1e3:.2f}]"

    params = sum(p.numel() for p in model.parameters())
    print(
        f"MLP with {params / 1e6:.1f}M parameters; torch threads {torch.get_num_threads()}, "
        f"native threads {rmsprop_ext.last_num_threads()}"
    )
    print(f"step inside the training loop:      {ms(in_loop)}")
    print(f"isolated, back to back (warm cache): {ms(back_to_back)}")
    print(f"isolated, after a cache flush:       {ms(after_flush)}")
    ratio = statistics.median(in_loop) / statistics.median(after_flush)
    print(f"in loop / isolated after flush = {ratio:.2f}")


if __name__ == "__main__":
    main()
