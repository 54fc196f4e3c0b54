"""The benchmark's "precision" section: every storage form of the native step against native float32
on the same machine in the same run, with the bytes each form must move per element, each form's
own roofline (its buffers moved, no arithmetic), and torch's bfloat16 step, eager and compiled.

Parameters and state are torch tensors (bfloat16 has no numpy dtype), allocated by torch on cache
lines; the gradient has the parameter's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .cases import compiled_step, inductor_available
from .config import ALPHA, LR

__all__ = [
    "BASELINE",
    "FORMS",
    "TORCH_BF16",
    "TORCH_PEERS",
    "PrecisionForm",
    "bytes_per_element",
    "memory_of_model",
    "precision_cases",
    "roofline_of",
]

# Bytes per element of each storage; 8-bit state adds one exponent byte per 32 elements.
SIZES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "8bit": 1.0 + 1.0 / 32}
SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "8bit": "8bit"}
# The variants of the section: plain, and momentum with centering (two more state buffers).
MOMENTUM_CENTERED = "momentum+centered"
VARIANT_OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    MOMENTUM_CENTERED: {"momentum": 0.9, "centered": True},
}


@dataclass(frozen=True)
class PrecisionForm:
    label: str
    param: str  # dtype of the parameter and its gradient
    state: str  # dtype of square_avg
    compensation: str | None = None
    # "torch" (the default: 16-bit state of the param's dtype rounded after every operation, as
    # torch does) or "fused" (each stored value rounded once)
    rounding: str = "torch"
    variant: str = "plain"

    @property
    def bytes_per_element(self) -> float:
        return bytes_per_element(self.param, self.state, self.compensation, self.variant)

    @property
    def roofline(self) -> str:
        """The label of the roofline case that moves this form's bytes."""
        kahan = " Kahan" if self.compensation == "kahan" else ""
        variant = f" {self.variant}" if self.variant != "plain" else ""
        return f"roofline {SHORT[self.param]}/{SHORT[self.state]}{kahan}{variant}"


def bytes_per_element(
    param: str, state: str, compensation: str | None, variant: str = "plain"
) -> float:
    """Bytes one step moves per element: param read and written, grad read, square_avg read and
    written, Kahan summation's buffer (the param's dtype) read and written, and with momentum and
    centering their two state buffers read and written."""
    p, s = SIZES[param], SIZES[state]
    kahan = 2 * p if compensation == "kahan" else 0
    extra_state = 4 * s if variant == MOMENTUM_CENTERED else 0
    return 3 * p + 2 * s + kahan + extra_state


def memory_of_model(parameters: int, param: str, state: str, compensation: str | None) -> int:
    """Bytes of a model's parameters, gradients and (plain RMSProp) state."""
    p, s = SIZES[param], SIZES[state]
    return round(parameters * (2 * p + s + (p if compensation == "kahan" else 0)))


# Labels: "native <param dtype>/<state dtype> [compensation] [rounded once]".
BASELINE = "native fp32/fp32"
FORMS = [
    PrecisionForm(BASELINE, "float32", "float32"),
    PrecisionForm("native bf16/bf16", "bfloat16", "bfloat16"),
    PrecisionForm("native bf16/bf16 rounded once", "bfloat16", "bfloat16", rounding="fused"),
    PrecisionForm("native bf16/bf16 Kahan", "bfloat16", "bfloat16", "kahan"),
    PrecisionForm("native bf16/bf16 SR", "bfloat16", "bfloat16", "stochastic"),
    PrecisionForm("native bf16/fp32", "bfloat16", "float32"),
    PrecisionForm("native fp16/fp16", "float16", "float16"),
    PrecisionForm("native fp16/fp16 SR", "float16", "float16", "stochastic"),
    PrecisionForm("native fp32/bf16", "float32", "bfloat16"),
    PrecisionForm("native bf16/8bit SR", "bfloat16", "8bit", "stochastic"),
    PrecisionForm("native bf16/8bit", "bfloat16", "8bit"),
    PrecisionForm("native fp32/8bit", "float32", "8bit"),
    PrecisionForm(
        f"native bf16/bf16 {MOMENTUM_CENTERED}", "bfloat16", "bfloat16", variant=MOMENTUM_CENTERED
    ),
]
TORCH_BF16 = "torch RMSprop bf16"
# torch's bfloat16 steps, each with the native form it is compared with: (label, variant,
# compiled, native label).
TORCH_PEERS = [
    (TORCH_BF16, "plain", False, "native bf16/bf16"),
    (f"{TORCH_BF16} compiled", "plain", True, "native bf16/bf16"),
    (f"{TORCH_BF16} {MOMENTUM_CENTERED}", MOMENTUM_CENTERED, False, FORMS[-1].label),
    (f"{TORCH_BF16} compiled {MOMENTUM_CENTERED}", MOMENTUM_CENTERED, True, FORMS[-1].label),
]


_FORMS_BY_LABEL = {form.label: form for form in FORMS}


def roofline_of(label: str) -> str | None:
    """The roofline case of the native form `label`, or None for other rows."""
    form = _FORMS_BY_LABEL.get(label)
    return form.roofline if form else None


def _buffers(n: int, form: PrecisionForm) -> dict[str, Any]:
    import torch

    from ..quantized_state import quantize

    gen = torch.Generator().manual_seed(0)
    param_dtype = getattr(torch, form.param)
    square_avg = torch.rand(n, generator=gen)
    buffers = {
        "param": torch.randn(n, generator=gen).to(param_dtype),
        "grad": torch.randn(n, generator=gen).to(param_dtype),
        "square_avg": quantize(square_avg, "square_avg")
        if form.state == "8bit"
        else square_avg.to(getattr(torch, form.state)),
        "compensation_buffer": (
            torch.zeros(n, dtype=param_dtype) if form.compensation == "kahan" else None
        ),
    }
    if form.variant == MOMENTUM_CENTERED:
        state_dtype = getattr(torch, form.state)
        buffers["momentum_buffer"] = torch.zeros(n, dtype=state_dtype)
        buffers["grad_avg"] = torch.zeros(n, dtype=state_dtype)
    return buffers


def precision_step(n: int, form: PrecisionForm, threads: int) -> Callable[[], None]:
    """One native rmsprop_step of `form` on n elements (the stochastic rounding's step number
    advances with every call, as in training)."""
    from ..functional import rmsprop_step

    buffers = _buffers(n, form)
    counter = [0]

    def step() -> None:
        counter[0] += 1
        rmsprop_step(
            **buffers,
            lr=LR,
            alpha=ALPHA,
            compensation=form.compensation,
            rounding=form.rounding,
            step=counter[0],
            num_threads=threads,
            **VARIANT_OPTIONS[form.variant],
        )

    return step


def precision_roofline(n: int, form: PrecisionForm, threads: int) -> Callable[[], None]:
    """The memory roofline of `form`: its buffers read and written, no RMSProp arithmetic."""
    from .. import _core
    from ..functional import as_state_array

    b = {k: as_state_array(v, k) for k, v in _buffers(n, form).items()}
    kahan = [b["compensation_buffer"]] if form.compensation == "kahan" else None
    centered = form.variant == MOMENTUM_CENTERED
    momentum = [b["momentum_buffer"]] if centered else None
    grad_avg = [b["grad_avg"]] if centered else None
    return lambda: _core.roofline_step_many(
        [b["param"]],
        [b["grad"]],
        [b["square_avg"]],
        momentum,
        grad_avg,
        kahan,
        momentum=0.9 if centered else 0.0,
        centered=centered,
        num_threads=threads,
    )


def torch_low_precision(
    n: int, dtype: str, foreach: bool, variant: str = "plain", compiled: bool = False
) -> Callable[[], Any]:
    """torch.optim.RMSprop on one parameter of `dtype` (its state in that dtype too); compiled:
    torch.compile(opt.step) (bench.compiled_step)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(n, generator=gen).to(getattr(torch, dtype)))
    p.grad = torch.randn(n, generator=gen).to(p.dtype)
    opt = torch.optim.RMSprop([p], lr=LR, alpha=ALPHA, foreach=foreach, **VARIANT_OPTIONS[variant])
    if not compiled:
        return opt.step
    return compiled_step(opt.step)


def bitsandbytes_rmsprop8bit(n: int) -> Callable[[], Any] | None:
    """bitsandbytes' RMSprop8bit on one bfloat16 parameter on the CPU, or None without it."""
    try:
        import bitsandbytes as bnb  # type: ignore[import-not-found]
        import torch
    except ImportError:
        return None
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(n, generator=gen).to(torch.bfloat16))
    p.grad = torch.randn(n, generator=gen).to(p.dtype)
    return bnb.optim.RMSprop8bit([p], lr=LR, alpha=ALPHA).step  # type: ignore[no-any-return]


def _form(label: str) -> PrecisionForm:
    return _FORMS_BY_LABEL[label]


def precision_cases(n: int, threads: int, case: Callable[..., Any]) -> list[Any]:
    """The section's cases at n elements, built with `case(label, make, note=..., bytes=...)`."""
    from functools import partial

    cases = [
        case(
            form.label,
            partial(precision_step, n, form, threads),
            note=f"{form.bytes_per_element:g} B/element",
            bytes_per_element=form.bytes_per_element,
        )
        for form in FORMS
    ]
    layouts: dict[str, PrecisionForm] = {}
    for form in FORMS:
        layouts.setdefault(form.roofline, form)
    for label, form in layouts.items():
        cases.append(
            case(
                label,
                partial(precision_roofline, n, form, threads),
                note="the same bytes, no arithmetic",
                bytes_per_element=form.bytes_per_element,
            )
        )
    for label, variant, compiled, native in TORCH_PEERS:
        if compiled and not inductor_available():
            continue
        cases.append(
            case(
                label,
                partial(torch_low_precision, n, "bfloat16", False, variant, compiled),
                note="for-loop, bf16 state" if not compiled else "torch.compile(opt.step)",
                bytes_per_element=_form(native).bytes_per_element,
            )
        )
    if bitsandbytes_rmsprop8bit(1024) is not None:
        cases.append(
            case(
                "bnb RMSprop8bit bf16",
                partial(bitsandbytes_rmsprop8bit, n),
                note="bitsandbytes, 8-bit state",
                bytes_per_element=8,
            )
        )
    return cases
