"""Run by test_fsdp under torch.distributed.run: a small model sharded with FSDP2 (fully_shard) on
the ranks, trained by rmsprop_ext.RMSprop and by torch.optim.RMSprop, checkpointed with
torch.distributed.checkpoint; rank 0 saves what it saw.

    fsdp_child.py SUITE REPORT [CHECKPOINT_DIR]

SUITE is train (float32), mixed (MixedPrecisionPolicy bf16 compute, float32 reduce), bf16
(bfloat16 sharded parameters, every state form), checkpoint (DCP round trips).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import rmsprop_ext
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from helpers import leave_when_every_rank_is_done, torch_bits
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

# torch.optim.RMSprop's options; the last layer's bias has one element, so rank 1's shard of it
# is empty.
OPTIONS: list[dict[str, Any]] = [
    {},
    {"momentum": 0.9, "centered": True, "weight_decay": 0.01},
    {"maximize": True, "momentum": 0.5, "alpha": 0.9, "eps": 1e-6},
]
GLOBAL_BATCH = 16
STEPS = 30


def make_model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 33),
        torch.nn.Tanh(),
        torch.nn.Linear(33, 7),
        torch.nn.Tanh(),
        torch.nn.Linear(7, 1),
    ).to(dtype)


def shard(model: torch.nn.Module, mesh: DeviceMesh, **fsdp: Any) -> torch.nn.Module:
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh, **fsdp)
    fully_shard(model, mesh=mesh, **fsdp)
    return model


def batches(steps: int, dtype: torch.dtype = torch.float32) -> list[tuple[torch.Tensor, ...]]:
    """The global batches of every step, the same on every rank."""
    generator = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        x = torch.randn(GLOBAL_BATCH, 16, generator=generator)
        out.append((x.to(dtype), torch.sin(x.sum(1, keepdim=True)).to(dtype)))
    return out


def local_part(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """This rank's rows of a global batch (FSDP2 averages the gradients over the ranks)."""
    rank, size = dist.get_rank(), dist.get_world_size()
    rows = GLOBAL_BATCH // size
    return tuple(t[rank * rows : (rank + 1) * rows] for t in batch)


def train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: list[tuple[torch.Tensor, ...]],
    split: bool = True,
) -> float:
    """Trains on `data` (this rank's part of each batch when `split`); the last loss."""
    loss = torch.tensor(0.0)
    for batch in data:
        x, y = local_part(batch) if split else batch
        loss = torch.nn.functional.mse_loss(model(x).float(), y.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return float(loss.detach())


def train_accumulating(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: list[tuple[torch.Tensor, ...]]
) -> None:
    """One process on the whole batch, as the ranks split it: each rank's rows forward on their
    own and the gradients averaged. Halving is exact in binary floating point, so this is
    FSDP2's gradient (each rank's divided by 2, then summed) bit for bit."""
    size = dist.get_world_size()
    rows = GLOBAL_BATCH // size
    for x, y in data:
        for rank in range(size):
            part = slice(rank * rows, (rank + 1) * rows)
            loss = torch.nn.functional.mse_loss(model(x[part]), y[part]) / size
            loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def full(model: torch.nn.Module) -> list[torch.Tensor]:
    return [(p.full_tensor() if isinstance(p, DTensor) else p).detach() for p in model.parameters()]


def full_state(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        value.full_tensor()
        for group in optimizer.param_groups
        for p in group["params"]
        for key, value in sorted(optimizer.state[p].items())
        if isinstance(value, DTensor)
    ]


def differing(a: list[torch.Tensor], b: list[torch.Tensor]) -> int:
    """Elements whose bit patterns differ (NaNs compare by bits too)."""
    assert len(a) == len(b)
    count = 0
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, y.shape, x.dtype, y.dtype)
        count += int((torch_bits(x) != torch_bits(y)).sum())
    return count


def relative_gap(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """max |a - b| / max |b| over all elements."""
    gap = max(float((x.double() - y.double()).abs().max()) for x, y in zip(a, b))
    scale = max(float(y.double().abs().max()) for y in b)
    return gap / scale


def in_place_and_native(model: torch.nn.Module, optimizer: Any, before: list[int]) -> bool:
    """The local shards still live where they were (updated in place, never gathered or
    replaced), every parameter took the native kernel, and the steps after the first the
    prepared one (no per-parameter work in Python but reading the gradients)."""
    after = [p.to_local().data_ptr() for p in model.parameters()]
    prepared = [type(plan).__name__ for plan in optimizer._plans] == ["ShardedStep"]
    return after == before and optimizer.native_coverage()["fallback"] == 0 and prepared


def local_addresses(model: torch.nn.Module) -> list[int]:
    return [p.to_local().data_ptr() for p in model.parameters()]


def state_like_params(optimizer: torch.optim.Optimizer) -> bool:
    return all(
        isinstance(value, DTensor) and value.placements == p.placements
        for group in optimizer.param_groups
        for p in group["params"]
        for key, value in optimizer.state[p].items()
        if key != "step"
    )


def suite_train(mesh: DeviceMesh) -> dict[str, Any]:
    """float32: rmsprop_ext against torch.optim.RMSprop on the same FSDP2 model, and against one
    process training on the whole batch."""
    data, cases = batches(STEPS), []
    for options in OPTIONS:
        ours, theirs = shard(make_model(), mesh), shard(make_model(), mesh)
        single, whole = make_model(), make_model()
        our_opt = rmsprop_ext.RMSprop(ours.parameters(), lr=1e-2, **options)
        torch_opt = torch.optim.RMSprop(theirs.parameters(), lr=1e-2, **options)
        single_opt = rmsprop_ext.RMSprop(single.parameters(), lr=1e-2, **options)
        whole_opt = torch.optim.RMSprop(whole.parameters(), lr=1e-2, **options)
        before = local_addresses(ours)
        loss = train(ours, our_opt, data)
        train(theirs, torch_opt, data)
        train_accumulating(single, single_opt, data)
        train(whole, whole_opt, data, split=False)
        cases.append(
            {
                "options": options,
                "loss": loss,
                "differing": differing(full(ours), full(theirs)),
                "state_differing": differing(full_state(our_opt), full_state(torch_opt)),
                "single_process_differing": differing(full(ours), full(single)),
                "torch_single_process_differing": differing(full(theirs), full(single)),
                "gap_to_one_forward": relative_gap(full(ours), full(whole)),
                "torch_gap_to_one_forward": relative_gap(full(theirs), full(whole)),
                "in_place_and_native": in_place_and_native(ours, our_opt, before),
                "state_like_params": state_like_params(our_opt),
            }
        )
    return {"cases": cases}


def suite_mixed(mesh: DeviceMesh) -> dict[str, Any]:
    """float32 sharded parameters, bfloat16 compute, float32 gradient reduction."""
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    data, cases = batches(STEPS), []
    for options in OPTIONS:
        ours = shard(make_model(), mesh, mp_policy=policy)
        theirs = shard(make_model(), mesh, mp_policy=policy)
        our_opt = rmsprop_ext.RMSprop(ours.parameters(), lr=1e-2, **options)
        torch_opt = torch.optim.RMSprop(theirs.parameters(), lr=1e-2, **options)
        before = local_addresses(ours)
        cases.append(
            {
                "options": options,
                "loss": train(ours, our_opt, data),
                "torch_loss": train(theirs, torch_opt, data),
                "differing": differing(full(ours), full(theirs)),
                "state_differing": differing(full_state(our_opt), full_state(torch_opt)),
                "in_place_and_native": in_place_and_native(ours, our_opt, before),
            }
        )
    return {"cases": cases}


# The low-precision forms: name -> rmsprop_ext options.
FORMS: dict[str, dict[str, Any]] = {
    "bf16 state (torch's bits)": {},
    "bf16 state, rounded once": {"rounding": "fused"},
    "fp32 state": {"state_dtype": torch.float32},
    "kahan": {"compensation": "kahan"},
    "stochastic": {"compensation": "stochastic"},
}


def suite_bf16(mesh: DeviceMesh) -> dict[str, Any]:
    """bfloat16 sharded parameters: the default form against torch.optim.RMSprop bit for bit;
    every form against the same form on plain tensors stepped with each rank's local gradients
    (a shard is updated exactly as a plain tensor of its values would be), and the loss."""
    data, cases = batches(STEPS, torch.bfloat16), []
    options = OPTIONS[1]
    theirs = shard(make_model(torch.bfloat16), mesh)
    torch_opt = torch.optim.RMSprop(theirs.parameters(), lr=1e-2, **options)
    torch_loss = train(theirs, torch_opt, data)
    for name, form in FORMS.items():
        ours = shard(make_model(torch.bfloat16), mesh)
        our_opt = rmsprop_ext.RMSprop(ours.parameters(), lr=1e-2, **options, **form)
        shadow = [torch.nn.Parameter(p.to_local().detach().clone()) for p in ours.parameters()]
        shadow_opt = rmsprop_ext.RMSprop(shadow, lr=1e-2, **options, **form)
        before = local_addresses(ours)
        loss = torch.tensor(0.0)
        for batch in data:
            x, y = local_part(batch)
            loss = torch.nn.functional.mse_loss(ours(x).float(), y.float())
            loss.backward()
            for s, p in zip(shadow, ours.parameters()):
                s.grad = p.grad.to_local().clone()
            our_opt.step()
            shadow_opt.step()
            our_opt.zero_grad()
        locals_ = [p.to_local().detach() for p in ours.parameters()]
        case = {
            "form": name,
            "loss": float(loss.detach()),
            "torch_loss": torch_loss,
            "in_place_and_native": in_place_and_native(ours, our_opt, before),
            "state_like_params": state_like_params(our_opt),
            "shadow_differing": per_rank(differing(locals_, [s.detach() for s in shadow])),
        }
        if not form:
            case["differing"] = differing(full(ours), full(theirs))
            case["state_differing"] = differing(full_state(our_opt), full_state(torch_opt))
        cases.append(case)
    return {"cases": cases}


def per_rank(count: int) -> list[int]:
    counts = [torch.zeros(1, dtype=torch.int64) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([count], dtype=torch.int64))
    return [int(c) for c in counts]


def suite_checkpoint(mesh: DeviceMesh, directory: str) -> dict[str, Any]:
    """Distributed checkpoints of the optimizers, both ways, and one for a single process."""
    options = OPTIONS[1]
    data = batches(15)
    report: dict[str, Any] = {"round_trips": []}
    makers: dict[str, Callable[..., torch.optim.Optimizer]] = {
        "rmsprop_ext": rmsprop_ext.RMSprop,
        "torch": torch.optim.RMSprop,
    }
    for saver, loader in (("rmsprop_ext", "torch"), ("torch", "rmsprop_ext")):
        path = os.path.join(directory, f"{saver}_to_{loader}")
        model = shard(make_model(), mesh)
        optimizer = makers[saver](model.parameters(), lr=1e-2, **options)
        train(model, optimizer, data[:10])
        dcp.save(
            {
                "model": get_model_state_dict(model),
                "optim": get_optimizer_state_dict(model, optimizer),
            },
            checkpoint_id=path,
        )
        train(model, optimizer, data[10:])  # the run that never stopped

        resumed = shard(make_model(), mesh)
        resumed_opt = makers[loader](resumed.parameters(), lr=1e-2, **options)
        state = {
            "model": get_model_state_dict(resumed),
            "optim": get_optimizer_state_dict(resumed, resumed_opt),
        }
        dcp.load(state, checkpoint_id=path)
        set_model_state_dict(resumed, state["model"])
        set_optimizer_state_dict(resumed, resumed_opt, state["optim"])
        loaded_like_saved = state_like_params(resumed_opt)
        train(resumed, resumed_opt, data[10:])
        report["round_trips"].append(
            {
                "saver": saver,
                "loader": loader,
                "differing": differing(full(resumed), full(model)),
                "state_differing": differing(full_state(resumed_opt), full_state(optimizer)),
                "loaded_state_like_params": loaded_like_saved,
            }
        )

    # Saved on these ranks, loaded by one process (the test): the state after 10 steps and the
    # parameters after 5 more steps with gradients given by hand, which that process repeats.
    model = shard(make_model(), mesh)
    optimizer = rmsprop_ext.RMSprop(model.parameters(), lr=1e-2, **options)
    train(model, optimizer, data[:10])
    dcp.save(
        {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)},
        checkpoint_id=os.path.join(directory, "two_ranks"),
    )
    report["saved_state"] = full_state(optimizer)
    for grads in given_gradients(model, 5):
        for p, grad in zip(model.parameters(), grads):
            p.grad = distribute_tensor(grad, mesh, p.placements)
        optimizer.step()
    report["continued"] = full(model)
    return report


def given_gradients(model: torch.nn.Module, steps: int) -> list[list[torch.Tensor]]:
    """Full gradients for `steps` steps, the same in every process (also the single one)."""
    generator = torch.Generator().manual_seed(2)
    return [
        [torch.randn(p.shape, generator=generator) for p in model.parameters()]
        for _ in range(steps)
    ]


def main(suite: str, out: str, directory: str = "") -> None:
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    if suite == "checkpoint":
        report = suite_checkpoint(mesh, directory)
    else:
        report = {"train": suite_train, "mixed": suite_mixed, "bf16": suite_bf16}[suite](mesh)
    report["world_size"] = dist.get_world_size()
    if dist.get_rank() == 0:
        torch.save(report, out)
    leave_when_every_rank_is_done()


if __name__ == "__main__":
    main(*sys.argv[1:])
