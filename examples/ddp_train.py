"""Data-parallel training on CPU with rmsprop_ext.RMSprop, plain or with ZeRO-sharded state.

    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py
    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py --zero
    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py --bf16 kahan

Each rank trains a DistributedDataParallel copy of the model on its share of every global batch
(gloo backend). With --zero, torch.distributed.optim.ZeroRedundancyOptimizer keeps each
parameter's RMSprop state on one rank only, and the full state is gathered on rank 0 at the end.
With --bf16 the model, the batches and the gradients are bfloat16 and the optimizer keeps
bfloat16 state with the given compensation (none, kahan or stochastic).
Rank 0 prints the losses and, with --out, saves the final parameters and optimizer state.
"""

from __future__ import annotations

import argparse
import os
import sys

import rmsprop_ext
import torch
import torch.distributed as dist
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

HYPERPARAMS = {"lr": 1e-3, "momentum": 0.9, "centered": True}
GLOBAL_BATCH = 64


def make_model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 1),
    ).to(dtype)


def global_batches(
    steps: int, dtype: torch.dtype = torch.float32
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(GLOBAL_BATCH, 16, generator=gen).to(dtype),
            torch.randn(GLOBAL_BATCH, 1, generator=gen).to(dtype),
        )
        for _ in range(steps)
    ]


def hyperparams(bf16: str | None) -> dict[str, object]:
    """The optimizer's options; with bf16, bfloat16 (or 8-bit) state and that compensation."""
    if bf16 is None:
        return dict(HYPERPARAMS)
    if bf16 == "8bit-stochastic":  # 8-bit block state, stochastically rounded parameters
        return {**HYPERPARAMS, "state_dtype": "8bit", "compensation": "stochastic"}
    compensation = None if bf16 == "none" else bf16
    return {**HYPERPARAMS, "state_dtype": torch.bfloat16, "compensation": compensation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zero", action="store_true", help="shard the optimizer state (ZeRO-1)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", help="rank 0 saves parameters and optimizer state here")
    parser.add_argument(
        "--bf16",
        choices=["none", "kahan", "stochastic", "8bit-stochastic"],
        help="bfloat16 model and state, with this compensation (8bit-stochastic: 8-bit state)",
    )
    args = parser.parse_args()
    dtype = torch.float32 if args.bf16 is None else torch.bfloat16
    options = hyperparams(args.bf16)

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = DistributedDataParallel(make_model(dtype))
    if args.zero:
        opt: torch.optim.Optimizer = ZeroRedundancyOptimizer(
            model.parameters(), optimizer_class=rmsprop_ext.RMSprop, **options
        )
    else:
        opt = rmsprop_ext.RMSprop(model.parameters(), **options)

    losses = []
    for x, y in global_batches(args.steps, dtype):
        shard = slice(rank, None, world)  # this rank's share of the global batch
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[shard]), y[shard])
        loss.backward()  # DDP averages the gradients over the ranks
        opt.step()
        losses.append(loss.item())

    if args.zero:
        opt.consolidate_state_dict(to=0)  # every rank takes part; rank 0 receives the state
    state = opt.state_dict() if rank == 0 else None
    if rank == 0:
        print(
            f"{'ZeRO' if args.zero else 'DDP'} on {world} ranks, losses: "
            + " ".join(f"{v:.4f}" for v in losses)
        )
        if args.out:
            params = [p.detach().clone() for p in model.module.parameters()]
            torch.save({"params": params, "state_dict": state}, args.out)
    # Every rank done, then out without gloo's teardown: up to torch 2.7 its destructor joins its
    # worker threads holding the GIL, while a worker may need the GIL to free a finished
    # collective's tensor (ZeRO's state gathering leaves such tensors): with --zero on torch 2.7.0
    # 5 of 30 runs deadlocked here (pytorch/pytorch#154976 fixed it in torch 2.8).
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
