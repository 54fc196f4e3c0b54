"""RMSprop for numpy users: the native update behind a small optimizer object, no torch needed."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _core, _quantized
from ._precision import (
    check_compensation,
    check_param_compensation,
    check_seed,
    dtype_name,
    numpy_dtype,
    state_dtype_name,
)
from .functional import check_extension_options, native_hyperparams, options_from

__all__ = ["NumpyRMSprop", "check_optimizer_args"]

_STATE_KEYS = ("square_avg", "momentum_buffer", "grad_avg")


def check_optimizer_args(
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    initial_square_avg: float,
) -> None:
    """torch.optim.RMSprop's constructor checks and messages, plus finiteness and alpha <= 1."""
    checks = (
        ("learning rate", lr, 0.0, math.inf),
        ("epsilon value", eps, 0.0, math.inf),
        ("momentum value", momentum, 0.0, math.inf),
        ("weight_decay value", weight_decay, 0.0, math.inf),
        ("alpha value", alpha, 0.0, 1.0),
        ("initial_square_avg value", initial_square_avg, 0.0, math.inf),
    )
    for what, value, low, high in checks:
        if not (low <= value <= high) or not math.isfinite(value):
            raise ValueError(f"Invalid {what}: {value}")


class NumpyRMSprop:
    """RMSprop over a fixed list of numpy arrays, updated in place by the native kernel.

    Same hyperparameters and defaults as ``rmsprop_ext.RMSprop``; the state (``step``,
    ``square_avg`` and, when used, ``momentum_buffer``, ``grad_avg`` and Kahan summation's
    ``compensation``) is created at construction. ``step(grads)`` takes one gradient per
    parameter, in order. Parameters may be float32, float64, float16 or bfloat16 (ml_dtypes);
    ``state_dtype`` and ``compensation`` are as in ``rmsprop_ext.RMSprop``.
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        maximize: bool = False,
        *,
        eps_in_sqrt: bool = False,
        initial_square_avg: float = 0.0,
        decoupled_weight_decay: bool = False,
        lr_in_momentum: bool = False,
        nesterov: bool = False,
        bias_correction: bool = False,
        rounding: str = "torch",
        state_dtype: Any = None,
        compensation: str | None = None,
        seed: int = 0,
    ) -> None:
        check_optimizer_args(lr, alpha, eps, weight_decay, momentum, initial_square_avg)
        check_extension_options(momentum, alpha, nesterov, bias_correction, rounding)
        check_compensation(compensation)
        check_seed(seed)
        self.params: list[np.ndarray] = list(params)
        for i, p in enumerate(self.params):
            if not isinstance(p, np.ndarray):
                raise TypeError(f"params[{i}] must be a numpy.ndarray, got {type(p).__name__}")
            if dtype_name(p.dtype) not in ("float32", "float64", "float16", "bfloat16"):
                raise TypeError(
                    f"params[{i}] must have dtype float32, float64, float16 or bfloat16, "
                    f"got {p.dtype}"
                )
            if not p.flags.c_contiguous or not p.flags.writeable:
                raise ValueError(f"params[{i}] must be a writeable C-contiguous array")
            state_dtype_name(p.dtype, state_dtype, f"state_dtype (for params[{i}])")
            check_param_compensation(p.dtype, compensation, f"params[{i}]")
        self.defaults: dict[str, Any] = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "maximize": maximize,
            "eps_in_sqrt": eps_in_sqrt,
            "initial_square_avg": initial_square_avg,
            "decoupled_weight_decay": decoupled_weight_decay,
            "lr_in_momentum": lr_in_momentum,
            "nesterov": nesterov,
            "bias_correction": bias_correction,
            "rounding": rounding,
            "state_dtype": None if state_dtype is None else dtype_name(state_dtype),
            "compensation": compensation,
            "seed": seed,
        }
        # Step counters live in one array and are bumped by the native call itself, in the same
        # call as the update, so an interrupt can never separate the two.
        self._steps = np.zeros(len(self.params), np.float64)
        self.state: list[dict[str, Any]] = [
            self._fresh_state(p, self._steps[i : i + 1]) for i, p in enumerate(self.params)
        ]

    def _eight_bit(self, p: np.ndarray) -> bool:
        return state_dtype_name(p.dtype, self.defaults["state_dtype"]) == "8bit"

    def _state_dtype(self, p: np.ndarray) -> np.dtype:
        if self._eight_bit(p):
            return np.dtype(np.float32)  # the values, before they are encoded
        return numpy_dtype(state_dtype_name(p.dtype, self.defaults["state_dtype"]))

    def _set_state_buffer(
        self, state: dict[str, Any], p: np.ndarray, name: str, values: np.ndarray
    ) -> None:
        """state[name] = values in the state's form: its dtype, or 8-bit codes and exponents
        (rounded to nearest)."""
        if self._eight_bit(p):
            codes, exponents = _quantized.encode(values, _quantized.is_signed(name))
            state[name], state[name + "_exponents"] = codes, exponents
        else:
            state[name] = np.array(values, dtype=self._state_dtype(p), order="C", copy=True)

    def _fresh_state(self, p: np.ndarray, step: np.ndarray) -> dict[str, Any]:
        state: dict[str, Any] = {"step": step}
        initial = np.full(p.shape, self.defaults["initial_square_avg"], np.float32)
        self._set_state_buffer(state, p, "square_avg", initial)
        if self.defaults["momentum"] > 0:
            self._set_state_buffer(state, p, "momentum_buffer", np.zeros(p.shape, np.float32))
        if self.defaults["centered"]:
            self._set_state_buffer(state, p, "grad_avg", np.zeros(p.shape, np.float32))
        if self.defaults["compensation"] == "kahan":
            state["compensation"] = np.zeros_like(p)
        return state

    def step(self, grads: Sequence[np.ndarray]) -> None:
        """Applies one update with one gradient per parameter; nothing changes if any is invalid."""
        if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
            raise TypeError(f"grads must be a list or tuple of arrays, got {type(grads).__name__}")
        if len(grads) != len(self.params):
            raise ValueError(
                f"grads has {len(grads)} items but there are {len(self.params)} params"
            )
        d = self.defaults

        def buffers(name: str) -> list[Any]:
            return [
                (s[name], s[name + "_exponents"]) if name + "_exponents" in s else s[name]
                for s in self.state
            ]

        _core.rmsprop_step_many(
            self.params,
            list(grads),
            buffers("square_avg"),
            buffers("momentum_buffer") if d["momentum"] > 0 else None,
            buffers("grad_avg") if d["centered"] else None,
            [s["compensation"] for s in self.state] if d["compensation"] == "kahan" else None,
            hyperparams=native_hyperparams(options_from(d)),
            steps=[s["step"] for s in self.state],
        )

    def steps(self) -> list[int]:
        """How many updates each parameter has had."""
        return [int(n) for n in self._steps]

    def state_dict(self) -> dict[str, Any]:
        """A copy of the state in torch's layout: {"state": {i: {...}}, "param_groups": [...]}."""
        return {
            "state": {
                i: {k: (int(v[0]) if k == "step" else v.copy()) for k, v in s.items()}
                for i, s in enumerate(self.state)
            },
            "param_groups": [{**self.defaults, "params": list(range(len(self.params)))}],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores a state_dict() copy; everything is checked before any buffer is overwritten."""
        if not isinstance(state_dict, Mapping) or "state" not in state_dict:
            raise ValueError("state_dict must be a mapping with a 'state' entry")
        saved = state_dict["state"]
        if not isinstance(saved, Mapping) or sorted(saved) != list(range(len(self.params))):
            raise ValueError(
                "state_dict['state'] must have one entry per parameter, "
                f"keys 0..{len(self.params) - 1}"
            )
        groups = state_dict.get("param_groups", [{}])
        new_defaults = {**self.defaults, **{k: v for k, v in groups[0].items() if k != "params"}}
        check_optimizer_args(
            new_defaults["lr"],
            new_defaults["alpha"],
            new_defaults["eps"],
            new_defaults["weight_decay"],
            new_defaults["momentum"],
            new_defaults["initial_square_avg"],
        )
        check_compensation(new_defaults["compensation"])
        check_seed(new_defaults["seed"])
        for i, p in enumerate(self.params):
            state_dtype_name(p.dtype, new_defaults["state_dtype"], f"state_dtype (for params[{i}])")
            check_param_compensation(p.dtype, new_defaults["compensation"], f"params[{i}]")
        needed = ["square_avg"]
        if new_defaults["momentum"] > 0:
            needed.append("momentum_buffer")
        if new_defaults["centered"]:
            needed.append("grad_avg")
        if new_defaults["compensation"] == "kahan":
            needed.append("compensation")
        for i, p in enumerate(self.params):
            entry = saved[i]
            for key in ["step", *needed]:
                if key not in entry:
                    raise ValueError(f"state_dict['state'][{i}] is missing '{key}'")
            step = entry["step"]
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                raise ValueError(
                    f"state_dict['state'][{i}]['step'] must be an int >= 0, got {step!r}"
                )
            for key in needed:
                value = entry[key]
                if not isinstance(value, np.ndarray) or value.shape != p.shape:
                    raise ValueError(
                        f"state_dict['state'][{i}]['{key}'] must be an array of shape {p.shape}"
                    )
                exponents = entry.get(key + "_exponents")
                if exponents is not None:
                    blocks = _quantized.exponent_count(p.size)
                    if (
                        value.dtype != np.uint8
                        or not isinstance(exponents, np.ndarray)
                        or exponents.dtype != np.int8
                        or exponents.shape != (blocks,)
                    ):
                        raise ValueError(
                            f"state_dict['state'][{i}]['{key}'] is 8-bit: uint8 codes and "
                            f"{blocks} int8 exponents expected"
                        )
                    continue
                if not (np.issubdtype(value.dtype, np.floating) or value.dtype.name == "bfloat16"):
                    raise TypeError(
                        f"state_dict['state'][{i}]['{key}'] has dtype {value.dtype}, not a float"
                    )
        self.defaults = new_defaults
        for i, p in enumerate(self.params):
            entry = saved[i]
            self._steps[i] = int(entry["step"])
            state: dict[str, Any] = {"step": self._steps[i : i + 1]}
            for key in needed:
                # Converted to this optimizer's state form (the Kahan buffer: the param's dtype).
                value = entry[key]
                exponents = entry.get(key + "_exponents")
                if key == "compensation":
                    state[key] = np.array(value, dtype=p.dtype, order="C", copy=True)
                elif exponents is not None and self._eight_bit(p):
                    state[key], state[key + "_exponents"] = value.copy(), exponents.copy()
                elif exponents is not None:
                    decoded = _quantized.decode(value, exponents, _quantized.is_signed(key))
                    self._set_state_buffer(state, p, key, decoded)
                else:
                    self._set_state_buffer(state, p, key, value)
            self.state[i] = state
