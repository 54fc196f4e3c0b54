"""The same update in plain torch ops, for parameters the native kernel cannot take.

Used for CUDA (or other device) tensors and non-contiguous parameters, so every parameter trains
with the same math; the native kernel handles the contiguous CPU ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._precision import round_stochastic_torch
from .functional import native_torch_dtypes

__all__ = ["rmsprop_torch_step"]


def rmsprop_torch_step(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    momentum_buffer: Tensor | None,
    grad_avg: Tensor | None,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    eps_in_sqrt: bool,
    decoupled_weight_decay: bool,
    lr_in_momentum: bool = False,
    nesterov: bool = False,
    bias_correction: bool = False,
    rounding: str = "torch",
    step: int = 1,
    compensation: str | None = None,
    seed: int = 0,
    compensation_buffer: Tensor | None = None,
    stream: int = 0,
) -> None:
    """One step on one parameter, in place: torch.optim.RMSprop's single-tensor path, op for op,
    plus the options torch lacks. `step` numbers the update for the bias correction and the
    stochastic rounding; the rounding is whatever torch's own ops do (`rounding` is not
    consulted). The state may have another dtype than the parameter (torch's type promotion
    computes in the wider one). With a compensation the step runs on a float32 copy of the
    parameter, which is then stored with Kahan summation or the kernel's stochastic rounding.
    """
    del rounding
    if compensation is not None:
        start = param.detach().to(torch.float32)
        work = start.clone()
        rmsprop_torch_step(
            work,
            grad.to(torch.float32),
            square_avg,
            momentum_buffer,
            grad_avg,
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
            eps_in_sqrt=eps_in_sqrt,
            decoupled_weight_decay=decoupled_weight_decay,
            lr_in_momentum=lr_in_momentum,
            nesterov=nesterov,
            bias_correction=bias_correction,
            step=step,
        )
        if compensation == "kahan":
            assert compensation_buffer is not None
            change = (work - start) + compensation_buffer.to(torch.float32)
            stored = (start + change).to(param.dtype)
            compensation_buffer.copy_(change - (stored.to(torch.float32) - start))
            param.copy_(stored)
        else:
            param.copy_(round_stochastic_torch(work, param.dtype, seed, stream, step))
        return
    grad = -grad if maximize else grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)
    if torch.is_complex(param):
        param, grad, square_avg = (torch.view_as_real(t) for t in (param, grad, square_avg))
        if momentum_buffer is not None:
            momentum_buffer = torch.view_as_real(momentum_buffer)
        if grad_avg is not None:
            grad_avg = torch.view_as_real(grad_avg)

    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    variance = square_avg
    if bias_correction:
        correction = 1 - alpha**step
        variance = square_avg.div(correction)
    if centered:
        assert grad_avg is not None
        grad_avg.lerp_(grad, 1 - alpha)
        mean = grad_avg.div(correction) if bias_correction else grad_avg
        # Clamped at 0 like the native kernel (NaN passes through): rounding can leave s - a^2
        # a hair below zero.
        variance = variance.addcmul(mean, mean, value=-1)
        variance = torch.where(variance < 0, 0.0, variance)
    denom = variance.add(eps).sqrt_() if eps_in_sqrt else variance.sqrt().add_(eps)

    if momentum > 0:
        assert momentum_buffer is not None
        inside = lr if lr_in_momentum else 1.0
        outside = 1.0 if lr_in_momentum else lr
        momentum_buffer.mul_(momentum).addcdiv_(grad, denom, value=inside)
        direction = momentum_buffer
        if nesterov:
            direction = torch.addcdiv(momentum_buffer.mul(momentum), grad, denom, value=inside)
        param.add_(direction, alpha=-outside)
    else:
        param.addcdiv_(grad, denom, value=-lr)


def native_ok(param: Tensor) -> bool:
    """True when the native kernel can update `param` (and state created like it) in place."""
    return (
        has_plain_data(param)
        and param.device.type == "cpu"
        and param.dtype in native_torch_dtypes()
        and param.layout == torch.strided
        and param.is_contiguous()
        and not param.is_conj()
        and not param.is_neg()
    )


def has_plain_data(tensor: Tensor) -> bool:
    """False for tensor subclasses that dispatch their own ops (DTensor, and so FSDP2's sharded
    parameters, or other wrapper tensors): their values are not one buffer the kernel could
    update, but torch's ops on them work, so they take the torch path."""
    return type(tensor).__torch_dispatch__ is Tensor.__torch_dispatch__
