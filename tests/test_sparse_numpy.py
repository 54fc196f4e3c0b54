"""The functional row-sparse step for numpy users: rmsprop_step(rows=...) exact (row_step,
idle_steps) against the dense step on the densified gradient, lazy, catch-up and bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from rmsprop_ext import IdleSteps, rmsprop_catch_up, rmsprop_step

ROWS, DIM = 60, 8


def run(
    options: dict[str, Any], dtype: Any, steps: int, length: int = 4096
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A sparse (exact) and a dense run of the same gradients; their buffers after a catch-up."""
    rng = np.random.default_rng(0)
    start = rng.standard_normal((ROWS, DIM)).astype(dtype)
    names = ["square_avg"] + (["momentum_buffer"] if options.get("momentum") else [])
    names += ["grad_avg"] if options.get("centered") else []
    sparse = {"param": start.copy(), **{n: np.zeros_like(start) for n in names}}
    dense = {"param": start.copy(), **{n: np.zeros_like(start) for n in names}}
    row_step, idle = np.zeros(ROWS, np.int64), IdleSteps(length)
    for t in range(1, steps + 1):
        # rows 0-4 every step, row 5 + k every k + 1 steps, rows from 40 on never; repeats
        rows = np.array([*range(5), *(5 + k for k in range(35) if t % (k + 1) == 0), 1, 2])
        grad = rng.standard_normal((len(rows), DIM)).astype(dtype)
        densified = np.zeros_like(start)
        np.add.at(densified, rows, grad)
        lr = 0.01 * 0.9 ** (t // 20)  # a schedule
        common = {"lr": lr, "step": t, **options}
        rmsprop_step(
            sparse["param"],
            grad,
            rows=rows,
            row_step=row_step,
            idle_steps=idle,
            **{k: v for k, v in sparse.items() if k != "param"},
            **common,
        )
        rmsprop_step(
            dense["param"], densified, **{k: v for k, v in dense.items() if k != "param"}, **common
        )
    rmsprop_catch_up(
        sparse["param"],
        row_step=row_step,
        idle_steps=idle,
        step=steps,
        lr=lr,
        **{k: v for k, v in sparse.items() if k != "param"},
        **options,
    )
    assert (row_step == steps).all()
    return sparse, dense


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"momentum": 0.9, "centered": True},
        {"momentum": 0.8, "nesterov": True, "lr_in_momentum": True},
        {"momentum": 0.9, "weight_decay": 0.1, "decoupled_weight_decay": True},
    ],
    ids=["plain", "momentum-centered", "nesterov-lr-inside", "decoupled-decay"],
)
def test_exact_rows_equal_the_dense_step(options: dict[str, Any], dtype: Any) -> None:
    sparse, dense = run(options, dtype, 160)
    relative = 4e-6 if dtype == np.float32 else 1e-12
    for name, values in dense.items():
        scale = max(1.0, float(np.abs(values).max()))
        assert float(np.abs(sparse[name] - values).max()) <= relative * scale, name


def test_rows_idle_past_the_factors_are_swept_up_to_date() -> None:
    """Factors for 8 steps: rows idle up to 35 steps are swept every 4 steps."""
    sparse, dense = run({"momentum": 0.9}, np.float64, 100, length=8)
    for name, values in dense.items():
        assert float(np.abs(sparse[name] - values).max()) <= 1e-11, name


def test_lazy_rows_leave_the_others_alone() -> None:
    param = np.ones((ROWS, DIM), np.float32)
    square_avg = np.zeros_like(param)
    rmsprop_step(param, np.ones((2, DIM), np.float32), square_avg, rows=[3, 3], lr=0.1, step=1)
    assert (param[3] != 1).all() and (np.delete(param, 3, axis=0) == 1).all()
    assert square_avg[3, 0] == pytest.approx(0.01 * 4)  # the two rows summed: (1 - alpha) * 2^2


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"rows": [0, ROWS]}, ValueError, f"index {ROWS}"),
        ({"rows": [[0, 1]]}, TypeError, "one-dimensional"),
        ({"rows": [0.5, 1]}, TypeError, "integers"),
        ({"rows": [0, 1], "step": None}, ValueError, "needs step"),
        ({"rows": [0, 1], "row_step": np.zeros(ROWS, np.int64)}, ValueError, "go together"),
        (
            {"rows": [0, 1], "row_step": np.zeros(3, np.int64), "idle_steps": IdleSteps()},
            ValueError,
            "row_steps",
        ),
        (
            {
                "rows": [0, 1],
                "weight_decay": 0.1,
                "row_step": np.zeros(ROWS, np.int64),
                "idle_steps": IdleSteps(),
            },
            ValueError,
            "coupled",
        ),
        ({"rows": [0, 1, 2]}, ValueError, "shape"),
    ],
    ids=[
        "past-the-end",
        "2-d",
        "floats",
        "no-step",
        "half-exact",
        "row-step-shape",
        "coupled",
        "rows-vs-grad",
    ],
)
def test_bad_row_sparse_input_raises_and_nothing_changes(
    kwargs: dict[str, Any], error: type, match: str
) -> None:
    param = np.ones((ROWS, DIM), np.float32)
    square_avg = np.zeros_like(param)
    arguments = {"lr": 0.1, "step": 1, **kwargs}
    with pytest.raises(error, match=match):
        rmsprop_step(param, np.ones((2, DIM), np.float32), square_avg, **arguments)
    assert (param == 1).all() and (square_avg == 0).all()


def test_the_roofline_of_sparse_steps_moves_the_rows_and_changes_nothing() -> None:
    """The bench's roofline of the sparse step: the same rows read and written (repeats summed),
    every buffer written back as it was, nothing caught up or counted."""
    from rmsprop_ext import _core
    from rmsprop_ext.functional import hyperparams, native_hyperparams

    rng = np.random.default_rng(3)
    param = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    square_avg = rng.random((ROWS, DIM)).astype(np.float32)
    momentum_buffer = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    before = [param.copy(), square_avg.copy(), momentum_buffer.copy()]
    rows = np.array([5, 1, 5, ROWS - 1], np.int64)
    row_step = np.zeros(ROWS, np.int64)
    options = hyperparams(0.1, 0.99, 1e-8, 0, 0.9, False, False, False, False)
    _core.rmsprop_sparse_step_many(
        [param],
        [square_avg],
        [momentum_buffer],
        indices=[rows],
        values=[rng.standard_normal((4, DIM)).astype(np.float32)],
        row_steps=[row_step],
        idle=[IdleSteps(8).factors],
        hyperparams=native_hyperparams(options),
        step=1.0,
        roofline=True,
    )
    for now, then in zip([param, square_avg, momentum_buffer], before):
        assert np.array_equal(now, then)
    assert (row_step == 0).all()
