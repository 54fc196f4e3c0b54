"""The optimizer's prepared (fast) step stays exactly equal to the general path as things change."""

from __future__ import annotations

import collections
import copy
import io
from collections.abc import Callable

import pytest
from conftest import HAS_TORCH

if not HAS_TORCH:
    pytest.skip("needs PyTorch", allow_module_level=True)

import torch
from rmsprop_ext import RMSprop

OPTIONS = {"lr": 1e-2, "momentum": 0.9, "centered": True, "weight_decay": 0.01}


def make_params(seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in (5, 4099, 70_000)]


def set_grads(params: list[torch.nn.Parameter], step: int) -> None:
    gen = torch.Generator().manual_seed(1000 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)


def run(mutate: Callable[[RMSprop, list[torch.nn.Parameter], int], None], steps: int = 8):
    """Runs the optimizer with `mutate` applied before each step; returns params and optimizer."""
    params = make_params(0)
    opt = RMSprop(params, **OPTIONS)
    for step in range(steps):
        set_grads(params, step)
        mutate(opt, params, step)
        opt.step()
    return params, opt


def reference_run(
    mutate: Callable[[torch.optim.Optimizer, list[torch.nn.Parameter], int], None], steps: int = 8
):
    params = make_params(0)
    opt = torch.optim.RMSprop(params, foreach=False, **OPTIONS)
    for step in range(steps):
        set_grads(params, step)
        mutate(opt, params, step)
        opt.step()
    return params, opt


def nothing(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], step: int) -> None:
    pass


def test_fast_path_is_taken_and_counts_steps() -> None:
    params, opt = run(nothing)
    assert opt._plans and opt._plans[0] is not None
    assert all(opt.state[p]["step"].item() == 8 for p in params)
    ref, _ = reference_run(nothing)
    for p, r in zip(params, ref):
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)


def test_fast_and_general_paths_agree_bit_for_bit() -> None:
    fast, _ = run(nothing)

    def no_plans(opt: RMSprop, params: list[torch.nn.Parameter], step: int) -> None:
        opt._plans = []  # forces the general path on every step

    general, _ = run(no_plans)
    for a, b in zip(fast, general):
        assert torch.equal(a, b)


def test_replaced_parameter_storage_is_followed() -> None:
    def replace(
        opt: RMSprop | torch.optim.Optimizer, params: list[torch.nn.Parameter], step: int
    ) -> None:
        if step == 4:
            params[1].data = params[1].data.clone()  # new memory: a stale plan would miss it

    ours, _ = run(replace)
    ref, _ = reference_run(replace)
    for p, r in zip(ours, ref):
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)


def test_missing_and_non_contiguous_gradients_fall_back() -> None:
    def vary(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], step: int) -> None:
        if step == 3:
            params[0].grad = None  # skipped this step
        if step == 5:
            g = params[2].grad
            params[2].grad = torch.stack([g, g], dim=1)[:, 0]  # same values, strided

    ours, opt = run(vary)
    ref, ref_opt = reference_run(vary)
    for p, r in zip(ours, ref):
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)
    assert [opt.state[p]["step"].item() for p in ours] == [
        ref_opt.state[p]["step"].item() for p in ref
    ]


def test_load_state_dict_rebuilds_the_prepared_step() -> None:
    params, opt = run(nothing, steps=3)
    saved = copy.deepcopy(opt.state_dict())  # as torch.save/torch.load would give it
    other = make_params(0)
    opt2 = RMSprop(other, **OPTIONS)
    set_grads(other, 0)
    opt2.step()  # builds a plan over opt2's fresh state
    for p, q in zip(other, params):
        p.data.copy_(q.data)  # same values as `params`, same storage as before
    opt2.load_state_dict(saved)  # replaces the state: the plan must not write the old tensors
    for step in range(3, 6):
        set_grads(params, step)
        set_grads(other, step)
        opt.step()
        opt2.step()
    for p, q in zip(params, other):
        assert torch.equal(p, q)


def test_several_groups_use_the_fast_path_and_fail_as_a_whole() -> None:
    a, b = make_params(0), make_params(1)
    opt = RMSprop(
        [{"params": a}, {"params": b, "lr": 1e-3}],
        **{k: v for k, v in OPTIONS.items() if k != "lr"},
    )
    for step in range(3):
        set_grads(a + b, step)
        opt.step()
    assert len(opt._plans) == 2 and all(opt._plans)
    before = [p.detach().clone() for p in a + b]
    b[2].grad = b[2].detach()  # aliases its parameter: must be refused before group 0 is written
    with pytest.raises(ValueError, match=r"shares? memory"):
        opt.step()
    assert all(torch.equal(x, p) for x, p in zip(before, a + b))


def test_version_counter_is_bumped_so_autograd_sees_the_update() -> None:
    params, opt = run(nothing, steps=2)
    version = params[0]._version
    set_grads(params, 2)
    opt.step()
    assert params[0]._version > version


def test_a_gradient_moved_onto_updated_memory_is_refused_on_the_fast_path() -> None:
    params = [torch.nn.Parameter(torch.randn(4096)) for _ in range(2)]
    opt = RMSprop(params, lr=1e-2)
    for _ in range(3):  # the last steps take the prepared path and remember clear addresses
        for p in params:
            p.grad = torch.randn(4096)
        opt.step()
    assert opt._plans
    state = opt.state[params[1]]["square_avg"]
    for alias in (params[1].detach(), state):
        params[0].grad = alias
        before = [t.clone() for t in (*params, state)]
        with pytest.raises(ValueError, match=r"grads\[0\] shares memory"):
            opt.step()
        assert all(torch.equal(b, t) for b, t in zip(before, (*params, state)))


class CountingTensor(torch.Tensor):
    """A gradient type with its own attribute lookup, which the fast path must go through."""

    reads = 0

    def __getattribute__(self, name: str) -> object:
        if name in ("dtype", "layout", "is_cpu", "nbytes"):
            type(self).reads += 1
        return super().__getattribute__(name)


def test_gradients_with_their_own_attribute_lookup_are_read_through_it() -> None:
    ours, theirs = make_params(0), make_params(0)
    opt, ref = RMSprop(ours, **OPTIONS), RMSprop(theirs, **OPTIONS)
    for step in range(3):  # the prepared step exists from here on
        set_grads(ours, step)
        set_grads(theirs, step)
        opt.step()
        ref.step()
    set_grads(ours, 3)
    set_grads(theirs, 3)
    for p in ours:
        p.grad = p.grad.as_subclass(CountingTensor)
    CountingTensor.reads = 0
    assert opt._prepared_step()  # the fast path alone, through each gradient's own lookup
    assert CountingTensor.reads == 4 * len(ours)
    ref.step()
    for p, r in zip(ours, theirs):
        assert torch.equal(p, r)


def test_a_parameter_swapped_inside_the_group_list_is_followed() -> None:
    def swap(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], step: int) -> None:
        if step == 4:
            # Same list object, same length: only the objects in it tell the change.
            fresh = torch.nn.Parameter(params[1].detach().clone())
            fresh.grad = params[1].grad
            opt.param_groups[0]["params"][1] = fresh
            params[1] = fresh

    ours, _ = run(swap)
    ref, _ = reference_run(swap)
    for p, r in zip(ours, ref):
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)


def replace_a_state_tensor(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], step: int):
    if step == 4:  # new tensors by assignment: a stale plan would go on updating the old ones
        opt.state[params[1]]["square_avg"] = torch.full_like(params[1], 0.5)
        opt.state[params[2]]["momentum_buffer"] = torch.zeros_like(params[2])


def replace_a_state_dict(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], step: int):
    if step == 4:
        old = opt.state[params[0]]
        opt.state[params[0]] = {key: value.clone() * 2 for key, value in old.items()}
        opt.state[params[0]]["step"] = old["step"].clone()


def update_a_state_dict(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], step: int):
    if step == 4:
        opt.state[params[2]].update(grad_avg=torch.full_like(params[2], 0.01))


@pytest.mark.parametrize(
    "mutate", [replace_a_state_tensor, replace_a_state_dict, update_a_state_dict]
)
def test_replaced_state_is_followed_like_torch(
    mutate: Callable[[torch.optim.Optimizer, list[torch.nn.Parameter], int], None],
) -> None:
    ours, opt = run(mutate)
    ref, ref_opt = reference_run(mutate)
    for p, r in zip(ours, ref):
        assert torch.equal(p, r)
    for p, r in zip(ours, ref):
        for key, value in ref_opt.state[r].items():
            assert torch.equal(opt.state[p][key], value), key
    assert opt._plans  # the prepared steps were rebuilt after the change


def test_state_dict_and_copies_hold_plain_dicts() -> None:
    # The containers that watch for replaced state save as the dict and defaultdict they stand
    # for, so a checkpoint loads without rmsprop_ext.
    _, opt = run(nothing)
    saved = io.BytesIO()
    torch.save(opt.state_dict(), saved)
    assert b"rmsprop_ext" not in saved.getvalue()
    loaded = torch.load(io.BytesIO(saved.getvalue()))
    assert type(loaded["state"][0]) is dict
    assert type(copy.deepcopy(opt.state_dict())["state"][1]) is dict
    assert type(copy.deepcopy(opt).state) is collections.defaultdict
    theirs = torch.optim.RMSprop(make_params(0), foreach=False, **OPTIONS)
    theirs.load_state_dict(loaded)
