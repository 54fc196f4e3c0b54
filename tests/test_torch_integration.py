"""rmsprop_ext.RMSprop wherever torch.optim.RMSprop works: schedulers, groups, hooks, copies,
checkpoints, other dtypes and devices, torch.compile."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from conftest import HAS_TORCH

if not HAS_TORCH:
    pytest.skip("needs PyTorch", allow_module_level=True)

import torch
from rmsprop_ext import RMSprop

Factory = Callable[..., torch.optim.Optimizer]


def mlp(seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(
        dtype
    )


def data(steps: int, dtype: torch.dtype = torch.float32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(7)
    return [
        (torch.randn(32, 6, generator=gen).to(dtype), torch.randn(32, 1, generator=gen).to(dtype))
        for _ in range(steps)
    ]


def loss_of(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def train(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batches: list[Any],
    scheduler: Any = None,
    set_to_none: bool = True,
) -> list[float]:
    losses = []
    for batch in batches:
        opt.zero_grad(set_to_none=set_to_none)
        loss = loss_of(model, batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(loss.item())
        elif scheduler is not None:
            scheduler.step()
    return losses


def assert_close_models(a: torch.nn.Module, b: torch.nn.Module, rtol: float = 1e-5) -> None:
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=rtol, atol=rtol * max(1.0, pb.abs().max().item()))


def both(
    make: Callable[[Factory, torch.nn.Module], tuple[torch.optim.Optimizer, Any]],
    steps: int = 30,
    set_to_none: bool = True,
) -> None:
    """Trains the same model with ours and torch's through `make`; parameters must agree."""
    ours, theirs = mlp(), mlp()
    opt_ours, sched_ours = make(RMSprop, ours)
    opt_theirs, sched_theirs = make(
        lambda *a, **k: torch.optim.RMSprop(*a, foreach=False, **k), theirs
    )
    batches = data(steps)
    train(ours, opt_ours, batches, sched_ours, set_to_none)
    train(theirs, opt_theirs, batches, sched_theirs, set_to_none)
    assert_close_models(ours, theirs)


@pytest.mark.parametrize("kind", ["StepLR", "OneCycleLR", "ReduceLROnPlateau"])
def test_schedulers(kind: str) -> None:
    def make(cls: Factory, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, Any]:
        opt = cls(model.parameters(), lr=1e-2, momentum=0.5)
        if kind == "StepLR":
            return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
        if kind == "OneCycleLR":
            return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=30)
        return opt, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5)

    both(make)


def test_param_groups_with_different_hyperparameters_and_add_param_group() -> None:
    def make(cls: Factory, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, Any]:
        opt = cls(
            [{"params": model[0].parameters(), "lr": 1e-2, "momentum": 0.9, "centered": True}],
            lr=1e-3,
            alpha=0.9,
        )
        opt.add_param_group(
            {"params": model[2].parameters(), "weight_decay": 0.1, "maximize": False}
        )
        return opt, None

    both(make)


def test_tensor_lr_and_zero_grad_without_set_to_none() -> None:
    both(
        lambda cls, m: (cls(m.parameters(), lr=torch.tensor(5e-3), momentum=0.3), None),
        set_to_none=False,
    )


def test_step_hooks_and_state_dict_hooks_run() -> None:
    model = mlp()
    opt = RMSprop(model.parameters(), lr=1e-2)
    calls: list[str] = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    opt.register_state_dict_pre_hook(lambda o: calls.append("sd_pre"))
    opt.register_state_dict_post_hook(lambda o, sd: calls.append("sd_post") or sd)
    opt.register_load_state_dict_pre_hook(lambda o, sd: calls.append("load_pre") or sd)
    opt.register_load_state_dict_post_hook(lambda o: calls.append("load_post"))
    train(model, opt, data(2))
    opt.load_state_dict(opt.state_dict())
    assert calls == ["pre", "post", "pre", "post", "sd_pre", "sd_post", "load_pre", "load_post"]


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_of_the_optimizer_train_on(how: str) -> None:
    model = mlp()
    opt = RMSprop(model.parameters(), lr=1e-2, momentum=0.9, eps_in_sqrt=True)
    train(model, opt, data(5))
    bundle = {"model": model, "opt": opt}
    clone = copy.deepcopy(bundle) if how == "deepcopy" else pickle.loads(pickle.dumps(bundle))
    batches = data(10)[5:]
    train(model, opt, batches)
    train(clone["model"], clone["opt"], batches)
    assert_close_models(model, clone["model"], rtol=0)
    assert clone["opt"].param_groups[0]["eps_in_sqrt"] is True


@pytest.mark.parametrize("first", ["torch", "ours"])
def test_switching_optimizer_by_state_dict_at_step_100(first: str) -> None:
    options = {"lr": 1e-3, "momentum": 0.9, "centered": True, "weight_decay": 1e-3}
    make_first = RMSprop if first == "ours" else torch.optim.RMSprop
    make_second = torch.optim.RMSprop if first == "ours" else RMSprop
    batches = data(200)

    switched = mlp()
    opt = make_first(switched.parameters(), **options)
    train(switched, opt, batches[:100])
    checkpoint = copy.deepcopy(opt.state_dict())
    opt = make_second(switched.parameters(), **options)
    opt.load_state_dict(checkpoint)
    train(switched, opt, batches[100:])

    never = mlp()
    train(never, make_first(never.parameters(), **options), batches)
    assert_close_models(switched, never)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_parameters_train_like_torch(dtype: torch.dtype) -> None:
    # eps=1e-8 underflows to 0 in float16 (0/0 for any zero gradient, in torch too): use one the
    # format can hold. The native kernel rounds each stored result once, torch after each op
    # (tests/test_low_precision.py compares single steps); over 20 steps the two drift apart by
    # a few ulps of the updates, not of the parameters.
    ours, theirs = mlp(dtype=dtype), mlp(dtype=dtype)
    batches = data(20, dtype)
    options = {"lr": 1e-3, "momentum": 0.9, "eps": 1e-4}
    train(ours, RMSprop(ours.parameters(), **options), batches)
    train(theirs, torch.optim.RMSprop(theirs.parameters(), foreach=False, **options), batches)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=0.02, atol=1e-2)


def test_native_coverage_reports_the_fallback_parameters() -> None:
    native = torch.nn.Parameter(torch.randn(10))
    half = torch.nn.Parameter(torch.randn(10).half())
    strided = torch.nn.Parameter(torch.randn(4, 6).t())
    integer = torch.zeros(3, dtype=torch.int32)
    opt = RMSprop([native, half, strided])
    opt.add_param_group({"params": [integer], "state_dtype": None})
    coverage = opt.native_coverage()
    assert (coverage["native"], coverage["fallback"]) == (2, 2)
    assert coverage["fallback_params"] == [(0, 2, "not contiguous"), (1, 0, "dtype torch.int32")]
    assert coverage["native_fraction"] == pytest.approx(20 / 47)
    assert coverage["params"][:3] == [
        (0, 0, "float32", "float32", None, "native"),
        (0, 1, "float16", "float16", None, "native"),
        (0, 2, "float32", "float32", None, "fallback"),
    ]


def test_native_coverage_reports_each_state_form() -> None:
    bf16 = torch.nn.Parameter(torch.randn(10, dtype=torch.bfloat16))
    fp32 = torch.nn.Parameter(torch.randn(10))
    opt = RMSprop([{"params": [bf16], "compensation": "kahan"}], state_dtype=torch.float32)
    opt.add_param_group({"params": [fp32], "state_dtype": torch.bfloat16})
    assert opt.native_coverage()["params"] == [
        (0, 0, "bfloat16", "float32", "kahan", "native"),
        (1, 0, "float32", "bfloat16", None, "native"),
    ]


# torch's own compile stack calls its deprecated torch.jit.script_method; nothing of ours.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_model_trains() -> None:
    ours, theirs = mlp(), mlp()
    compiled = torch.compile(ours)
    opt_ours = RMSprop(ours.parameters(), lr=1e-2)
    opt_theirs = torch.optim.RMSprop(theirs.parameters(), lr=1e-2, foreach=False)
    batches = data(10)
    for batch in batches:
        opt_ours.zero_grad()
        loss_of(compiled, batch).backward()
        opt_ours.step()
    train(theirs, opt_theirs, batches)
    assert_close_models(ours, theirs, rtol=1e-4)


def test_parameters_on_another_device_take_the_torch_path() -> None:
    # No GPU here: the meta device stands in for any non-CPU device (same dispatch, no data).
    p = torch.nn.Parameter(torch.empty(8, 4, device="meta"))
    p.grad = torch.empty(8, 4, device="meta")
    opt = RMSprop([p], momentum=0.9, centered=True)
    opt.step()
    assert opt.native_coverage()["fallback_params"] == [(0, 0, "on meta")]
    assert opt.state[p]["square_avg"].device.type == "meta"
    assert opt.state[p]["step"].item() == 1
