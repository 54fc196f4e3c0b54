"""The functional API: one in-place RMSProp step on numpy arrays or torch CPU tensors."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from . import _core
from ._idle_steps import IdleSteps
from ._precision import check_compensation, check_seed
from ._rounding import check_rounding, resolve_rounding

if TYPE_CHECKING:
    import torch

    Buffer = Union[np.ndarray, torch.Tensor]
else:
    Buffer = Any

__all__ = [
    "IdleSteps",
    "as_native_array",
    "check_extension_options",
    "hyperparams",
    "native_hyperparams",
    "native_torch_dtypes",
    "options_from",
    "rmsprop_catch_up",
    "rmsprop_step",
    "rmsprop_step_many",
]

HYPERPARAM_NAMES = (
    "lr",
    "alpha",
    "eps",
    "weight_decay",
    "momentum",
    "centered",
    "maximize",
    "eps_in_sqrt",
    "decoupled_weight_decay",
    "lr_in_momentum",
    "nesterov",
    "bias_correction",
    "rounding",
    "compensation",
    "seed",
)


@functools.cache
def native_torch_dtypes() -> tuple[Any, ...]:
    """The torch dtypes the native kernel takes (torch imported on first use: it is optional)."""
    import torch

    return (
        torch.float32,
        torch.float64,
        torch.complex64,
        torch.complex128,
        torch.bfloat16,
        torch.float16,
    )


def _tensor_as_array(tensor: Any, name: str, codes: bool = False) -> np.ndarray:
    import torch

    if type(tensor).__torch_dispatch__ is not torch.Tensor.__torch_dispatch__:
        raise TypeError(
            f"{name} is a {type(tensor).__name__}, a tensor subclass whose values are not one "
            "buffer; pass its local tensor (DTensor.to_local()), or use rmsprop_ext.RMSprop, "
            "which updates DTensor shards natively"
        )
    if tensor.layout != torch.strided:
        raise TypeError(f"{name} is a {tensor.layout} tensor; rmsprop_ext needs dense tensors")
    if tensor.device.type != "cpu":
        raise ValueError(
            f"{name} is on device '{tensor.device}'; the native kernel takes CPU tensors"
        )
    if codes and tensor.dtype in (torch.uint8, torch.int8):
        return tensor.detach().numpy()
    if tensor.dtype not in native_torch_dtypes():
        raise TypeError(
            f"{name} must have dtype float32, float64, complex64, complex128, bfloat16 or "
            f"float16, got {tensor.dtype}"
        )
    if tensor.is_conj() or tensor.is_neg():
        raise ValueError(f"{name} has a lazy conjugate/negative bit; call .resolve_conj() first")
    # Shares memory with the tensor: the update lands in the tensor itself. numpy has no
    # bfloat16, so bfloat16 travels as its bit patterns (uint16), which the kernel reads as such.
    if tensor.dtype == torch.bfloat16:
        return tensor.detach().view(torch.uint16).numpy()
    return tensor.detach().numpy()


def as_native_array(obj: Any, name: str) -> Any:
    """A numpy view of a torch CPU tensor (sharing its memory), an ndarray as is, None as None.

    Anything else raises TypeError naming `name`.
    """
    if obj is None or isinstance(obj, np.ndarray):
        return obj
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return _tensor_as_array(obj, name)
    raise TypeError(
        f"{name} must be a numpy.ndarray or a torch CPU tensor, got {type(obj).__name__}"
    )


def as_state_array(obj: Any, name: str) -> Any:
    """`as_native_array` for a state buffer, which may also be 8-bit: a (codes, exponents) pair
    (uint8 codes of the parameter's shape, int8 exponents, one per block of 32 elements)."""
    if isinstance(obj, tuple) and len(obj) == 2:
        return tuple(_code_array(part, f"{name}[{i}]") for i, part in enumerate(obj))
    return _code_array(obj, name)  # uint8 alone: the native checks say a pair is needed


def _code_array(obj: Any, name: str) -> Any:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return _tensor_as_array(obj, name, codes=True)
    return as_native_array(obj, name)


def _as_arrays(objs: Any, name: str, state: bool = False) -> list[Any]:
    if isinstance(objs, (np.ndarray, str, bytes)) or not isinstance(objs, Sequence):
        raise TypeError(f"{name} must be a list or tuple of arrays, got {type(objs).__name__}")
    convert = as_state_array if state else as_native_array
    return [convert(obj, f"{name}[{i}]") for i, obj in enumerate(objs)]


def _real(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None


def hyperparams(
    lr: Any,
    alpha: Any,
    eps: Any,
    weight_decay: Any,
    momentum: Any,
    centered: Any,
    maximize: Any,
    eps_in_sqrt: Any,
    decoupled_weight_decay: Any,
    lr_in_momentum: Any = False,
    nesterov: Any = False,
    bias_correction: Any = False,
    rounding: Any = "torch",
    compensation: Any = None,
    seed: Any = 0,
) -> dict[str, Any]:
    """The options of an update, converted and checked, with errors that name the argument (the
    native code checks again; this also covers the pure-torch path)."""
    options = {
        "lr": _real(lr, "lr"),  # float() also takes torch's one-element tensor lr
        "alpha": _real(alpha, "alpha"),
        "eps": _real(eps, "eps"),
        "weight_decay": _real(weight_decay, "weight_decay"),
        "momentum": _real(momentum, "momentum"),
        "centered": bool(centered),
        "maximize": bool(maximize),
        "eps_in_sqrt": bool(eps_in_sqrt),
        "decoupled_weight_decay": bool(decoupled_weight_decay),
        "lr_in_momentum": bool(lr_in_momentum),
        "nesterov": bool(nesterov),
        "bias_correction": bool(bias_correction),
        "rounding": rounding,
        "compensation": check_compensation(compensation),
        "seed": check_seed(seed),
    }
    for name in ("lr", "eps", "weight_decay", "momentum"):
        if not (math.isfinite(options[name]) and options[name] >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {options[name]}")
    if not 0.0 <= options["alpha"] <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {options['alpha']}")
    check_extension_options(
        options["momentum"],
        options["alpha"],
        options["nesterov"],
        options["bias_correction"],
        rounding,
    )
    return options


def check_extension_options(
    momentum: float, alpha: float, nesterov: bool, bias_correction: bool, rounding: Any
) -> None:
    """The options beyond torch's that only make sense together, and the rounding's name."""
    if nesterov and momentum <= 0:
        raise ValueError("Invalid nesterov: it needs momentum > 0")
    if bias_correction and alpha >= 1:
        raise ValueError(
            f"Invalid bias_correction: it needs alpha < 1 (it divides by 1 - alpha^t), got {alpha}"
        )
    check_rounding(rounding)


def native_hyperparams(options: dict[str, Any]) -> _core.Hyperparams:
    """The checked options of `hyperparams` as the native calls take them, with the rounding
    resolved (see `rmsprop_ext._rounding.resolve_rounding`)."""
    native = dict(options)
    native.update(resolve_rounding(native.pop("rounding")))
    native["compensation"] = native["compensation"] or "none"
    return _core.Hyperparams(**native)


def options_from(settings: Any) -> dict[str, Any]:
    """hyperparams() read from a mapping with those names (a param group, NumpyRMSprop.defaults)."""
    return hyperparams(*(settings[name] for name in HYPERPARAM_NAMES))


def _threads(num_threads: int | None) -> int:
    if num_threads is None:
        return 0
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
    return num_threads


def _stream(stream: Any, name: str) -> int:
    if (
        isinstance(stream, bool)
        or not isinstance(stream, (int, np.integer))
        or not (0 <= stream < 2**63)
    ):
        raise ValueError(f"{name} must be an int >= 0, got {stream!r}")
    return int(stream)


def _step_number(step: int | None) -> float:
    if step is None:
        return 0.0  # the native call asks for one when the bias correction needs it
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be an int >= 1 (1 for the first update), got {step!r}")
    return float(step)


def rmsprop_step(
    param: Buffer,
    grad: Buffer,
    square_avg: Buffer,
    *,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    momentum_buffer: Buffer | None = None,
    centered: bool = False,
    grad_avg: Buffer | None = None,
    maximize: bool = False,
    eps_in_sqrt: bool = False,
    decoupled_weight_decay: bool = False,
    lr_in_momentum: bool = False,
    nesterov: bool = False,
    bias_correction: bool = False,
    step: int | None = None,
    rounding: str = "torch",
    compensation: str | None = None,
    compensation_buffer: Buffer | None = None,
    seed: int = 0,
    stream: int = 0,
    num_threads: int | None = None,
    rows: Any = None,
    row_step: Buffer | None = None,
    idle_steps: IdleSteps | None = None,
) -> None:
    """One RMSProp step, in place, in a single fused pass over memory.

    ``param``, ``square_avg`` and, when used, ``momentum_buffer`` (momentum > 0) and ``grad_avg``
    (centered) are updated in place; ``grad`` is only read. All must be C-contiguous numpy arrays
    or torch CPU tensors of one shape that do not share memory. ``param`` and ``grad`` are
    float32, float64, complex64, complex128 (updated as pairs of reals, as torch does), bfloat16
    or float16; the state has the param's dtype, or float32 for bfloat16/float16 params, or
    bfloat16 for float32 params, or is 8-bit for float32/bfloat16/float16 params: each state
    buffer a ``(codes, exponents)`` pair (uint8 codes of the param's shape, int8 exponents, one
    per block of 32 elements; see ``rmsprop_ext._quantized``), rounded stochastically with the
    same generator (so ``step`` is required). 16-bit buffers are computed in float32 and rounded
    to nearest even when stored, unless ``compensation`` says otherwise: "kahan"
    (``compensation_buffer``, the param's dtype, starting at zero, carries what each rounding of
    the parameter lost) or "stochastic" (16-bit params rounded up or down at random, from a
    generator that depends only on ``seed``, ``stream``, ``step`` and the element index).
    ``step`` numbers this update (1 for the first) for ``bias_correction`` and the stochastic
    rounding. With ``rounding="torch"`` float32/float64 results are torch.optim.RMSprop's bit for
    bit in this process, and so are bfloat16/float16 ones with state of their dtype and no
    compensation (rounded to the dtype after every operation, as torch's 16-bit kernels do);
    "fused" and "separate" round every multiply-add once or twice, with IEEE square roots, and
    16-bit buffers once per stored value. Every argument is checked before anything is written:
    on error nothing changes.

    Row-sparse steps (embedding tables): with ``rows`` (int64 row numbers of ``param``, any
    order, repeats summed), ``grad`` holds one row of ``param`` per entry and only those rows are
    updated (``step`` required). Rows left out stay as they are (TF1's lazy semantics) unless
    ``row_step`` (int64, one per row of ``param``: the last step each row is up to date with,
    zeros to start) and ``idle_steps`` (a `rmsprop_ext.IdleSteps`, new at the start) are given:
    then each touched row is first brought through the steps it sat out, in closed form, so that
    it equals the dense step on a gradient with zero rows; this step's factors are added to
    ``idle_steps`` afterwards, and rows idle for half its length are swept up to date first.
    ``rmsprop_catch_up`` brings the other rows up to date where their values are read (with
    momentum or decoupled weight decay a row's parameter moves while it is idle). Coupled weight
    decay has no closed form for an idle row: ValueError with ``row_step``.
    """
    if rows is not None:
        _rows_step(**locals())
        return
    options = hyperparams(
        lr,
        alpha,
        eps,
        weight_decay,
        momentum,
        centered,
        maximize,
        eps_in_sqrt,
        decoupled_weight_decay,
        lr_in_momentum,
        nesterov,
        bias_correction,
        rounding,
        compensation,
        seed,
    )
    _core.rmsprop_step(
        as_native_array(param, "param"),
        as_native_array(grad, "grad"),
        as_state_array(square_avg, "square_avg"),
        as_state_array(momentum_buffer, "momentum_buffer"),
        as_state_array(grad_avg, "grad_avg"),
        as_native_array(compensation_buffer, "compensation_buffer"),
        hyperparams=native_hyperparams(options),
        num_threads=_threads(num_threads),
        step=_step_number(step),
        stream=_stream(stream, "stream"),
    )


def rmsprop_step_many(
    params: Sequence[Buffer],
    grads: Sequence[Buffer],
    square_avgs: Sequence[Buffer],
    *,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    momentum_buffers: Sequence[Buffer] | None = None,
    centered: bool = False,
    grad_avgs: Sequence[Buffer] | None = None,
    maximize: bool = False,
    eps_in_sqrt: bool = False,
    decoupled_weight_decay: bool = False,
    lr_in_momentum: bool = False,
    nesterov: bool = False,
    bias_correction: bool = False,
    step: int | None = None,
    rounding: str = "torch",
    compensation: str | None = None,
    compensation_buffers: Sequence[Buffer] | None = None,
    seed: int = 0,
    streams: Sequence[int] | None = None,
    num_threads: int | None = None,
) -> None:
    """`rmsprop_step` over lists of parameters in one native call with the GIL released.

    The threads share the work of all parameters together, so many small tensors cost about as
    much as one large one. Dtypes may be mixed across items. Every item is checked before any is
    written: a bad item anywhere in the lists leaves all of them unchanged. ``step`` numbers this
    update of every parameter, for ``bias_correction`` and the stochastic rounding, in which
    parameter i takes stream ``streams[i]`` (default: i).
    """
    options = hyperparams(
        lr,
        alpha,
        eps,
        weight_decay,
        momentum,
        centered,
        maximize,
        eps_in_sqrt,
        decoupled_weight_decay,
        lr_in_momentum,
        nesterov,
        bias_correction,
        rounding,
        compensation,
        seed,
    )
    _core.rmsprop_step_many(
        _as_arrays(params, "params"),
        _as_arrays(grads, "grads"),
        _as_arrays(square_avgs, "square_avgs", state=True),
        None
        if momentum_buffers is None
        else _as_arrays(momentum_buffers, "momentum_buffers", state=True),
        None if grad_avgs is None else _as_arrays(grad_avgs, "grad_avgs", state=True),
        None
        if compensation_buffers is None
        else _as_arrays(compensation_buffers, "compensation_buffers"),
        hyperparams=native_hyperparams(options),
        num_threads=_threads(num_threads),
        step=_step_number(step),
        streams=None if streams is None else [_stream(s, "streams[]") for s in streams],
    )


def _options_of(arguments: dict[str, Any]) -> dict[str, Any]:
    return hyperparams(*(arguments[name] for name in HYPERPARAM_NAMES))


def _row_numbers(rows: Any, name: str) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    array = np.asarray(rows)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be a one-dimensional array of row numbers (integers)")
    return np.ascontiguousarray(array, dtype=np.int64)


def _rows_step(**arguments: Any) -> None:
    """rmsprop_step with ``rows``: see its docstring."""
    options = _options_of(arguments)
    step = arguments["step"]
    if step is None:
        raise ValueError("a row-sparse step needs step (1 for the first update)")
    number = _step_number(step)
    row_step, idle_steps = arguments["row_step"], arguments["idle_steps"]
    exact = row_step is not None or idle_steps is not None
    if exact and (row_step is None or idle_steps is None):
        raise ValueError("row_step and idle_steps go together (both, for exact steps, or neither)")
    if exact and options["weight_decay"] and not options["decoupled_weight_decay"]:
        raise ValueError(
            f"row_step (exact steps) cannot take weight_decay={options['weight_decay']}: coupled "
            "weight decay gives idle rows a gradient, whose steps have no closed form; use "
            "decoupled_weight_decay=True, or no row_step (lazy)"
        )
    buffers: list[Any] = [
        [as_native_array(arguments["param"], "param")],
        [as_state_array(arguments["square_avg"], "square_avg")],
        None
        if arguments["momentum_buffer"] is None
        else [as_state_array(arguments["momentum_buffer"], "momentum_buffer")],
        None
        if arguments["grad_avg"] is None
        else [as_state_array(arguments["grad_avg"], "grad_avg")],
        None
        if arguments["compensation_buffer"] is None
        else [as_native_array(arguments["compensation_buffer"], "compensation_buffer")],
    ]
    native = native_hyperparams(options)
    step_kwargs: dict[str, Any] = {
        "indices": [_row_numbers(arguments["rows"], "rows")],
        "values": [as_native_array(arguments["grad"], "grad")],
        "row_steps": [as_native_array(row_step, "row_step")] if exact else None,
        "idle": [idle_steps.factors] if idle_steps is not None else None,
        "hyperparams": native,
        "num_threads": _threads(arguments["num_threads"]),
        "step": number,
        "streams": [_stream(arguments["stream"], "stream")],
    }
    if idle_steps is not None and IdleSteps.sweep_due(int(number) - 1, idle_steps.length):
        _core.rmsprop_sparse_step_many(*buffers, **step_kwargs, check_only=True)
        _core.rmsprop_catch_up_rows(
            *buffers,
            row_steps=step_kwargs["row_steps"],
            idle=step_kwargs["idle"],
            min_idle=idle_steps.length // 2,
            hyperparams=native,
            num_threads=step_kwargs["num_threads"],
            step=number - 1,
            streams=step_kwargs["streams"],
        )
    _core.rmsprop_sparse_step_many(*buffers, **step_kwargs)
    if idle_steps is not None:
        idle_steps.push(**options)


def rmsprop_catch_up(
    param: Buffer,
    square_avg: Buffer,
    *,
    row_step: Buffer,
    idle_steps: IdleSteps,
    step: int,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    momentum_buffer: Buffer | None = None,
    centered: bool = False,
    grad_avg: Buffer | None = None,
    maximize: bool = False,
    eps_in_sqrt: bool = False,
    decoupled_weight_decay: bool = False,
    lr_in_momentum: bool = False,
    nesterov: bool = False,
    bias_correction: bool = False,
    rounding: str = "torch",
    compensation: str | None = None,
    compensation_buffer: Buffer | None = None,
    seed: int = 0,
    stream: int = 0,
    num_threads: int | None = None,
    rows: Any = None,
) -> None:
    """Brings rows of a table stepped with `rmsprop_step(rows=..., row_step=...,
    idle_steps=...)` up to date with ``step`` (the number of steps that have run): those in
    ``rows`` (repeats allowed), or every row. The options are the steps' (their storage and
    rounding decide how the results are stored)."""
    arguments = dict(locals())
    options = _options_of(arguments)
    _core.rmsprop_catch_up_rows(
        [as_native_array(param, "param")],
        [as_state_array(square_avg, "square_avg")],
        None if momentum_buffer is None else [as_state_array(momentum_buffer, "momentum_buffer")],
        None if grad_avg is None else [as_state_array(grad_avg, "grad_avg")],
        None
        if compensation_buffer is None
        else [as_native_array(compensation_buffer, "compensation_buffer")],
        row_steps=[as_native_array(row_step, "row_step")],
        idle=[idle_steps.factors],
        indices=None if rows is None else [_row_numbers(rows, "rows")],
        hyperparams=native_hyperparams(options),
        num_threads=_threads(num_threads),
        step=float(step),
        streams=[_stream(stream, "stream")],
    )
