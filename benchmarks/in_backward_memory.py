"""Peak memory of training with the step inside backward vs the ordinary loop.

    python benchmarks/in_backward_memory.py [--width 2048 --layers 8 --steps 3]

Each mode runs in its own process (so one cannot inherit the other's high-water mark) and reports
its peak resident memory (VmHWM) after a few training steps of the same MLP. The in-backward
mode frees each gradient right after its update, so the model's gradients never all exist.

Both processes run with MALLOC_MMAP_THRESHOLD_=1 MiB: glibc otherwise raises its mmap threshold
after the first large free and keeps later freed blocks in its heap, where they still count as
resident, so peak RSS would measure the allocator's slack rather than live memory (measured
here: after malloc_trim both modes hold the same memory, the difference was all slack).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import sys, torch, rmsprop_ext
mode, width, layers, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
blocks = []
for _ in range(layers):
    blocks += [torch.nn.Linear(width, width), torch.nn.ReLU()]
model = torch.nn.Sequential(*blocks, torch.nn.Linear(width, 1))
x, y = torch.randn(64, width), torch.randn(64, 1)
if mode == "ordinary":
    opt = rmsprop_ext.RMSprop(model.parameters(), lr=1e-4)
else:
    hooks = rmsprop_ext.step_in_backward(model, lr=1e-4)
for _ in range(steps):
    loss = torch.nn.functional.mse_loss(model(x), y)
    if mode == "ordinary":
        opt.zero_grad()
        loss.backward()
        opt.step()
    else:
        loss.backward()
with open("/proc/self/status") as f:
    peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
params = sum(p.numel() for p in model.parameters())
print(peak_kb, params)
"""


def peak(mode: str, width: int, layers: int, steps: int) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(width), str(layers), str(steps)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)},
    ).stdout.split()
    return int(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    ordinary, params = peak("ordinary", args.width, args.layers, args.steps)
    in_backward, _ = peak("in_backward", args.width, args.layers, args.steps)
    grads_mib = params * 4 / 2**20
    print(f"MLP: {params / 1e6:.1f}M float32 parameters, gradients {grads_mib:.0f} MiB")
    print(f"peak RSS, ordinary loop:        {ordinary / 1024:8.0f} MiB")
    print(f"peak RSS, step inside backward: {in_backward / 1024:8.0f} MiB")
    saved = (ordinary - in_backward) / 1024
    print(f"saved: {saved:.0f} MiB ({saved / grads_mib:.0%} of the gradients' size)")


if __name__ == "__main__":
    main()
