"""The same update in plain torch ops, for parameters the native kernel cannot take.

Used for CUDA (or other device) tensors, float16/bfloat16 and non-contiguous parameters, so every
parameter trains with the same math; the native kernel handles the contiguous float32/float64 CPU
ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

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
) -> None:
    """One step on one parameter, in place, mirroring torch.optim.RMSprop's single-tensor path."""
    grad = -grad if maximize else grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)

    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    if centered:
        assert grad_avg is not None
        grad_avg.mul_(alpha).add_(grad, alpha=1 - alpha)
        # Clamped at 0 like the native kernel (NaN passes through): rounding can leave s - a^2
        # a hair below zero.
        variance = square_avg.addcmul(grad_avg, grad_avg, value=-1)
        variance = torch.where(variance < 0, 0.0, variance)
    else:
        variance = square_avg
    denom = variance.add(eps).sqrt_() if eps_in_sqrt else variance.sqrt().add_(eps)

    if momentum > 0:
        assert momentum_buffer is not None
        momentum_buffer.mul_(momentum).addcdiv_(grad, denom)
        param.add_(momentum_buffer, alpha=-lr)
    else:
        param.addcdiv_(grad, denom, value=-lr)


def native_ok(param: Tensor) -> bool:
    """True when the native kernel can update `param` (and state created like it) in place."""
    return (
        param.device.type == "cpu"
        and param.dtype in (torch.float32, torch.float64)
        and param.layout == torch.strided
        and param.is_contiguous()
        and not param.is_conj()
        and not param.is_neg()
    )
