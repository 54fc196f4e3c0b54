"""The optimizers and their load_state_dict: bad input raises an error naming it, and a checksum
of every parameter and state buffer is unchanged afterwards."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import rmsprop_ext
from conftest import HAS_TORCH
from helpers import checksum

if HAS_TORCH:
    import torch

needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")


def trained_torch_optimizer() -> tuple[Any, list[Any]]:
    params = [
        torch.nn.Parameter(torch.randn(5, 3)),
        torch.nn.Parameter(torch.randn(7)),
        torch.nn.Parameter(torch.randn(4).half()),
        torch.nn.Parameter(torch.randn(3, 2).t()),
    ]  # the last one takes the torch path
    opt = rmsprop_ext.RMSprop(params, lr=1e-2, momentum=0.9, centered=True, eps=1e-3)
    for _ in range(2):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    for p in params:
        p.grad = torch.randn_like(p)
    return opt, params


def everything(opt: Any, params: list[Any]) -> list[int]:
    buffers = [p.detach() for p in params]
    for state in opt.state.values():
        buffers += [v for v in state.values()]
    return checksum(*buffers)


def set_group(key: str, value: Any) -> Callable[[Any, list[Any]], None]:
    def apply(opt: Any, params: list[Any]) -> None:
        opt.param_groups[0][key] = value

    return apply


def sparse_grad(opt: Any, params: list[Any]) -> None:
    # a row-sparse gradient naming a row the parameter lacks
    params[1].grad = torch.sparse_coo_tensor([[0, 9]], torch.ones(2), (7,), check_invariants=False)


def aliased_grad(opt: Any, params: list[Any]) -> None:
    params[0].grad = params[0].detach()


STEP_CASES = [
    ("sparse-grad", sparse_grad, ValueError, "index 9"),
    ("grad-aliases-param", aliased_grad, ValueError, "shares? memory"),
    ("lr-negative", set_group("lr", -1.0), ValueError, "lr"),
    ("lr-nan", set_group("lr", float("nan")), ValueError, "lr"),
    ("lr-string", set_group("lr", "fast"), TypeError, "lr"),
    ("alpha-above-one", set_group("alpha", 1.5), ValueError, "alpha"),
    ("eps-inf", set_group("eps", float("inf")), ValueError, "eps"),
    ("weight-decay-negative", set_group("weight_decay", -0.1), ValueError, "weight_decay"),
    ("momentum-negative", set_group("momentum", -0.5), ValueError, "momentum"),
]


@needs_torch
@pytest.mark.parametrize(
    ("corrupt", "error", "words"), [c[1:] for c in STEP_CASES], ids=[c[0] for c in STEP_CASES]
)
def test_torch_optimizer_step_rejects_and_changes_nothing(
    corrupt: Any, error: type, words: str
) -> None:
    opt, params = trained_torch_optimizer()
    before = everything(opt, params)
    steps = [int(s["step"]) for s in opt.state.values()]
    corrupt(opt, params)
    with pytest.raises(error, match=words):
        opt.step()
    assert everything(opt, params) == before
    assert [int(s["step"]) for s in opt.state.values()] == steps


def state_with(change: Callable[[dict[str, Any]], None]) -> Callable[[Any], dict[str, Any]]:
    def make(opt: Any) -> dict[str, Any]:
        sd = copy.deepcopy(opt.state_dict())
        change(sd)
        return sd

    return make


LOAD_CASES = [
    (
        "wrong-shape",
        state_with(lambda sd: sd["state"][0].update(square_avg=torch.zeros(3, 5))),
        ValueError,
        r"\['square_avg'\] has shape",
    ),
    (
        "missing-momentum-buffer",
        state_with(lambda sd: sd["state"][1].pop("momentum_buffer")),
        ValueError,
        "missing 'momentum_buffer'",
    ),
    (
        "missing-step",
        state_with(lambda sd: sd["state"][0].pop("step")),
        ValueError,
        "missing 'step'",
    ),
    (
        "integer-dtype",
        state_with(lambda sd: sd["state"][1].update(grad_avg=torch.zeros(7, dtype=torch.int64))),
        TypeError,
        "not a float",
    ),
    (
        "not-a-tensor",
        state_with(lambda sd: sd["state"][1].update(square_avg=[0.0] * 7)),
        TypeError,
        "must be a tensor",
    ),
    (
        "group-count",
        state_with(lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0]))),
        ValueError,
        "param groups",
    ),
    (
        "param-count",
        state_with(lambda sd: sd["param_groups"][0]["params"].pop()),
        ValueError,
        "params",
    ),
    ("not-a-dict", lambda opt: [1, 2, 3], ValueError, "state_dict"),
]


@needs_torch
@pytest.mark.parametrize(
    ("make", "error", "words"), [c[1:] for c in LOAD_CASES], ids=[c[0] for c in LOAD_CASES]
)
def test_torch_optimizer_load_state_dict_rejects_and_changes_nothing(
    make: Any, error: type, words: str
) -> None:
    opt, params = trained_torch_optimizer()
    bad = make(opt)
    before = everything(opt, params)
    with pytest.raises(error, match=words):
        opt.load_state_dict(bad)
    assert everything(opt, params) == before
    opt.step()  # still usable


def numpy_optimizer() -> tuple[rmsprop_ext.NumpyRMSprop, list[np.ndarray]]:
    params = [np.ones((4, 3), np.float32), np.ones(5, np.float64)]
    opt = rmsprop_ext.NumpyRMSprop(params, momentum=0.9, centered=True)
    opt.step([np.full((4, 3), 0.5, np.float32), np.full(5, 0.5)])
    return opt, params


def numpy_everything(opt: rmsprop_ext.NumpyRMSprop, params: list[np.ndarray]) -> list[int]:
    return checksum(*params, *[v for s in opt.state for v in s.values()])


GOOD = [np.full((4, 3), 0.1, np.float32), np.full(5, 0.1)]
NUMPY_STEP_CASES = [
    ("grad-wrong-dtype", [GOOD[0].astype(np.float64), GOOD[1]], TypeError, r"grads\[0\]"),
    ("grad-wrong-shape", [GOOD[0], GOOD[1][:4].copy()], ValueError, r"grads\[1\]"),
    ("grad-strided", [GOOD[0], np.repeat(GOOD[1], 2)[::2]], ValueError, r"grads\[1\]"),
    ("grad-is-a-list", [GOOD[0], GOOD[1].tolist()], TypeError, r"grads\[1\]"),
    ("grad-none", [GOOD[0], None], ValueError, r"grads\[1\]"),
    ("too-few-grads", [GOOD[0]], ValueError, "grads has 1 items"),
    ("grads-not-a-list", GOOD[0], TypeError, "grads must be a list"),
]


@pytest.mark.parametrize(
    ("grads", "error", "words"),
    [c[1:] for c in NUMPY_STEP_CASES],
    ids=[c[0] for c in NUMPY_STEP_CASES],
)
def test_numpy_optimizer_step_rejects_and_changes_nothing(
    grads: Any, error: type, words: str
) -> None:
    opt, params = numpy_optimizer()
    before, steps = numpy_everything(opt, params), opt.steps()
    with pytest.raises(error, match=words):
        opt.step(grads)
    assert numpy_everything(opt, params) == before and opt.steps() == steps


def test_numpy_optimizer_grad_aliasing_its_parameter_is_refused() -> None:
    opt, params = numpy_optimizer()
    before = numpy_everything(opt, params)
    with pytest.raises(ValueError, match="share memory"):
        opt.step([params[0], GOOD[1]])
    assert numpy_everything(opt, params) == before
