"""NumpyRMSprop: the native update for numpy-only code."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import checksum
from rmsprop_ext import NumpyRMSprop
from rmsprop_ext.reference import rmsprop_reference


def test_matches_reference_and_counts_steps() -> None:
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((4, 5)), rng.standard_normal(7)]
    expected = [p.copy() for p in params]
    states = [[np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)] for p in params]
    opt = NumpyRMSprop(params, lr=0.01, momentum=0.9, centered=True, eps_in_sqrt=True)
    for _ in range(20):
        grads = [rng.standard_normal(p.shape) for p in params]
        opt.step(grads)
        for i, g in enumerate(grads):
            expected[i], states[i][0], states[i][1], states[i][2] = rmsprop_reference(
                expected[i], g, *states[i], lr=0.01, momentum=0.9, centered=True, eps_in_sqrt=True
            )
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-12)
    assert opt.steps() == [20, 20]
    assert [sd["step"] for sd in opt.state_dict()["state"].values()] == [20, 20]


def test_state_dict_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(1)
    grads = [[rng.standard_normal(10).astype(np.float32)] for _ in range(10)]
    a = [np.ones(10, np.float32)]
    opt_a = NumpyRMSprop(a, momentum=0.5)
    for g in grads[:5]:
        opt_a.step(g)
    saved = opt_a.state_dict()
    b = [a[0].copy()]
    opt_b = NumpyRMSprop(b, momentum=0.5)
    opt_b.load_state_dict(saved)
    for g in grads[5:]:
        opt_a.step(g)
        opt_b.step(g)
    np.testing.assert_array_equal(a[0], b[0])


def test_bad_state_dict_changes_nothing() -> None:
    p = [np.ones(4)]
    opt = NumpyRMSprop(p, momentum=0.9)
    opt.step([np.ones(4)])
    good = opt.state_dict()
    before = checksum(opt.state[0]["square_avg"], opt.state[0]["momentum_buffer"])
    bad_shape = {
        "state": {0: {**good["state"][0], "square_avg": np.zeros(5)}},
        "param_groups": good["param_groups"],
    }
    missing = {
        "state": {0: {"step": 1, "square_avg": np.zeros(4)}},
        "param_groups": good["param_groups"],
    }
    bad_dtype = {
        "state": {0: {**good["state"][0], "momentum_buffer": np.zeros(4, np.int64)}},
        "param_groups": good["param_groups"],
    }
    for sd, error, words in [
        (bad_shape, ValueError, "square_avg"),
        (missing, ValueError, "momentum_buffer"),
        (bad_dtype, TypeError, "momentum_buffer"),
        ({}, ValueError, "state"),
    ]:
        with pytest.raises(error, match=words):
            opt.load_state_dict(sd)
        assert checksum(opt.state[0]["square_avg"], opt.state[0]["momentum_buffer"]) == before


def test_constructor_and_step_validation() -> None:
    with pytest.raises(TypeError, match=r"params\[0\]"):
        NumpyRMSprop([[1.0, 2.0]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="Invalid alpha value"):
        NumpyRMSprop([np.ones(2)], alpha=2.0)
    opt = NumpyRMSprop([np.ones(2)])
    with pytest.raises(ValueError, match="grads has 2 items"):
        opt.step([np.ones(2), np.ones(2)])
