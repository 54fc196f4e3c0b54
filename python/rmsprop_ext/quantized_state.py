"""8-bit block state for torch tensors: new state, conversion to and from other dtypes, and
`dequantize_state_dict`, which turns a state dict with 8-bit state into one that
torch.optim.RMSprop (or any optimizer with float state) loads.

A state buffer in 8-bit form is two tensors in the optimizer's state: ``name`` (uint8 codes, the
parameter's shape) and ``name + "_exponents"`` (int8, one per block of 32 elements); the format
is described in ``rmsprop_ext._quantized``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from . import _quantized
from ._precision import random_bits

__all__ = ["EXPONENTS_SUFFIX", "dequantize_state_dict"]

EXPONENTS_SUFFIX = "_exponents"
# The optimizer's state buffers, in the order the kernel writes them (the optimizer uses this too).
STATE_BUFFERS = ("square_avg", "momentum_buffer", "grad_avg")


def zeros(param: Tensor) -> tuple[Tensor, Tensor]:
    """Codes and exponents of an all-zero state buffer for `param`."""
    codes = torch.zeros_like(param, dtype=torch.uint8, memory_format=torch.contiguous_format)
    exponents = torch.full(
        (_quantized.exponent_count(param.numel()),), -126, dtype=torch.int8, device=param.device
    )
    return codes, exponents


def quantize(values: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """The 8-bit form of the state buffer `name` holding `values`, rounded to nearest."""
    array = values.detach().to(torch.float32).cpu().numpy()
    codes, exponents = _quantized.encode(array, _quantized.is_signed(name))
    device = values.device
    return torch.from_numpy(codes).to(device), torch.from_numpy(exponents).to(device)


def dequantize(codes: Tensor, exponents: Tensor, name: str) -> Tensor:
    """The float32 values of the state buffer `name` in 8-bit form."""
    values = _quantized.decode(
        codes.detach().cpu().numpy(), exponents.detach().cpu().numpy(), _quantized.is_signed(name)
    )
    return torch.from_numpy(values).to(codes.device)


def store(
    values: Tensor,
    codes: Tensor,
    exponents: Tensor,
    name: str,
    seed: int,
    stream: int,
    step: int,
) -> None:
    """Writes `values` into the 8-bit buffer in place, rounded stochastically as the kernel
    rounds it at update `step` (the plain-torch path's store)."""
    flat = values.detach().to(torch.float32).cpu().numpy().reshape(-1)
    random = random_bits(seed, stream, step, flat.size, use=name)
    new_codes, new_exponents = _quantized.encode(flat, _quantized.is_signed(name), random)
    codes.copy_(torch.from_numpy(new_codes).reshape(codes.shape))
    exponents.copy_(torch.from_numpy(new_exponents))


def is_quantized(entry: dict[str, Any], name: str) -> bool:
    """Whether the state entry holds buffer `name` in 8-bit form."""
    return isinstance(entry.get(name), Tensor) and name + EXPONENTS_SUFFIX in entry


def check_entry(entry: dict[str, Any], name: str, shape: torch.Size, where: str) -> None:
    """ValueError/TypeError naming the entry when its 8-bit buffer `name` cannot fit a parameter
    of `shape`."""
    codes, exponents = entry[name], entry[name + EXPONENTS_SUFFIX]
    if codes.dtype != torch.uint8 or codes.shape != shape:
        raise ValueError(
            f"{where}['{name}'] must be uint8 codes of shape {tuple(shape)}, got {codes.dtype} "
            f"{tuple(codes.shape)}"
        )
    blocks = _quantized.exponent_count(codes.numel())
    if (
        not isinstance(exponents, Tensor)
        or exponents.dtype != torch.int8
        or exponents.shape != (blocks,)
    ):
        raise ValueError(
            f"{where}['{name}{EXPONENTS_SUFFIX}'] must be an int8 tensor of shape ({blocks},)"
        )


def dequantize_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A copy of an optimizer state dict with every 8-bit state buffer turned into float32 (its
    exponents removed) and the groups' ``state_dtype`` reset to None, so that it loads into
    torch.optim.RMSprop (which then casts the state to each parameter's dtype) or into an
    rmsprop_ext.RMSprop with float state. Other entries are kept as they are."""
    if not isinstance(state_dict, dict) or "state" not in state_dict:
        raise ValueError("state_dict must be an optimizer state dict (with 'state')")
    out = copy.copy(state_dict)
    out["state"] = {}
    for key, entry in state_dict["state"].items():
        entry = dict(entry)
        for name in STATE_BUFFERS:
            if is_quantized(entry, name):
                exponents = entry.pop(name + EXPONENTS_SUFFIX)
                entry[name] = dequantize(entry[name], exponents, name)
        out["state"][key] = entry
    if "param_groups" in state_dict:
        out["param_groups"] = [
            {**group, "state_dtype": None} if group.get("state_dtype") == "8bit" else dict(group)
            for group in state_dict["param_groups"]
        ]
    return out
