"""rmsprop_ext.RMSprop against torch.optim.RMSprop, and its behaviour as a torch optimizer."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from conftest import HAS_TORCH

if not HAS_TORCH:
    pytest.skip("needs PyTorch", allow_module_level=True)

import rmsprop_ext
import torch
from rmsprop_ext import RMSprop

TORCH_COMBOS = [
    {"centered": c, "momentum": m, "maximize": mx, "weight_decay": wd}
    for c, m, mx, wd in itertools.product([False, True], [0.0, 0.9], [False, True], [0.0, 0.01])
]


def make_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))


def batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (torch.randn(64, 8, generator=gen), torch.randn(64, 1, generator=gen)) for _ in range(steps)
    ]


def train(model: torch.nn.Module, opt: torch.optim.Optimizer, data: list[Any]) -> None:
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def assert_same_params(a: torch.nn.Module, b: torch.nn.Module, rtol: float = 1e-5) -> None:
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=rtol, atol=rtol * pb.abs().max().item())


@pytest.mark.parametrize(
    "options", TORCH_COMBOS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items())
)
def test_mlp_matches_torch_rmsprop_over_200_steps(options: dict[str, Any]) -> None:
    data = batches(200)
    ours, theirs = make_mlp(), make_mlp()
    train(ours, RMSprop(ours.parameters(), lr=1e-3, **options), data)
    train(theirs, torch.optim.RMSprop(theirs.parameters(), lr=1e-3, foreach=False, **options), data)
    assert_same_params(ours, theirs)


def test_state_keys_and_dtypes_match_torch() -> None:
    ours, theirs = make_mlp(), make_mlp()
    options = {"momentum": 0.9, "centered": True}
    opt_ours = RMSprop(ours.parameters(), **options)
    opt_theirs = torch.optim.RMSprop(theirs.parameters(), **options)
    train(ours, opt_ours, batches(2))
    train(theirs, opt_theirs, batches(2))
    for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters()):
        s_ours, s_theirs = opt_ours.state[p_ours], opt_theirs.state[p_theirs]
        assert s_ours.keys() == s_theirs.keys()
        for key in s_theirs:
            assert s_ours[key].dtype == s_theirs[key].dtype, key
            assert s_ours[key].shape == s_theirs[key].shape, key
        assert s_ours["step"].item() == s_theirs["step"].item() == 2


@pytest.mark.parametrize("direction", ["torch_to_ours", "ours_to_torch"])
def test_state_dict_moves_between_torch_and_rmsprop_ext(direction: str) -> None:
    options = {"lr": 1e-3, "momentum": 0.9, "centered": True, "weight_decay": 0.01}
    first, second = (
        (torch.optim.RMSprop, RMSprop)
        if direction == "torch_to_ours"
        else (RMSprop, torch.optim.RMSprop)
    )
    data = batches(40)

    model_switch = make_mlp()
    opt = first(model_switch.parameters(), **options)
    train(model_switch, opt, data[:20])
    switched = second(model_switch.parameters(), **options)
    switched.load_state_dict(opt.state_dict())
    train(model_switch, switched, data[20:])

    model_plain = make_mlp()
    train(model_plain, first(model_plain.parameters(), **options), data)
    assert_same_params(model_switch, model_plain)


def test_param_groups_closure_and_none_grads() -> None:
    model = make_mlp()
    frozen = torch.nn.Parameter(torch.ones(3))  # never gets a gradient: must be skipped
    opt = RMSprop(
        [
            {"params": model[0].parameters(), "lr": 1e-2},
            {"params": [*model[2].parameters(), frozen], "lr": 1e-3, "momentum": 0.5},
        ],
    )
    x, y = batches(1)[0]
    before = [p.detach().clone() for p in model.parameters()]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert torch.equal(frozen, torch.ones(3)) and frozen not in opt.state
    assert "momentum_buffer" in opt.state[model[2].weight]
    assert "momentum_buffer" not in opt.state[model[0].weight]


def test_hyperparameters_are_read_every_step() -> None:
    model = make_mlp()
    opt = RMSprop(model.parameters(), lr=1e-2)
    train(model, opt, batches(1))
    opt.param_groups[0]["lr"] = 0.0  # what a scheduler does
    snapshot = [p.detach().clone() for p in model.parameters()]
    train(model, opt, batches(1))
    assert all(torch.equal(s, p) for s, p in zip(snapshot, model.parameters()))


def test_tensor_lr_and_scheduler() -> None:
    model, reference_model = make_mlp(), make_mlp()
    opt = RMSprop(model.parameters(), lr=torch.tensor(1e-2))
    ref = torch.optim.RMSprop(reference_model.parameters(), lr=1e-2, foreach=False)
    sched, ref_sched = (
        torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5) for o in (opt, ref)
    )
    for batch in batches(10):
        train(model, opt, [batch])
        train(reference_model, ref, [batch])
        sched.step()
        ref_sched.step()
    assert_same_params(model, reference_model)


def test_validation_errors_match_torch() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    for kwargs, message in [
        ({"lr": -1.0}, "Invalid learning rate"),
        ({"eps": -1.0}, "Invalid epsilon value"),
        ({"momentum": -1.0}, "Invalid momentum value"),
        ({"weight_decay": -1.0}, "Invalid weight_decay value"),
        ({"alpha": -1.0}, "Invalid alpha value"),
    ]:
        for cls in (torch.optim.RMSprop, RMSprop):
            with pytest.raises(ValueError, match=message):
                cls(params, **kwargs)
    with pytest.raises(ValueError, match="Invalid alpha value"):
        RMSprop(params, alpha=1.5)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        RMSprop(params, lr=float("nan"))


def test_sparse_gradients_it_cannot_take_are_rejected_and_nothing_changes() -> None:
    p1, p2 = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4, 3))
    opt = RMSprop([{"params": [p1]}, {"params": [p2]}])
    p1.grad = torch.ones(4)
    p2.grad = torch.ones(4, 3).to_sparse(2)  # two sparse dimensions: not rows of a table
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    assert torch.equal(p1, torch.ones(4))
    assert opt.state[p1]["step"].item() == 0


def test_bad_group_late_in_the_list_leaves_every_group_unchanged() -> None:
    p1, p2 = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    opt = RMSprop([{"params": [p1]}, {"params": [p2]}])
    p1.grad = torch.ones(4)
    p2.grad = p2.detach()  # aliases its own parameter: the native call must refuse it
    with pytest.raises(ValueError, match=r"share memory"):
        opt.step()
    assert torch.equal(p1, torch.ones(4)) and torch.equal(
        opt.state[p1]["square_avg"], torch.zeros(4)
    )


def test_extensions_eps_in_sqrt_initial_square_avg_decoupled_decay() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    opt = RMSprop(
        [p],
        lr=0.1,
        alpha=0.9,
        eps=1e-3,
        eps_in_sqrt=True,
        initial_square_avg=1.0,
        weight_decay=0.5,
        decoupled_weight_decay=True,
    )
    grad = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    p.grad = grad.clone()
    opt.step()
    x0 = np.array([1.0, -2.0, 3.0])
    s = 0.9 * 1.0 + 0.1 * grad.numpy() ** 2
    expected = x0 * (1 - 0.1 * 0.5) - 0.1 * grad.numpy() / np.sqrt(s + 1e-3)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-14)
    np.testing.assert_allclose(opt.state[p]["square_avg"].numpy(), s, rtol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_parameters_the_kernel_cannot_take_use_the_torch_path(dtype: torch.dtype) -> None:
    base = torch.randn(6, 4, dtype=dtype)
    p_ours = torch.nn.Parameter(base.t())
    p_ref = torch.nn.Parameter(p_ours.detach().clone())
    opt, ref = (
        RMSprop([p_ours], momentum=0.9),
        torch.optim.RMSprop([p_ref], momentum=0.9, foreach=False),
    )
    for step in range(5):
        grad = torch.randn(p_ours.shape, generator=torch.Generator().manual_seed(step)).to(
            p_ours.dtype
        )
        p_ours.grad, p_ref.grad = grad.clone(), grad.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(p_ours, p_ref)


def test_functional_api_on_torch_tensors_is_zero_copy() -> None:
    p = torch.ones(1000)
    s = torch.zeros(1000)
    rmsprop_ext.rmsprop_step(p, torch.full((1000,), 2.0), s, lr=0.1)
    assert torch.all(p < 1) and torch.all(s > 0)  # the tensors themselves were updated
