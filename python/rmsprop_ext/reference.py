"""Pure-Python RMSProp, written plainly: the scratch versions native results are checked against.

Three layers, from the textbook down to every option of the library:

* ``f_2d``, ``rmsprop_2d`` and ``train_2d``: the scalar two-dimensional example,
  f(x) = 0.1 * x1**2 + 2 * x2**2, with eta = 0.4 and gamma = 0.9.
* ``rmsprop_numpy`` and ``rmsprop_torch``: the textbook's ``rmsprop(params, states, hyperparams)``
  with eps = 1e-6 inside the square root, for numpy arrays and for torch tensors.
* ``rmsprop_reference``: every variant rmsprop_ext implements, in float64, returning new arrays.
* ``rmsprop_reference_stored``: the same for buffers stored in bfloat16, float16, float32 or the
  8-bit block format: the step in float64 from the stored values, each stored result rounded
  once to its format, with Kahan summation or the kernel's stochastic rounding (same generator)
  for the parameter.

Nothing here imports torch at module level; ``rmsprop_torch`` imports it when called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ETA_2D",
    "GAMMA_2D",
    "f_2d",
    "init_rmsprop_states",
    "rmsprop_2d",
    "rmsprop_numpy",
    "rmsprop_reference",
    "rmsprop_reference_stored",
    "rmsprop_torch",
    "train_2d",
]

ETA_2D = 0.4
GAMMA_2D = 0.9
TEXTBOOK_EPS = 1e-6

Trainer2d = Callable[[float, float, float, float], tuple[float, float, float, float]]


def f_2d(x1: float, x2: float) -> float:
    """The objective of the textbook's two-dimensional example."""
    return 0.1 * x1**2 + 2 * x2**2


def rmsprop_2d(
    x1: float, x2: float, s1: float, s2: float, eta: float = ETA_2D, gamma: float = GAMMA_2D
) -> tuple[float, float, float, float]:
    """One scalar RMSProp step on f_2d; returns the new (x1, x2, s1, s2)."""
    g1, g2 = 0.2 * x1, 4 * x2
    s1 = gamma * s1 + (1 - gamma) * g1**2
    s2 = gamma * s2 + (1 - gamma) * g2**2
    x1 -= eta / math.sqrt(s1 + TEXTBOOK_EPS) * g1
    x2 -= eta / math.sqrt(s2 + TEXTBOOK_EPS) * g2
    return x1, x2, s1, s2


def train_2d(
    trainer: Trainer2d, steps: int = 20, *, verbose: bool = True
) -> list[tuple[float, float]]:
    """Runs `trainer` from (-5, -2) with zero state; returns the trajectory, printing the end."""
    x1, x2, s1, s2 = -5.0, -2.0, 0.0, 0.0
    results = [(x1, x2)]
    for _ in range(steps):
        x1, x2, s1, s2 = trainer(x1, x2, s1, s2)
        results.append((x1, x2))
    if verbose:
        print(format_2d_result(steps, x1, x2))
    return results


def format_2d_result(epoch: int, x1: float, x2: float) -> str:
    """The line the textbook prints after a 2-D run."""
    return f"epoch {epoch}, x1: {float(x1):f}, x2: {float(x2):f}"


def init_rmsprop_states(params: Sequence[Any]) -> list[Any]:
    """Zero state shaped like each parameter: numpy arrays, torch tensors or (value, grad) pairs."""
    states: list[Any] = []
    for p in params:
        value = p[0] if isinstance(p, tuple) else p
        if isinstance(value, np.ndarray):
            states.append(np.zeros_like(value))
        else:
            import torch

            states.append(torch.zeros_like(value))
    return states


def rmsprop_numpy(
    params: Sequence[tuple[np.ndarray, np.ndarray]],
    states: Sequence[np.ndarray],
    hyperparams: dict[str, float],
) -> None:
    """The textbook step for numpy: params are (value, grad) pairs, updated in place."""
    gamma, eps = hyperparams["gamma"], TEXTBOOK_EPS
    for (p, grad), s in zip(params, states):
        s[:] = gamma * s + (1 - gamma) * np.square(grad)
        p[:] -= hyperparams["lr"] * grad / np.sqrt(s + eps)


def rmsprop_torch(
    params: Sequence[Any], states: Sequence[Any], hyperparams: dict[str, float]
) -> None:
    """The textbook step for torch tensors with .grad, updated in place; clears the gradients."""
    import torch

    gamma, eps = hyperparams["gamma"], TEXTBOOK_EPS
    for p, s in zip(params, states):
        with torch.no_grad():
            s[:] = gamma * s + (1 - gamma) * torch.square(p.grad)
            p[:] -= hyperparams["lr"] * p.grad / torch.sqrt(s + eps)
        p.grad.data.zero_()


def rmsprop_reference(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    momentum_buffer: np.ndarray | None = None,
    grad_avg: np.ndarray | None = None,
    *,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
    eps_in_sqrt: bool = False,
    decoupled_weight_decay: bool = False,
    lr_in_momentum: bool = False,
    nesterov: bool = False,
    bias_correction: bool = False,
    step: int = 1,
    rounding: str = "torch",
    stored_state: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One step of any variant in float64; `step` numbers it (1 for the first) for the bias
    correction. ``rounding`` is accepted so that option sets can be passed whole; real numbers
    have no rounding to choose. ``stored_state``, when given, maps each new state buffer to the
    values its storage keeps, and the step goes on with those (as torch's does).

    Returns new (param, square_avg, momentum_buffer, grad_avg).

    The buffers that an option does not use come back as given (possibly None).
    """
    del rounding
    x = np.asarray(param, dtype=np.float64).copy()
    g = np.asarray(grad, dtype=np.float64)
    s = np.asarray(square_avg, dtype=np.float64)

    if maximize:
        g = -g
    if weight_decay != 0 and decoupled_weight_decay:
        x = x * (1 - lr * weight_decay)
    elif weight_decay != 0:
        g = g + weight_decay * np.asarray(param, dtype=np.float64)

    keep = stored_state or (lambda values: values)
    s = keep(alpha * s + (1 - alpha) * g * g)
    # optax's bias correction: the averages over t steps divided by 1 - alpha^t.
    correction = 1 - alpha**step if bias_correction else 1.0
    variance = s / correction
    if centered:
        assert grad_avg is not None, "centered needs grad_avg"
        grad_avg = keep(alpha * np.asarray(grad_avg, dtype=np.float64) + (1 - alpha) * g)
        mean = grad_avg / correction
        # Clamped at 0 (NaN passes through): rounding can leave s - a^2 a hair below zero.
        variance = np.where(variance - mean * mean < 0, 0.0, variance - mean * mean)

    denom = np.sqrt(variance + eps) if eps_in_sqrt else np.sqrt(variance) + eps
    # The learning rate scales the step before the momentum buffer (TF1, Keras, timm, optax) or
    # after it (torch).
    inside, outside = (lr, 1.0) if lr_in_momentum else (1.0, lr)
    direction = inside * g / denom
    if momentum > 0:
        assert momentum_buffer is not None, "momentum > 0 needs momentum_buffer"
        scaled = direction
        momentum_buffer = keep(momentum * np.asarray(momentum_buffer, dtype=np.float64) + scaled)
        direction = scaled + momentum * momentum_buffer if nesterov else momentum_buffer
    x = x - outside * direction
    return x, s, momentum_buffer, grad_avg


def rmsprop_reference_stored(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    momentum_buffer: np.ndarray | None = None,
    grad_avg: np.ndarray | None = None,
    *,
    param_dtype: str,
    state_dtype: str,
    compensation: str | None = None,
    compensation_buffer: np.ndarray | None = None,
    seed: int = 0,
    stream: int = 0,
    step: int = 1,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """One step of a parameter stored as `param_dtype` ("bfloat16", "float16", "float32") with
    its state stored as `state_dtype`, the inputs given as the stored values (any float arrays).

    The step is `rmsprop_reference`'s, in float64; each buffer it writes is rounded once to its
    format (to nearest even), and the step goes on with the state as stored. The parameter, with
    ``compensation="kahan"``, is stored as round(x + c) with the new compensation
    round(c + x - stored) (x the exact new value, c the compensation buffer; optimi's Kahan
    summation), and with ``"stochastic"`` rounded up or down with the kernel's own random bits
    for (seed, stream, step, element index).

    With ``state_dtype="8bit"`` each state buffer is a (codes, exponents) pair (the format of
    ``rmsprop_ext._quantized``): the step takes the decoded values, the parameter's update uses
    the new state before it is stored (as the kernel's does), and the new state is rounded to
    float32, then encoded with the kernel's stochastic rounding and random bits; the pairs come
    back encoded.

    Returns new (param, square_avg, momentum_buffer, grad_avg, compensation_buffer) as float64
    arrays holding the stored values; unused buffers come back as given.
    """
    from . import _quantized
    from ._precision import random_bits, round_nearest, round_stochastic

    eight_bit = state_dtype == "8bit"
    buffers = {"square_avg": square_avg, "momentum_buffer": momentum_buffer, "grad_avg": grad_avg}
    if eight_bit:
        buffers = {
            name: None
            if pair is None
            else _quantized.decode(pair[0], pair[1], _quantized.is_signed(name))
            for name, pair in buffers.items()
        }
    square = buffers["square_avg"]
    assert square is not None, "square_avg is required"
    x, s, b, a = rmsprop_reference(
        param,
        grad,
        square,
        buffers["momentum_buffer"],
        buffers["grad_avg"],
        step=step,
        stored_state=None if eight_bit else lambda values: round_nearest(values, state_dtype),
        **options,
    )
    if eight_bit:
        uses = options.get("momentum", 0) > 0, options.get("centered", False)
        new = {"square_avg": s, "momentum_buffer": b if uses[0] else None}
        new["grad_avg"] = a if uses[1] else None
        encoded: dict[str, Any] = {}
        for name, values in new.items():
            if values is None:
                encoded[name] = {"momentum_buffer": momentum_buffer, "grad_avg": grad_avg}[name]
                continue
            flat = np.asarray(values, np.float32).reshape(-1)
            bits = random_bits(seed, stream, step, flat.size, use=name)
            encoded[name] = _quantized.encode(
                np.asarray(values, np.float32), _quantized.is_signed(name), bits
            )
        s, b, a = encoded["square_avg"], encoded["momentum_buffer"], encoded["grad_avg"]
    if compensation == "kahan":
        assert compensation_buffer is not None, "Kahan summation needs compensation_buffer"
        target = x + np.asarray(compensation_buffer, dtype=np.float64)
        stored = round_nearest(target, param_dtype)
        compensation_buffer = round_nearest(target - stored, param_dtype)
    elif compensation == "stochastic":
        bits = random_bits(seed, stream, step, x.size).reshape(x.shape)
        stored = round_stochastic(x, bits, param_dtype)
    else:
        stored = round_nearest(x, param_dtype)
    return stored, s, b, a, compensation_buffer
