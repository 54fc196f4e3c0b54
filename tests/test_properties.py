"""Property tests: random shapes, dtypes, hyperparameters, options and step counts; every native
step equals the float64 reference applied to the same state, within a stated tolerance.

Tolerance model (one step from identical inputs, so errors cannot compound): each value may
differ from the reference by rtol * (|new value| + |its change|), plus rtol times the largest such
scale in its buffer (inputs that cancel, like grad + wd * x near zero, err by the size of their
terms). rtol is 2e-5 for float32 and 1e-11 for float64. Where the gradient itself is zero to
within 64 ulps of its terms (only possible with coupled weight decay: grad + wd * x cancelling),
its sign is not determined at that precision and RMSProp's early, sign-like steps may go either
way: there only finiteness is required. Multi-step trajectories are not compared element by
element because such sign flips make them legitimately diverge.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import rmsprop_ext
from hypothesis import given
from hypothesis import strategies as st
from rmsprop_ext.reference import rmsprop_reference

RTOL = {np.float32: 2e-5, np.float64: 1e-11}
BUFFERS = ("param", "square_avg", "momentum_buffer", "grad_avg")

shapes = st.one_of(
    st.integers(0, 4100).map(lambda n: (n,)),
    st.lists(st.integers(0, 12), min_size=0, max_size=3).map(tuple),
)


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    centered = draw(st.booleans())
    options = {
        "lr": draw(st.floats(0.0, 0.5)),
        # centered: alpha >= 0.5 keeps s - a^2 well conditioned for random gradients
        "alpha": draw(st.floats(0.5 if centered else 0.0, 0.999)),
        "eps": draw(st.sampled_from([1e-8, 1e-6, 1e-3, 0.1])),
        "weight_decay": draw(st.sampled_from([0.0, 1e-3, 0.1])),
        "momentum": draw(st.sampled_from([0.0, 0.5, 0.9])),
        "centered": centered,
        "maximize": draw(st.booleans()),
        "eps_in_sqrt": draw(st.booleans()),
        "decoupled_weight_decay": draw(st.booleans()),
    }
    return {
        "shape": draw(shapes),
        "dtype": draw(st.sampled_from([np.float32, np.float64])),
        "steps": draw(st.integers(1, 12)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "grad_scale": draw(st.sampled_from([1e-3, 1.0, 1e3])),
        "options": options,
    }


def sign_determined(
    x: np.ndarray, g: np.ndarray, options: dict[str, Any], dtype: Any
) -> np.ndarray:
    """False where grad + wd * x is zero to within 64 ulps of its terms."""
    if options["weight_decay"] == 0 or options["decoupled_weight_decay"]:
        return np.ones(g.shape, bool)
    total = g.astype(np.float64) + options["weight_decay"] * x
    terms = np.abs(g.astype(np.float64)) + options["weight_decay"] * np.abs(x)
    return np.abs(total) > 64 * np.finfo(dtype).eps * terms


@given(cases())
def test_every_native_step_matches_the_float64_reference(case: dict[str, Any]) -> None:
    dtype, options, shape = case["dtype"], case["options"], case["shape"]
    rng = np.random.default_rng(case["seed"])
    # np.array: shape () must give a 0-d array (a numpy scalar is immutable and is refused)
    native = {
        "param": np.array(rng.standard_normal(shape), dtype),
        "square_avg": np.zeros(shape, dtype),
    }
    if options["momentum"] > 0:
        native["momentum_buffer"] = np.zeros(shape, dtype)
    if options["centered"]:
        native["grad_avg"] = np.zeros(shape, dtype)
    state = {k: v for k, v in native.items() if k in ("momentum_buffer", "grad_avg")}
    rtol = RTOL[dtype]

    for _ in range(case["steps"]):
        g = np.array(rng.standard_normal(shape) * case["grad_scale"], dtype)
        before = {k: v.astype(np.float64) for k, v in native.items()}
        rmsprop_ext.rmsprop_step(native["param"], g, native["square_avg"], **state, **options)
        after = rmsprop_reference(
            before["param"],
            g,
            before["square_avg"],
            before.get("momentum_buffer"),
            before.get("grad_avg"),
            **options,
        )
        determined = sign_determined(before["param"], g, options, dtype)
        for key, ref in zip(BUFFERS, after):
            if key not in native:
                continue
            got = native[key].astype(np.float64)
            assert np.all(np.isfinite(got) | ~np.isfinite(ref)), key
            scale = np.abs(ref) + np.abs(ref - before[key])
            allowed = rtol * (scale + (scale.max() if scale.size else 0.0)) + np.finfo(dtype).tiny
            ok = (np.abs(got - ref) <= allowed) | ~determined
            assert np.all(ok), (key, float(np.max(np.abs(got - ref) - allowed)), case)
