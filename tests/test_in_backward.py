"""step_in_backward: the update inside backward equals the ordinary loop, and frees gradients."""

from __future__ import annotations

import pytest
from conftest import HAS_TORCH

if not HAS_TORCH:
    pytest.skip("needs PyTorch", allow_module_level=True)

import rmsprop_ext
import torch


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 1),
    )


def batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    return [
        (torch.randn(16, 8, generator=gen), torch.randn(16, 1, generator=gen)) for _ in range(steps)
    ]


@pytest.mark.parametrize("options", [{}, {"momentum": 0.9, "centered": True, "weight_decay": 0.01}])
def test_matches_the_ordinary_loop_and_frees_gradients(options: dict[str, object]) -> None:
    ordinary, in_backward = model(), model()
    opt = rmsprop_ext.RMSprop(ordinary.parameters(), lr=1e-2, **options)
    hooks = rmsprop_ext.step_in_backward(in_backward, lr=1e-2, **options)
    for x, y in batches(20):
        opt.zero_grad()
        torch.nn.functional.mse_loss(ordinary(x), y).backward()
        opt.step()
        torch.nn.functional.mse_loss(in_backward(x), y).backward()  # the step happens in here
        assert all(p.grad is None for p in in_backward.parameters())
    for a, b in zip(ordinary.parameters(), in_backward.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert all(o.state[p]["step"].item() == 20 for p, o in hooks.optimizers.items())


def test_remove_restores_plain_backward_and_state_round_trips() -> None:
    m = model()
    hooks = rmsprop_ext.step_in_backward(m.parameters(), lr=1e-2)
    x, y = batches(1)[0]
    torch.nn.functional.mse_loss(m(x), y).backward()
    saved = hooks.state_dict()
    hooks.remove()
    before = [p.detach().clone() for p in m.parameters()]
    torch.nn.functional.mse_loss(m(x), y).backward()
    assert all(p.grad is not None for p in m.parameters())
    assert all(torch.equal(b, p) for b, p in zip(before, m.parameters()))
    again = rmsprop_ext.step_in_backward(m, lr=1e-2)
    again.load_state_dict(saved)
    assert all(o.state[p]["step"].item() == 1 for p, o in again.optimizers.items())
    with pytest.raises(ValueError, match="at least one parameter"):
        rmsprop_ext.step_in_backward([torch.zeros(3)])
