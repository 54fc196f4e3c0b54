"""A GPT-style character language model trained with FSDP2 on CPU, by rmsprop_ext or by torch.

    torchrun --standalone --nproc-per-node 2 examples/fsdp_train.py --optimizer rmsprop_ext
    torchrun --standalone --nproc-per-node 2 examples/fsdp_train.py --optimizer torch
    torchrun --standalone --nproc-per-node 2 examples/fsdp_train.py --bf16

The model is rmsprop_ext.converge's character transformer (pre-norm blocks of causal attention
and a GELU MLP, tied embedding) on the Python standard library's source. Every block and then
the whole model are wrapped with torch.distributed.fsdp.fully_shard (gloo), so each rank holds
one shard of every parameter, gradient and optimizer state buffer (DTensors), gathers the
parameters for its forward and backward, and reduce-scatters the gradients; the optimizer
steps on the local shards only. Each rank trains on its own rows of every global batch.

With --bf16 the sharded parameters, and so the optimizer state, are bfloat16 (for rmsprop_ext:
torch.optim.RMSprop's bf16 results, or with --compensation kahan/stochastic its compensated
forms). Rank 0 prints the loss every --log-every steps, then the median step time, the median
time of optimizer.step() and its share of the step, measured after --warmup steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import rmsprop_ext
import torch
import torch.distributed as dist
from rmsprop_ext.converge.charlm import CharLMConfig, build_model, charlm_text, encode_text
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=["rmsprop_ext", "torch"], default="rmsprop_ext")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timings")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="global batch (windows per step)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 sharded parameters")
    parser.add_argument(
        "--compensation",
        choices=["kahan", "stochastic"],
        help="rmsprop_ext only, with --bf16: compensated bfloat16 parameter updates",
    )
    args = parser.parse_args()
    if args.compensation and not (args.bf16 and args.optimizer == "rmsprop_ext"):
        parser.error("--compensation needs --bf16 and --optimizer rmsprop_ext")
    if args.batch % int(os.environ.get("WORLD_SIZE", "1")):
        parser.error("--batch must be a multiple of the number of processes")
    return args


def make_optimizer(args: argparse.Namespace, params: Any) -> torch.optim.Optimizer:
    options = {"lr": args.lr, "alpha": 0.99}
    if args.optimizer == "torch":
        return torch.optim.RMSprop(params, **options)
    return rmsprop_ext.RMSprop(params, **options, compensation=args.compensation)


def main() -> None:
    args = parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))

    config = CharLMConfig(
        batch=args.batch,
        context=args.context,
        width=args.width,
        layers=args.layers,
        heads=args.heads,
    )
    torch.manual_seed(0)  # the same initial model on every rank and for both optimizers
    model = build_model(config)
    if args.bf16:
        model = model.to(torch.bfloat16)
    total_params = sum(p.numel() for p in model.parameters())
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = make_optimizer(args, model.parameters())

    text = torch.from_numpy(encode_text(charlm_text()).astype(np.int64))
    windows = torch.Generator().manual_seed(1)
    rows = args.batch // world
    losses: list[float] = []
    step_times: list[float] = []
    optimizer_times: list[float] = []
    for step in range(1, args.steps + 1):
        # The same global batch on every rank; each takes its own rows.
        starts = torch.randint(0, len(text) - args.context - 1, (args.batch,), generator=windows)
        mine = starts[rank * rows : (rank + 1) * rows]
        tokens = torch.stack([text[s : s + args.context + 1] for s in mine.tolist()])
        began = time.perf_counter()
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)
        )
        loss.backward()
        stepping = time.perf_counter()
        optimizer.step()
        ended = time.perf_counter()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if step > args.warmup:
            step_times.append(ended - began)
            optimizer_times.append(ended - stepping)
        if rank == 0 and (step % args.log_every == 0 or step == args.steps):
            print(f"step {step:4d}  loss {losses[-1]:.4f}", flush=True)

    if rank == 0 and step_times:
        step_ms = 1e3 * statistics.median(step_times)
        optimizer_ms = 1e3 * statistics.median(optimizer_times)
        native = ""
        if isinstance(optimizer, rmsprop_ext.RMSprop):
            native = f", native share {optimizer.native_coverage()['native_fraction']:.0%}"
        print(
            f"{args.optimizer} on {world} ranks, {total_params:,} parameters "
            f"({'bfloat16' if args.bf16 else 'float32'}{native}): "
            f"step {step_ms:.1f} ms [{1e3 * min(step_times):.1f}-{1e3 * max(step_times):.1f}], "
            f"optimizer.step {optimizer_ms:.2f} ms "
            f"[{1e3 * min(optimizer_times):.2f}-{1e3 * max(optimizer_times):.2f}] "
            f"= {optimizer_ms / step_ms:.1%} of the step (medians over {len(step_times)} steps)",
            flush=True,
        )
    # Every rank done, then out without gloo's teardown (it can race between the ranks at exit).
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
