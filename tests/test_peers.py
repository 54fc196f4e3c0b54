"""Each preset against the library it names, run side by side: timm's RMSpropTF, Keras 3's RMSprop
(torch backend) and optax's rmsprop, 200 steps under a cosine learning-rate schedule.

The peers are the `peers` extra (`.ci/run` installs it; RMSPROP_EXT_REQUIRE_PEERS=1 turns a missing
peer into an error instead of a skip). float32 parameters must agree within rtol 1e-5 (atol 1e-6);
float64 within 1e-12 where the peer computes in float64.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import types
from typing import Any, Callable

import numpy as np
import pytest
import rmsprop_ext
from conftest import HAS_TORCH
from helpers import needs as needs_extra

STEPS = 200
SIZE = 1031
BASE_LR = 1e-2
F32_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def needs(module: str) -> Any:
    return needs_extra(module, "peers")


def cosine_lr(step: int) -> float:
    """The learning rate of step `step` (0-based): a cosine from BASE_LR down to 10% of it."""
    return BASE_LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / STEPS)))


def problem(dtype: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(7)
    start = rng.standard_normal(SIZE).astype(dtype)
    grads = [(rng.standard_normal(SIZE) * (1 + k % 3)).astype(dtype) for k in range(STEPS)]
    return start, grads


def run_ours(
    options: dict[str, Any], dtype: Any, weight_decay_gradient: bool = False
) -> np.ndarray:
    """rmsprop_ext.RMSprop with `options`, the cosine schedule, and the fixed gradients."""
    import torch

    start, grads = problem(dtype)
    param = torch.nn.Parameter(torch.from_numpy(start.copy()))
    opt = rmsprop_ext.RMSprop([param], lr=cosine_lr(0), **options)
    for step, grad in enumerate(grads):
        opt.param_groups[0]["lr"] = cosine_lr(step)
        param.grad = torch.from_numpy(grad)
        opt.step()
    return param.detach().numpy()


def assert_agree(ours: np.ndarray, theirs: np.ndarray, dtype: Any) -> None:
    if dtype == np.float32:
        np.testing.assert_allclose(ours, theirs, **F32_TOLERANCE)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-13)


# -- timm ---------------------------------------------------------------------------------------


def load_timm_rmsprop_tf() -> Any:
    """timm's RMSpropTF class, loaded from the installed file: `import timm` imports torchvision,
    which does not load beside the CPU build of torch, and this module needs only torch."""
    spec = importlib.util.find_spec("timm")
    assert spec is not None and spec.submodule_search_locations
    optim_dir = os.path.join(next(iter(spec.submodule_search_locations)), "optim")
    package = types.ModuleType("_timm_optim")
    package.__path__ = [optim_dir]
    sys.modules.setdefault("_timm_optim", package)
    for name in ("_helpers", "rmsprop_tf"):
        full = f"_timm_optim.{name}"
        if full not in sys.modules:
            module_spec = importlib.util.spec_from_file_location(
                full, os.path.join(optim_dir, f"{name}.py")
            )
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[full] = module
            module_spec.loader.exec_module(module)
    return sys.modules["_timm_optim.rmsprop_tf"].RMSpropTF


TIMM_CASES = {
    "defaults": {},
    "momentum": {"momentum": 0.9},
    "centered momentum": {"momentum": 0.9, "centered": True},
    "weight decay": {"weight_decay": 0.01, "momentum": 0.5},
    "torch-style momentum": {"momentum": 0.9, "lr_in_momentum": False},
}


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")
@needs("timm")
@pytest.mark.parametrize("case", list(TIMM_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_timm_preset_matches_rmsprop_tf(case: str, dtype: Any) -> None:
    import torch

    rmsprop_tf = load_timm_rmsprop_tf()
    kwargs = TIMM_CASES[case]
    start, grads = problem(dtype)
    param = torch.nn.Parameter(torch.from_numpy(start.copy()))
    opt = rmsprop_tf([param], lr=cosine_lr(0), foreach=False, **kwargs)
    for step, grad in enumerate(grads):
        opt.param_groups[0]["lr"] = cosine_lr(step)
        param.grad = torch.from_numpy(grad)
        opt.step()
    ours = run_ours({**rmsprop_ext.presets["timm"], **kwargs}, dtype)
    assert_agree(ours, param.detach().numpy(), dtype)


# -- Keras 3 ------------------------------------------------------------------------------------

KERAS_CASES = {
    "defaults": {},
    "momentum": {"momentum": 0.9},
    "centered momentum": {"momentum": 0.9, "centered": True},
    "weight decay": {"weight_decay": 0.01},
}


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")
@needs("keras")
@pytest.mark.parametrize("case", list(KERAS_CASES))
def test_keras_preset_matches_keras_rmsprop(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError("keras was imported with another backend; run with KERAS_BACKEND=torch")
    kwargs = KERAS_CASES[case]
    start, grads = problem(np.float32)
    variable = keras.Variable(start.copy(), dtype="float32")
    opt = keras.optimizers.RMSprop(learning_rate=cosine_lr(0), **kwargs)
    opt.build([variable])
    for step, grad in enumerate(grads):
        opt.learning_rate = cosine_lr(step)
        opt.apply([keras.ops.convert_to_tensor(grad)], [variable])
    theirs = variable.value.detach().cpu().numpy()  # the torch backend keeps a torch tensor
    ours = run_ours({**rmsprop_ext.presets["keras"], **kwargs}, np.float32)
    assert_agree(ours, theirs, np.float32)


# -- optax --------------------------------------------------------------------------------------

OPTAX_CASES = {
    "defaults": {},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9, "nesterov": True},
    "bias correction": {"bias_correction": True},
    "nesterov bias correction": {"momentum": 0.9, "nesterov": True, "bias_correction": True},
    # At step 1 the bias-corrected centered variance is exactly 0 (s = g^2, a = g), so the first
    # step is lr * g / sqrt(eps): a larger eps keeps the run away from that cliff.
    "centered nesterov bias correction": {
        "momentum": 0.9,
        "nesterov": True,
        "centered": True,
        "bias_correction": True,
        "eps": 0.1,
    },
    "eps outside": {"eps_in_sqrt": False, "momentum": 0.5},
}


def run_optax(kwargs: dict[str, Any], dtype: Any) -> np.ndarray:
    import jax

    # float64 only for this run: with x64 on, optax's float32 runs round differently (its weakly
    # typed scalars, e.g. decay ** count, become float64), so tests would depend on their order.
    x64 = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", dtype == np.float64)
    try:
        return _run_optax(kwargs, dtype)
    finally:
        jax.config.update("jax_enable_x64", x64)


def _run_optax(kwargs: dict[str, Any], dtype: Any) -> np.ndarray:
    import jax
    import jax.numpy as jnp
    import optax

    start, grads = problem(dtype)
    transform = optax.inject_hyperparams(optax.rmsprop)(learning_rate=cosine_lr(0), **kwargs)
    params = jnp.asarray(start)
    state = transform.init(params)
    update: Callable[..., Any] = jax.jit(transform.update)
    for step, grad in enumerate(grads):
        state.hyperparams["learning_rate"] = jnp.asarray(cosine_lr(step), dtype)
        updates, state = update(jnp.asarray(grad), state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params)


def optax_to_ours(kwargs: dict[str, Any]) -> dict[str, Any]:
    renamed = {"decay": "alpha", "initial_scale": "initial_square_avg"}
    return {renamed.get(k, k): v for k, v in kwargs.items()}


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")
@needs("optax")
@pytest.mark.parametrize("case", list(OPTAX_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_optax_preset_matches_optax_rmsprop(case: str, dtype: Any) -> None:
    kwargs = OPTAX_CASES[case]
    theirs = run_optax(kwargs, dtype)
    ours = run_ours({**rmsprop_ext.presets["optax"], **optax_to_ours(kwargs)}, dtype)
    if dtype == np.float32 and kwargs.get("centered") and kwargs.get("bias_correction"):
        # The bias-corrected s and a^2 nearly cancel in the first steps (exactly at step 1), so
        # float32 rounding grows: optax's own float32 run is 2.4e-5 (relative) from its float64
        # run, further than the bound, and no other float32 implementation can stay within the
        # bound of it without optax's (XLA's) exact operation order. Both are held to optax's
        # float64 answer instead: ours within the bound (measured 8.5e-6).
        exact = run_optax(kwargs, np.float64)
        assert not np.allclose(theirs, exact, **F32_TOLERANCE)  # the premise above
        np.testing.assert_allclose(ours.astype(np.float64), exact, **F32_TOLERANCE)
        return
    assert_agree(ours, theirs, dtype)


def test_presets_are_read_only_and_name_only_known_options() -> None:
    import inspect

    known = set(inspect.signature(rmsprop_ext.NumpyRMSprop).parameters)
    for name, options in rmsprop_ext.presets.items():
        assert set(options) <= known, name
        with pytest.raises(TypeError):
            options["alpha"] = 0.5  # type: ignore[index]
    assert set(rmsprop_ext.presets) == {"torch", "tf1", "keras", "timm", "optax", "textbook"}


def test_textbook_preset_matches_the_textbook_formulas() -> None:
    from rmsprop_ext import reference

    start, grads = problem(np.float64)
    ours = start.copy()
    opt = rmsprop_ext.NumpyRMSprop([ours], lr=0.01, **rmsprop_ext.presets["textbook"])
    theirs, state = start.copy(), np.zeros_like(start)
    for grad in grads:
        opt.step([grad])
        reference.rmsprop_numpy([(theirs, grad)], [state], {"lr": 0.01, "gamma": 0.9})
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-13)
