"""Run by test_tensor_subclasses under torch.distributed.run: DTensor parameters sharded over the
ranks (made with distribute_tensor), stepped by rmsprop_ext.RMSprop and by torch.optim.RMSprop;
rank 0 saves what it saw."""

from __future__ import annotations

import sys

import rmsprop_ext
import torch
import torch.distributed as dist
from helpers import leave_when_every_rank_is_done
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

OPTIONS = [
    {},
    {"momentum": 0.9, "centered": True, "weight_decay": 0.1},
    {"maximize": True, "momentum": 0.5, "alpha": 0.9},
]


def run_cases(mesh: object) -> dict[str, object]:
    """Every case on DTensors of `mesh`; what it saw. Nothing of it outlives the call."""
    report: dict[str, object] = {"world_size": dist.get_world_size(), "cases": []}
    for dtype in (torch.float32, torch.bfloat16):
        for options in OPTIONS:
            generator = torch.Generator().manual_seed(0)
            shapes = [(64, 33), (37,), (8, 8)]
            starts = [torch.randn(s, generator=generator).to(dtype) for s in shapes]
            placements = [[Shard(0)], [Shard(0)], [Replicate()]]

            def params(starts=starts, placements=placements) -> list[torch.nn.Parameter]:
                return [
                    torch.nn.Parameter(distribute_tensor(s.clone(), mesh, p))
                    for s, p in zip(starts, placements)
                ]

            ours, theirs = params(), params()
            our_opt = rmsprop_ext.RMSprop(ours, lr=1e-2, **options)
            torch_opt = torch.optim.RMSprop(theirs, lr=1e-2, foreach=False, **options)
            for _ in range(30):
                for a, b, p in zip(ours, theirs, placements):
                    grad = torch.randn(a.shape, generator=generator).to(dtype)
                    a.grad = distribute_tensor(grad, mesh, p)
                    b.grad = distribute_tensor(grad.clone(), mesh, p)
                our_opt.step()
                torch_opt.step()
            full = [(a.full_tensor(), b.full_tensor()) for a, b in zip(ours, theirs)]
            state_is_dtensor = all(
                isinstance(v, DTensor) and v.placements == p.placements
                for p in ours
                for k, v in our_opt.state[p].items()
                if k != "step"
            )
            report["cases"].append(
                {
                    "dtype": str(dtype),
                    "options": options,
                    "differing": sum(int((x != y).sum()) for x, y in full),
                    "state_is_dtensor": state_is_dtensor,
                    "coverage": our_opt.native_coverage()["fallback"],
                }
            )
    report["stochastic"] = stochastic_streams(mesh)
    report["changes"] = changes_midway(mesh)
    return report


def changes_midway(mesh: object) -> dict[str, object]:
    """What torch.optim.RMSprop allows between steps - a state entry replaced, an option
    changed, a gradient left out - done to both optimizers: the prepared step of the DTensor
    parameters must follow, bit for bit."""
    generator = torch.Generator().manual_seed(5)
    starts = [torch.randn(s, generator=generator) for s in ((64, 33), (37,))]

    def params() -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(distribute_tensor(s.clone(), mesh, [Shard(0)])) for s in starts]

    ours, theirs = params(), params()
    options = {"lr": 1e-2, "momentum": 0.9, "centered": True}
    optimizers = [rmsprop_ext.RMSprop(ours, **options), torch.optim.RMSprop(theirs, **options)]
    prepared = []
    for step in range(30):
        grads = [torch.randn(p.shape, generator=generator) for p in ours]
        for group in (ours, theirs):
            for p, grad in zip(group, grads):
                p.grad = distribute_tensor(grad, mesh, [Shard(0)])
        for optimizer, group in zip(optimizers, (ours, theirs)):
            if step == 10:
                state = optimizer.state[group[0]]
                state["square_avg"] = state["square_avg"] * 2
            if step == 15:
                optimizer.param_groups[0]["momentum"] = 0.5
            if step == 20:
                optimizer.param_groups[0]["centered"] = False
            if 22 <= step < 25:
                group[1].grad = None
        optimizers[0].step()
        optimizers[1].step()
        prepared.append(bool(optimizers[0]._plans))
    full = [(a.full_tensor(), b.full_tensor()) for a, b in zip(ours, theirs)]
    return {
        "differing": sum(int((x != y).sum()) for x, y in full),
        "prepared_steps": sum(prepared),
    }


def stochastic_streams(mesh: object) -> dict[str, bool]:
    """bfloat16 with stochastic rounding: two equal rows sharded over the ranks, with equal
    gradients, must round differently (each shard draws its own numbers), and a replicated
    parameter must stay equal on every rank (replicas draw the same ones)."""
    start = torch.randn(1, 4096, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    sharded = torch.nn.Parameter(distribute_tensor(start.repeat(2, 1), mesh, [Shard(0)]))
    replicated = torch.nn.Parameter(distribute_tensor(start.clone(), mesh, [Replicate()]))
    optimizer = rmsprop_ext.RMSprop([sharded, replicated], lr=1e-2, compensation="stochastic")
    generator = torch.Generator().manual_seed(4)
    for _ in range(5):
        grad = torch.randn(1, 4096, generator=generator).to(torch.bfloat16)
        sharded.grad = distribute_tensor(grad.repeat(2, 1), mesh, [Shard(0)])
        replicated.grad = distribute_tensor(grad.clone(), mesh, [Replicate()])
        optimizer.step()
    rows = sharded.full_tensor()
    replicas = [torch.empty_like(replicated.to_local()) for _ in range(dist.get_world_size())]
    dist.all_gather(replicas, replicated.to_local().detach().contiguous())
    return {
        "shards_differ": not torch.equal(rows[0], rows[1]),
        "replicas_equal": all(torch.equal(r, replicas[0]) for r in replicas),
        "replicas_moved": not torch.equal(replicas[0], start),
        "native": optimizer.native_coverage()["fallback"] == 0,
    }


def main(out: str) -> None:
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    report = run_cases(mesh)
    if dist.get_rank() == 0:
        torch.save(report, out)
    leave_when_every_rank_is_done()


if __name__ == "__main__":
    main(sys.argv[1])
