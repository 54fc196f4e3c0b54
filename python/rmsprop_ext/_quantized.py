"""The 8-bit block state format ("8bit"), in numpy: the kernel's encoding and decoding bit for bit
(cpp/core/quantized.h), for the float64 reference, for converting state to and from other
dtypes, and for `dequantize_state_dict`.

A buffer of n elements is n uint8 codes plus one int8 exponent E per block of BLOCK consecutive
elements (flattened, C order). A code is a tiny float times 2^E:
- square_avg (never negative): 4 exponent bits e and 4 mantissa bits m; 2^(e-15) * (1 + m/16)
  for e >= 1, 2^-14 * m/16 for e = 0;
- momentum_buffer and grad_avg: a sign bit, 4 exponent bits, 3 mantissa bits; 2^(e-15) * (1 + m/8)
  for e >= 1, 2^-14 * m/8 for e = 0.
E is the smallest exponent with max |value| < 2^E in the block (clamped to [-126, 126]); -128
marks a block that held a NaN or an infinity (it reads back as NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BLOCK", "NON_FINITE", "decode", "encode", "exponent_count", "is_signed"]

BLOCK = 32
NON_FINITE = -128
_MIN_EXPONENT, _MAX_EXPONENT = -126, 126
# The state buffers with signed codes; square_avg's are unsigned.
_SIGNED = ("momentum_buffer", "grad_avg")


def is_signed(name: str) -> bool:
    """Whether the state buffer `name` has signed codes."""
    return name in _SIGNED


def exponent_count(size: int) -> int:
    """Exponent bytes of a buffer of `size` elements."""
    return -(-size // BLOCK)


def _layout(signed: bool) -> tuple[int, int, int, int]:
    """Exponent bias, largest magnitude code, sign bit, mantissa bits."""
    return (15, 127, 0x80, 3) if signed else (15, 255, 0, 4)


def _float_of(bits: np.ndarray) -> np.ndarray:
    return np.asarray(bits, np.uint32).view(np.float32)


def _power_of_two(exponent: np.ndarray) -> np.ndarray:
    return _float_of((exponent.astype(np.int64) + 127).astype(np.uint32) << np.uint32(23))


def _blocks(flat: np.ndarray, fill: Any) -> np.ndarray:
    """The flat buffer padded to whole blocks, as (blocks, BLOCK)."""
    padded = np.full(exponent_count(flat.size) * BLOCK, fill, flat.dtype)
    padded[: flat.size] = flat
    return padded.reshape(-1, BLOCK)


def encode(
    values: Any, signed: bool, random: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Codes (uint8, the shape of `values`) and exponents (int8, one per block) of float32
    values: rounded to nearest even, or stochastically with the kernel's 32 random bits per
    element (`random`, uint32, flat)."""
    array = np.asarray(values, np.float32)
    flat = np.ascontiguousarray(array).reshape(-1)
    bias, largest_code, sign_bit, mantissa = _layout(signed)
    dropped = 23 - mantissa
    bits = flat.view(np.uint32)
    magnitude_bits = bits & np.uint32(0x7FFFFFFF)
    largest = _blocks(magnitude_bits, 0).max(axis=1) if flat.size else np.zeros(0, np.uint32)
    non_finite = largest >= np.uint32(0x7F800000)
    field = (largest >> np.uint32(23)).astype(np.int64)
    exponents = np.clip(field - 126, _MIN_EXPONENT, _MAX_EXPONENT)
    per_element = np.repeat(exponents, BLOCK)[: flat.size]
    magnitude = _float_of(magnitude_bits) * _power_of_two(-per_element)
    smallest_normal = np.float32(2.0 ** (1 - bias))
    with np.errstate(invalid="ignore", over="ignore"):
        fixed_small = (magnitude * np.float32(2.0 ** (bias + 22))).astype(np.int64)
    fixed_normal = magnitude.view(np.uint32).astype(np.int64) - ((127 - bias) << 23)
    fixed = np.where(magnitude < smallest_normal, fixed_small, fixed_normal)
    if random is None:
        increment = (1 << (dropped - 1)) - 1 + ((fixed >> dropped) & 1)
    else:
        random_bits = np.asarray(random, np.uint32)[: flat.size]
        increment = (random_bits >> np.uint32(32 - dropped)).astype(np.int64)
    codes = np.minimum((fixed + increment) >> dropped, largest_code)
    codes |= (bits >> np.uint32(24)).astype(np.int64) & sign_bit
    codes = np.where(np.repeat(non_finite, BLOCK)[: flat.size], 0, codes)
    exponents = np.where(non_finite, NON_FINITE, exponents)
    return codes.astype(np.uint8).reshape(array.shape), exponents.astype(np.int8)


def decode(codes: Any, exponents: Any, signed: bool) -> np.ndarray:
    """float32 values (the shape of `codes`) of codes and their blocks' exponents."""
    code_array = np.asarray(codes, np.uint8)
    flat = code_array.reshape(-1).astype(np.uint32)
    exponent_array = np.asarray(exponents, np.int8).astype(np.int64)
    if exponent_array.shape != (exponent_count(flat.size),):
        raise ValueError(
            f"{flat.size} codes need {exponent_count(flat.size)} exponents, got shape "
            f"{exponent_array.shape}"
        )
    bias, largest_code, sign_bit, mantissa = _layout(signed)
    magnitude = flat & np.uint32(largest_code)
    exponent_bits = magnitude >> np.uint32(mantissa)
    normal = _float_of(
        ((exponent_bits + np.uint32(127 - bias)) << np.uint32(23))
        | ((magnitude & np.uint32((1 << mantissa) - 1)) << np.uint32(23 - mantissa))
    )
    small = magnitude.astype(np.float32) * np.float32(2.0 ** (1 - bias - mantissa))
    value = np.where(exponent_bits == 0, small, normal)
    per_element = np.repeat(exponent_array, BLOCK)[: flat.size]
    finite = per_element != NON_FINITE
    value = value * _power_of_two(np.where(finite, per_element, 0))
    value = _float_of(value.view(np.uint32) | ((flat & np.uint32(sign_bit)) << np.uint32(24)))
    value = np.where(finite, value, np.float32(np.nan)).astype(np.float32)
    return value.reshape(code_array.shape)
