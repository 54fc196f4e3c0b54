"""The native kernel against the float64 pure-Python reference, for every option combination."""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np
import pytest
import rmsprop_ext
from helpers import TOLERANCE, GradientStream
from rmsprop_ext.reference import rmsprop_reference

SMALL_SIZES = [0, 1, 7, 15, 16, 17, 1023, 4097]
# The sanitizer job (.ci/sanitize) asks for a smaller large size: it looks for memory errors,
# which need the two-thread split (from 2**15 elements) and unaligned thread boundaries, not a
# million elements that ASan slows down for ten minutes.
LARGE_SIZE = int(os.environ.get("RMSPROP_EXT_TEST_LARGE_SIZE", 2**20 + 3))
assert LARGE_SIZE > 2**15 and LARGE_SIZE % 16, "large enough to be split over threads, unaligned"
PERIOD = 4099  # prime, so an index error in the large buffer cannot map onto an equal element
STEPS = 50
DTYPES = [np.float32, np.float64]

WEIGHT_DECAY_MODES = {
    "none": {},
    "coupled": {"weight_decay": 0.05},
    "decoupled": {"weight_decay": 0.05, "decoupled_weight_decay": True},
}
COMBOS = [
    {"centered": c, "momentum": m, "maximize": mx, "eps_in_sqrt": e, **WEIGHT_DECAY_MODES[w]}
    for c, m, mx, e, w in itertools.product(
        [False, True], [0.0, 0.9], [False, True], [False, True], WEIGHT_DECAY_MODES
    )
]

# The other libraries' math (timm, Keras, TF1, optax): where the learning rate goes, Nesterov
# momentum and the bias correction, with and without centering. Centered and bias-corrected,
# the variance is exactly 0 at step 1 (s = g^2, a = g) and any rounding leaves noise there that
# sqrt(v) magnifies without bound; eps inside the root, large enough, keeps the step well
# conditioned (optax's own default puts eps inside).
OTHER_LIBRARY_COMBOS = [
    {
        "centered": c,
        "momentum": 0.9,
        "lr_in_momentum": lr,
        "nesterov": n,
        "bias_correction": b,
        **({"eps": 0.1, "eps_in_sqrt": True} if c and b else {}),
    }
    for c, lr, n, b in itertools.product([False, True], repeat=4)
] + [
    {"centered": False, "bias_correction": True},
    {"centered": True, "bias_correction": True, "eps": 0.1, "eps_in_sqrt": True},
]


def combo_id(options: dict[str, Any]) -> str:
    return "-".join(f"{k}={v}" for k, v in options.items()) or "plain"


def run_native(
    stream: GradientStream, options: dict[str, Any], steps: int
) -> dict[str, np.ndarray]:
    param = stream.initial_param.copy()
    state = {"square_avg": np.full_like(param, 0.0)}
    if options.get("momentum", 0) > 0:
        state["momentum_buffer"] = np.zeros_like(param)
    if options.get("centered"):
        state["grad_avg"] = np.zeros_like(param)
    for t in range(steps):
        rmsprop_ext.rmsprop_step(
            param, stream.grad(t), lr=0.01, alpha=0.9, step=t + 1, **state, **options
        )
    return {"param": param, **state}


def run_reference(
    stream: GradientStream, options: dict[str, Any], steps: int
) -> dict[str, np.ndarray]:
    """The float64 reference on one period (or the whole array) of the same float-rounded inputs."""
    initial = stream.initial_param[: stream.period] if stream.period else stream.initial_param
    param = initial.astype(np.float64)
    square_avg = np.zeros_like(param)
    momentum_buffer = np.zeros_like(param) if options.get("momentum", 0) > 0 else None
    grad_avg = np.zeros_like(param) if options.get("centered") else None
    for t in range(steps):
        param, square_avg, momentum_buffer, grad_avg = rmsprop_reference(
            param,
            stream.base_grad(t),
            square_avg,
            momentum_buffer,
            grad_avg,
            lr=0.01,
            alpha=0.9,
            step=t + 1,
            **options,
        )
    out = {"param": param, "square_avg": square_avg}
    if momentum_buffer is not None:
        out["momentum_buffer"] = momentum_buffer
    if grad_avg is not None:
        out["grad_avg"] = grad_avg
    return out


def assert_matches(
    native: dict[str, np.ndarray], ref: dict[str, np.ndarray], dtype: Any, size: int
) -> None:
    assert native.keys() == ref.keys()
    for key, expected in ref.items():
        expected = np.resize(expected, size) if expected.size != size else expected
        np.testing.assert_allclose(native[key], expected, **TOLERANCE[dtype], err_msg=key)


@pytest.mark.parametrize("options", COMBOS + OTHER_LIBRARY_COMBOS, ids=combo_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("size", SMALL_SIZES)
def test_small_sizes_match_reference(size: int, dtype: Any, options: dict[str, Any]) -> None:
    stream = GradientStream(size, dtype, seed=size)
    assert_matches(
        run_native(stream, options, STEPS), run_reference(stream, options, STEPS), dtype, size
    )


@pytest.mark.parametrize("options", COMBOS, ids=combo_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_large_size_matches_reference_everywhere(dtype: Any, options: dict[str, Any]) -> None:
    # Periodic inputs: all 2**20+3 elements, thread boundaries included, are checked against
    # the reference of one period.
    stream = GradientStream(LARGE_SIZE, dtype, seed=1, period=PERIOD)
    native = run_native(stream, options, STEPS)
    assert_matches(native, run_reference(stream, options, STEPS), dtype, LARGE_SIZE)


@pytest.mark.parametrize("options", [COMBOS[0], COMBOS[-1], OTHER_LIBRARY_COMBOS[-3]], ids=combo_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_large_size_matches_reference_on_random_data(dtype: Any, options: dict[str, Any]) -> None:
    stream = GradientStream(LARGE_SIZE, dtype, seed=2)
    assert_matches(
        run_native(stream, options, STEPS), run_reference(stream, options, STEPS), dtype, LARGE_SIZE
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_vector_body_and_scalar_tail_round_identically(dtype: Any) -> None:
    # Every element gets the same inputs; any lane computed differently (body vs tail, or one
    # thread vs another) would differ in some bit.
    size = 4097
    param = np.full(size, 0.75, dtype)
    square_avg = np.full(size, 0.3, dtype)
    momentum_buffer = np.full(size, 0.1, dtype)
    grad_avg = np.full(size, 0.05, dtype)
    grad = np.full(size, -0.4, dtype)
    rmsprop_ext.rmsprop_step(
        param,
        grad,
        square_avg,
        lr=0.1,
        alpha=0.9,
        momentum=0.5,
        momentum_buffer=momentum_buffer,
        centered=True,
        grad_avg=grad_avg,
        weight_decay=0.1,
    )
    for buffer in (param, square_avg, momentum_buffer, grad_avg):
        assert np.unique(buffer).size == 1, buffer


def test_initial_square_avg_and_torch_defaults() -> None:
    # The defaults are torch's: lr=1e-2, alpha=0.99, eps=1e-8 outside the square root.
    param = np.array([1.0, -2.0, 3.0])
    grad = np.array([0.5, -1.0, 2.0])
    square_avg = np.full(3, 1.0)  # TF1-style initial_square_avg
    expected = param - 0.01 * grad / (np.sqrt(0.99 * 1.0 + 0.01 * grad**2) + 1e-8)
    rmsprop_ext.rmsprop_step(param, grad, square_avg, lr=0.01)
    np.testing.assert_allclose(param, expected, rtol=1e-14)
