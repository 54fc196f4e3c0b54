"""RMSprop.step keeps torch.optim's step contract: instance and global step hooks (with the same
arguments, in the same order, able to replace the arguments), the profiler's step event, and
subclasses that override step."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import HAS_TORCH

if not HAS_TORCH:
    pytest.skip("needs PyTorch", allow_module_level=True)

import torch
from rmsprop_ext import RMSprop
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

Factory = Callable[..., torch.optim.Optimizer]
BOTH = [torch.optim.RMSprop, RMSprop]


def model_and_loss() -> tuple[torch.nn.Module, Callable[[], torch.Tensor]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x, y = torch.randn(8, 4), torch.randn(8, 1)

    def closure() -> torch.Tensor:
        model.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    return model, closure


def describe(value: Any) -> Any:
    """Hook arguments with the optimizer and closures replaced by stable names."""
    if isinstance(value, torch.optim.Optimizer):
        return "optimizer"
    if callable(value):
        return "closure"
    if isinstance(value, tuple):
        return tuple(describe(v) for v in value)
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    return value


def record_hooks(opt: torch.optim.Optimizer, calls: list[Any]) -> Iterator[Any]:
    def hook(name: str) -> Callable[..., None]:
        return lambda o, args, kwargs: calls.append((name, describe(args), describe(kwargs)))

    yield register_optimizer_step_pre_hook(hook("global pre"))
    yield register_optimizer_step_post_hook(hook("global post"))
    yield opt.register_step_pre_hook(hook("pre"))
    yield opt.register_step_post_hook(hook("post"))


def hook_calls(cls: Factory) -> list[Any]:
    model, closure = model_and_loss()
    opt = cls(model.parameters(), lr=1e-2)
    calls: list[Any] = []
    handles = list(record_hooks(opt, calls))
    try:
        closure()
        opt.step()
        opt.step(closure)
        opt.step(closure=closure)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def test_step_hooks_see_what_torch_optim_hooks_see() -> None:
    ours, theirs = hook_calls(RMSprop), hook_calls(torch.optim.RMSprop)
    assert ours == theirs
    assert [name for name, _, _ in ours[:4]] == ["global pre", "pre", "post", "global post"]
    assert ours[4][1] == ("optimizer", "closure") and ours[8][2] == {"closure": "closure"}


@pytest.mark.parametrize("cls", BOTH)
def test_a_pre_hook_can_replace_the_closure(cls: Factory) -> None:
    model, closure = model_and_loss()
    opt = cls(model.parameters(), lr=1e-2)
    replaced = []

    def other_closure() -> torch.Tensor:
        replaced.append(True)
        return closure()

    opt.register_step_pre_hook(lambda o, args, kwargs: ((o,), {"closure": other_closure}))
    loss = opt.step(closure)
    assert replaced == [True] and isinstance(loss, torch.Tensor)


@pytest.mark.parametrize("cls", BOTH)
def test_a_pre_hook_returning_something_else_is_an_error(cls: Factory) -> None:
    model, closure = model_and_loss()
    opt = cls(model.parameters(), lr=1e-2)
    opt.register_step_pre_hook(lambda o, args, kwargs: "not a tuple")
    closure()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="must return None or a tuple"):
        opt.step()
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


class SubclassOverridingStep(RMSprop):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps_seen = 0

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        self.steps_seen += 1
        return super().step(closure)


class SubclassKeepingStep(RMSprop):
    pass


@pytest.mark.parametrize("cls", [SubclassOverridingStep, SubclassKeepingStep])
def test_subclasses_run_each_hook_once_per_step(cls: Factory) -> None:
    model, closure = model_and_loss()
    opt = cls(model.parameters(), lr=1e-2)
    calls: list[Any] = []
    handles = list(record_hooks(opt, calls))
    try:
        opt.step(closure)
    finally:
        for handle in handles:
            handle.remove()
    assert [name for name, _, _ in calls] == ["global pre", "pre", "post", "global post"]
    assert opt.state[next(iter(model.parameters()))]["step"].item() == 1


@pytest.mark.parametrize("cls", [*BOTH, SubclassOverridingStep, SubclassKeepingStep])
def test_the_profiler_sees_one_step_event(cls: Factory) -> None:
    model, closure = model_and_loss()
    opt = cls(model.parameters(), lr=1e-2)
    closure()
    opt.step()  # the first step builds the state; the profiled one takes the prepared path
    closure()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    name = f"Optimizer.step#{cls.__name__}.step"
    assert [e.count for e in prof.key_averages() if e.key == name] == [1]


def test_a_step_outside_the_profiler_leaves_no_event_behind() -> None:
    model, closure = model_and_loss()
    opt = RMSprop(model.parameters(), lr=1e-2)
    closure()
    opt.step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        torch.ones(1).add_(1)
    assert not [e for e in prof.key_averages() if e.key.startswith("Optimizer.step#")]
