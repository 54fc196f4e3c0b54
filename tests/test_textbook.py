"""The textbook's examples, through the scalar reference and through the native kernel."""

from __future__ import annotations

import numpy as np
import pytest
import rmsprop_ext
from conftest import needs_torch
from rmsprop_ext import reference

EXPECTED_LINE = "epoch 20, x1: -0.010599, x2: 0.000000"


def native_rmsprop_2d(
    x1: float, x2: float, s1: float, s2: float
) -> tuple[float, float, float, float]:
    """The textbook's rmsprop_2d, with the update done by the native kernel."""
    x = np.array([x1, x2])
    s = np.array([s1, s2])
    grad = np.array([0.2 * x1, 4 * x2])
    rmsprop_ext.rmsprop_step(
        x, grad, s, lr=reference.ETA_2D, alpha=reference.GAMMA_2D, eps=1e-6, eps_in_sqrt=True
    )
    return float(x[0]), float(x[1]), float(s[0]), float(s[1])


def test_scalar_reference_prints_the_textbook_result(capsys: pytest.CaptureFixture[str]) -> None:
    reference.train_2d(reference.rmsprop_2d)
    assert capsys.readouterr().out.strip() == EXPECTED_LINE


def test_native_kernel_prints_the_textbook_result(capsys: pytest.CaptureFixture[str]) -> None:
    native = reference.train_2d(native_rmsprop_2d)
    assert capsys.readouterr().out.strip() == EXPECTED_LINE
    scalar = reference.train_2d(reference.rmsprop_2d, verbose=False)
    np.testing.assert_allclose(native, scalar, rtol=1e-12, atol=1e-15)


def test_numpy_scratch_formula_matches_native() -> None:
    rng = np.random.default_rng(0)
    value, grad = rng.standard_normal(100), rng.standard_normal(100)
    params = [(value.copy(), grad)]
    states = reference.init_rmsprop_states(params)
    native_value, native_state = value.copy(), np.zeros(100)
    for _ in range(10):
        reference.rmsprop_numpy(params, states, {"lr": 0.01, "gamma": 0.9})
        rmsprop_ext.rmsprop_step(
            native_value, grad, native_state, lr=0.01, alpha=0.9, eps=1e-6, eps_in_sqrt=True
        )
    np.testing.assert_allclose(native_value, params[0][0], rtol=1e-12)
    np.testing.assert_allclose(native_state, states[0], rtol=1e-12)


@needs_torch
def test_torch_scratch_formula_matches_native() -> None:
    import torch

    torch.manual_seed(0)
    p = torch.randn(100, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(100, dtype=torch.float64)
    states = reference.init_rmsprop_states([p.detach()])
    native_value, native_state = p.detach().numpy().copy(), np.zeros(100)
    for _ in range(10):
        p.grad = grad.clone()
        reference.rmsprop_torch([p], states, {"lr": 0.01, "gamma": 0.9})
        assert not p.grad.any()  # the textbook step clears the gradient
        rmsprop_ext.rmsprop_step(
            native_value, grad.numpy(), native_state, lr=0.01, alpha=0.9, eps=1e-6, eps_in_sqrt=True
        )
    np.testing.assert_allclose(native_value, p.detach().numpy(), rtol=1e-12)
