"""Bad input raises a TypeError/ValueError naming the argument, and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import rmsprop_ext
from helpers import checksum


def buffers(n: int = 33, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    return {
        "param": rng.standard_normal(n).astype(dtype),
        "grad": rng.standard_normal(n).astype(dtype),
        "square_avg": rng.random(n).astype(dtype),
        "momentum_buffer": rng.standard_normal(n).astype(dtype),
        "grad_avg": rng.standard_normal(n).astype(dtype),
    }


def read_only(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def unaligned(a: np.ndarray) -> np.ndarray:
    raw = np.zeros(a.nbytes + 1, np.uint8)
    view = raw[1:].view(a.dtype)
    view[:] = a
    return view


# (case id, replacement buffers, extra options, exception, words the message must contain)
SINGLE_CASES: list[
    tuple[str, Callable[[dict[str, np.ndarray]], dict[str, Any]], dict[str, Any], type, str]
] = [
    ("grad-wrong-dtype", lambda b: {"grad": b["grad"].astype(np.float64)}, {}, TypeError, "grad"),
    ("param-int-dtype", lambda b: {"param": b["param"].astype(np.int32)}, {}, TypeError, "param"),
    ("param-float16", lambda b: {"param": b["param"].astype(np.float16)}, {}, TypeError, "param"),
    (
        "square-avg-big-endian",
        lambda b: {"square_avg": b["square_avg"].astype(">f4")},
        {},
        TypeError,
        "square_avg",
    ),
    ("grad-shape", lambda b: {"grad": b["grad"][:-1].copy()}, {}, ValueError, "grad"),
    ("grad-zero-size", lambda b: {"grad": b["grad"][:0].copy()}, {}, ValueError, "grad"),
    (
        "square-avg-zero-size",
        lambda b: {"square_avg": b["square_avg"][:0].copy()},
        {},
        ValueError,
        "square_avg",
    ),
    (
        "square-avg-2d",
        lambda b: {"square_avg": b["square_avg"].reshape(3, 11)},
        {},
        ValueError,
        "square_avg",
    ),
    ("grad-strided", lambda b: {"grad": np.repeat(b["grad"], 2)[::2]}, {}, ValueError, "grad"),
    ("param-negative-stride", lambda b: {"param": b["param"][::-1]}, {}, ValueError, "param"),
    ("param-read-only", lambda b: {"param": read_only(b["param"])}, {}, ValueError, "param"),
    (
        "square-avg-read-only",
        lambda b: {"square_avg": read_only(b["square_avg"])},
        {},
        ValueError,
        "square_avg",
    ),
    ("param-unaligned", lambda b: {"param": unaligned(b["param"])}, {}, ValueError, "param"),
    ("grad-is-param", lambda b: {"grad": b["param"]}, {}, ValueError, "share memory"),
    (
        "square-avg-overlaps-param",
        lambda b: {"square_avg": b["param"]},
        {},
        ValueError,
        "share memory",
    ),
    ("grad-list", lambda b: {"grad": b["grad"].tolist()}, {}, TypeError, "grad"),
    ("param-scalar", lambda b: {"param": 1.0}, {}, TypeError, "param"),
    (
        "momentum-buffer-missing",
        lambda b: {"momentum_buffer": None},
        {"momentum": 0.9},
        ValueError,
        "momentum_buffer",
    ),
    ("grad-avg-missing", lambda b: {"grad_avg": None}, {"centered": True}, ValueError, "grad_avg"),
    (
        "momentum-buffer-read-only",
        lambda b: {"momentum_buffer": read_only(b["momentum_buffer"])},
        {"momentum": 0.9},
        ValueError,
        "momentum_buffer",
    ),
    ("lr-negative", lambda b: {}, {"lr": -0.1}, ValueError, "lr"),
    ("lr-nan", lambda b: {}, {"lr": float("nan")}, ValueError, "lr"),
    ("lr-inf", lambda b: {}, {"lr": float("inf")}, ValueError, "lr"),
    ("lr-string", lambda b: {}, {"lr": "fast"}, TypeError, "lr"),
    ("alpha-above-one", lambda b: {}, {"alpha": 1.5}, ValueError, "alpha"),
    ("alpha-negative", lambda b: {}, {"alpha": -0.1}, ValueError, "alpha"),
    ("eps-negative", lambda b: {}, {"eps": -1e-8}, ValueError, "eps"),
    ("eps-nan", lambda b: {}, {"eps": float("nan")}, ValueError, "eps"),
    ("weight-decay-negative", lambda b: {}, {"weight_decay": -1.0}, ValueError, "weight_decay"),
    ("momentum-negative", lambda b: {}, {"momentum": -0.5}, ValueError, "momentum"),
    ("momentum-inf", lambda b: {}, {"momentum": float("inf")}, ValueError, "momentum"),
    ("num-threads-zero", lambda b: {}, {"num_threads": 0}, ValueError, "num_threads"),
    ("rounding-unknown", lambda b: {}, {"rounding": "exact"}, ValueError, "rounding"),
    (
        "nesterov-no-momentum",
        lambda b: {},
        {"nesterov": True, "momentum": 0.0},
        ValueError,
        "nesterov",
    ),
    ("bias-correction-no-step", lambda b: {}, {"bias_correction": True}, ValueError, "step"),
    ("step-zero", lambda b: {}, {"bias_correction": True, "step": 0}, ValueError, "step"),
    ("step-float", lambda b: {}, {"step": 1.5}, ValueError, "step"),
    (
        "bias-correction-alpha-one",
        lambda b: {},
        {"bias_correction": True, "alpha": 1.0, "step": 1},
        ValueError,
        "bias_correction",
    ),
    (
        "grad-real-for-complex-param",
        lambda b: {k: v.astype(np.complex64) for k, v in b.items() if k != "grad"},
        {},
        TypeError,
        "grad",
    ),
]


@pytest.mark.parametrize(
    ("replace", "options", "error", "words"),
    [c[1:] for c in SINGLE_CASES],
    ids=[c[0] for c in SINGLE_CASES],
)
def test_rmsprop_step_rejects_and_writes_nothing(
    replace: Any, options: dict[str, Any], error: type, words: str
) -> None:
    options = dict(options)  # the case table is shared by every ISA's run
    b = buffers()
    args = {**b, **replace(b)}
    before = checksum(*b.values(), *[v for v in args.values() if isinstance(v, np.ndarray)])
    with pytest.raises(error, match=words):
        rmsprop_ext.rmsprop_step(
            args["param"],
            args["grad"],
            args["square_avg"],
            lr=options.pop("lr", 0.01),
            momentum_buffer=args["momentum_buffer"],
            grad_avg=args["grad_avg"],
            centered=options.pop("centered", True),
            momentum=options.pop("momentum", 0.9),
            **options,
        )
    after = checksum(*b.values(), *[v for v in args.values() if isinstance(v, np.ndarray)])
    assert before == after


MANY_CASES = [
    ("grad-wrong-dtype", "grads", lambda b: b["grad"].astype(np.float64), TypeError),
    ("param-read-only", "params", lambda b: read_only(b["param"]), ValueError),
    ("square-avg-shape", "square_avgs", lambda b: b["square_avg"][:5].copy(), ValueError),
    ("grad-avg-strided", "grad_avgs", lambda b: np.repeat(b["grad_avg"], 2)[::2], ValueError),
    ("momentum-buffer-none", "momentum_buffers", lambda b: None, ValueError),
    ("grad-not-array", "grads", lambda b: "gradient", TypeError),
]


@pytest.mark.parametrize(
    ("key", "bad", "error"), [c[1:] for c in MANY_CASES], ids=[c[0] for c in MANY_CASES]
)
def test_bad_item_late_in_the_list_leaves_every_item_unchanged(
    key: str, bad: Any, error: type
) -> None:
    items = [
        buffers(n, dtype)
        for n, dtype in [
            (5000, np.float32),
            (40000, np.float64),
            (17, np.float32),
            (33, np.float32),
        ]
    ]
    lists = {role + "s": [b[role] for b in items] for role in items[0]}
    lists[key][-1] = bad(items[-1])
    before = checksum(*[a for b in items for a in b.values()])
    with pytest.raises(error, match=rf"{key}\[3\]"):
        rmsprop_ext.rmsprop_step_many(
            lists["params"],
            lists["grads"],
            lists["square_avgs"],
            lr=0.01,
            momentum=0.9,
            momentum_buffers=lists["momentum_buffers"],
            centered=True,
            grad_avgs=lists["grad_avgs"],
        )
    assert checksum(*[a for b in items for a in b.values()]) == before


def test_lists_of_different_lengths_and_shared_memory_across_items() -> None:
    a, b = buffers(), buffers()
    with pytest.raises(ValueError, match="grads has 1 items but params has 2"):
        rmsprop_ext.rmsprop_step_many(
            [a["param"], b["param"]], [a["grad"]], [a["square_avg"], b["square_avg"]], lr=0.1
        )
    with pytest.raises(ValueError, match=r"share memory"):
        rmsprop_ext.rmsprop_step_many(
            [a["param"], a["param"]],
            [a["grad"], b["grad"]],
            [a["square_avg"], b["square_avg"]],
            lr=0.1,
        )
    with pytest.raises(TypeError, match="params must be a list or tuple"):
        rmsprop_ext.rmsprop_step_many(a["param"], [a["grad"]], [a["square_avg"]], lr=0.1)
    # Two items may read one gradient: only written buffers must be separate.
    rmsprop_ext.rmsprop_step_many(
        [a["param"], b["param"]], [a["grad"], a["grad"]], [a["square_avg"], b["square_avg"]], lr=0.1
    )


def test_torch_tensors_that_the_kernel_cannot_take() -> None:
    torch = pytest.importorskip("torch")
    b = {k: torch.from_numpy(v) for k, v in buffers().items()}
    cases = [
        ({"param": b["param"].half()}, TypeError, "param"),
        ({"grad": b["grad"].to_sparse()}, TypeError, "grad"),
        ({"square_avg": torch.zeros(66)[::2]}, ValueError, "square_avg"),
        ({"param": torch.empty(33, device="meta")}, ValueError, "param"),
    ]
    for replace, error, words in cases:
        args = {**b, **replace}
        before = checksum(*b.values())
        with pytest.raises(error, match=words):
            rmsprop_ext.rmsprop_step(args["param"], args["grad"], args["square_avg"], lr=0.1)
        assert checksum(*b.values()) == before
