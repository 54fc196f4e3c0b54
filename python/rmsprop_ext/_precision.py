"""Low-precision storage: which state dtypes and compensations go with which parameters, the
rounding to bfloat16 and float16 of real numbers, and the stochastic rounding's generator.

The generator and the roundings here are the native kernel's, written in numpy (and, for the
torch path, in torch integer ops), so the float64 reference and the plain-torch fallback round
exactly as the kernel does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "COMPENSATIONS",
    "check_compensation",
    "check_seed",
    "random_bits",
    "round_nearest",
    "round_stochastic",
    "state_dtype_name",
]

COMPENSATIONS = (None, "kahan", "stochastic")

# Per parameter dtype, the state dtypes the kernel is built for (the first is the default).
_STATE_DTYPES = {
    "float32": ("float32", "bfloat16"),
    "float64": ("float64",),
    "complex64": ("complex64",),
    "complex128": ("complex128",),
    "bfloat16": ("bfloat16", "float32"),
    "float16": ("float16", "float32"),
}
SIXTEEN_BIT = ("bfloat16", "float16")
# The parameter dtypes that can have 8-bit block state (state_dtype="8bit", see _quantized).
EIGHT_BIT_PARAMS = ("float32", "bfloat16", "float16")


def dtype_name(dtype: Any) -> str:
    """'float32', 'bfloat16', ... for a torch dtype, a numpy dtype or such a name."""
    if isinstance(dtype, str):
        return dtype
    name = str(dtype)
    if name.startswith("torch."):
        return name.removeprefix("torch.")
    try:
        return np.dtype(dtype).name
    except TypeError:
        return name


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a dtype name; bfloat16 is ml_dtypes' (ImportError without it)."""
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise ImportError("bfloat16 numpy arrays need the ml_dtypes package") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def state_dtype_name(param_dtype: Any, state_dtype: Any, where: str = "state_dtype") -> str:
    """The state's dtype name for a parameter of `param_dtype`: `state_dtype`, or the parameter's
    own when it is None, or "8bit". ValueError naming `where` for one the kernel is not built
    for."""
    param = dtype_name(param_dtype)
    if state_dtype is None:
        return param
    if isinstance(state_dtype, str) and state_dtype == "8bit":
        if param not in EIGHT_BIT_PARAMS:
            raise ValueError(
                f"{where}='8bit' is for float32, bfloat16 and float16 parameters, not {param}"
            )
        return "8bit"
    name = dtype_name(state_dtype)
    allowed = _STATE_DTYPES.get(param)
    if allowed is None:
        raise TypeError(f"parameters of dtype {param} are not supported")
    if name not in allowed:
        eight_bit = ["'8bit'"] if param in EIGHT_BIT_PARAMS else []
        choices = ", ".join(["None", *allowed, *eight_bit])
        raise ValueError(
            f"{where}={state_dtype!r} is not supported for {param} parameters; choose one of "
            f"{choices}"
        )
    return name


def check_compensation(compensation: Any) -> str | None:
    """`compensation` checked: None, "kahan" or "stochastic"."""
    if compensation not in COMPENSATIONS:
        raise ValueError(
            f"compensation must be None, 'kahan' or 'stochastic', got {compensation!r}"
        )
    return compensation  # type: ignore[no-any-return]


def check_param_compensation(param_dtype: Any, compensation: str | None, where: str) -> None:
    """ValueError naming `where` when `compensation` cannot apply to a parameter of this dtype."""
    param = dtype_name(param_dtype)
    if compensation is not None and param not in SIXTEEN_BIT:
        raise ValueError(
            f"compensation={compensation!r} is for bfloat16 and float16 parameters; {where} has "
            f"dtype {param}"
        )


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    return int(seed)


# Storage formats: significand bits (with the implicit one), smallest normal exponent, largest
# finite value.
_FORMATS = {
    "bfloat16": (8, -126, float.fromhex("0x1.fep127")),
    "float16": (11, -14, 65504.0),
    "float32": (24, -126, float(np.finfo(np.float32).max)),
}


def round_nearest(values: Any, dtype: str) -> np.ndarray:
    """Real numbers (float64) rounded once, to nearest even, to `dtype`'s values, as float64.
    Overflow gives infinity; NaN stays NaN."""
    x = np.asarray(values, dtype=np.float64)
    if dtype == "float64":
        return x.copy()
    bits, min_exp, largest = _FORMATS[dtype]
    with np.errstate(invalid="ignore", over="ignore"):
        _, exponent = np.frexp(x)  # x = m * 2^exponent, 0.5 <= |m| < 1
        quantum = np.ldexp(1.0, np.maximum(exponent - 1, min_exp) - (bits - 1))
        rounded = np.round(x / quantum) * quantum  # np.round: ties to even
        # Past the largest finite value by half an ulp or more rounds to infinity.
        ulp_top = np.ldexp(1.0, int(np.frexp(largest)[1]) - 1 - (bits - 1))
        overflow = np.abs(x) >= largest + ulp_top / 2
        rounded = np.where(overflow, np.copysign(np.inf, x), rounded)
    return np.where(np.isfinite(x), rounded, x)


def _mix64(x: int) -> int:
    mask = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def random_key(seed: int, stream: int, step: int, index_high: int) -> int:
    """The generator's 32-bit key for elements index_high * 2^32 ... (storage.h)."""
    key = _mix64(_mix64(_mix64(_mix64(seed) ^ stream) ^ step) ^ index_high)
    return key & 0xFFFFFFFF


def _hash32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


# The generator's streams per element: the parameter's rounding, and one per 8-bit state buffer.
RANDOM_USES = {"param": 0, "square_avg": 1, "momentum_buffer": 2, "grad_avg": 3}


def random_bits(seed: int, stream: int, step: int, size: int, use: str = "param") -> np.ndarray:
    """The 32 random bits of elements 0..size-1 of a parameter at update `step` (uint32), for
    rounding the parameter or one of its 8-bit state buffers (`use`): one round of the hash of
    the index XOR the key, as storage.h's random_bits."""
    out = np.empty(size, np.uint32)
    for start in range(0, size, 2**32):
        key = random_key(seed, stream, step, (start >> 32) | (RANDOM_USES[use] << 56))
        low = np.arange(0, min(size - start, 2**32), dtype=np.uint32)
        out[start : start + low.size] = _hash32(low ^ np.uint32(key))
    return out


def round_stochastic(values: Any, random: np.ndarray, dtype: str) -> np.ndarray:
    """Real numbers (float64) rounded to bfloat16 or float16 stochastically with the kernel's 32
    random bits per element: away from zero when the random fraction (bfloat16: the top 16 bits
    over 2^16; float16: all 32 over 2^32) reaches at least one minus the distance to the lower
    neighbour in ulps. float16 rounds magnitudes from its largest value (65504) up to nearest, as
    the kernel does. As float64."""
    x = np.asarray(values, dtype=np.float64)
    digits, min_exponent, largest = _FORMATS[dtype]
    with np.errstate(invalid="ignore", over="ignore"):
        _, exponent = np.frexp(x)
        quantum = np.ldexp(1.0, np.maximum(exponent - 1, min_exponent) - (digits - 1))
        scaled = np.abs(x) / quantum
        low = np.floor(scaled)
        if dtype == "bfloat16":
            threshold = (random >> np.uint32(16)).astype(np.float64) / 2.0**16
        else:
            threshold = np.asarray(random, dtype=np.float64) / 2.0**32
        up = threshold + (scaled - low) >= 1.0
        result = np.copysign((low + up) * quantum, x)
        result = np.where(np.abs(result) > largest, np.copysign(np.inf, x), result)
        if dtype == "float16":
            result = np.where(np.abs(x) >= largest, round_nearest(x, "float16"), result)
    return np.where(np.isfinite(x), result, x)


def _hash32_torch(x: Any) -> Any:
    mask = 0xFFFFFFFF
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & mask
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & mask
    return x ^ (x >> 16)


def _float16_stochastic_patterns(bits: Any, random: Any) -> Any:
    """storage.h's to_float16_stochastic on int64 tensors of float32 patterns and random bits."""
    import torch

    magnitude = bits & 0x7FFFFFFF
    exponent = magnitude >> 23
    significand = (magnitude & 0x7FFFFF) | (exponent.clamp(max=1) << 23)
    shift = 126 - exponent.clamp(min=1)
    subnormal_kept = torch.where(shift < 32, significand >> shift.clamp(max=63), 0)
    subnormal_fraction = torch.where(
        shift <= 32,
        (significand << (32 - shift).clamp(min=0)) & 0xFFFFFFFF,
        significand >> (shift - 32).clamp(min=0, max=63),
    )
    normal = magnitude >= 0x38800000
    kept = torch.where(normal, (magnitude >> 13) - (112 << 10), subnormal_kept)
    fraction = torch.where(normal, (magnitude << 19) & 0xFFFFFFFF, subnormal_fraction)
    up = (random + fraction >= 2**32).to(torch.int64)
    return ((bits >> 16) & 0x8000) | (kept + up)


def round_stochastic_torch(values: Any, dtype: Any, seed: int, stream: int, step: int) -> Any:
    """A float32 tensor rounded to bfloat16 or float16 (`dtype`, a torch dtype) exactly as the
    kernel's stochastic rounding does (the same generator and integer steps in int64 torch ops,
    so it also runs on other devices)."""
    import torch

    flat = values.detach().reshape(-1).to(torch.float32)
    bits = flat.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    random = torch.empty_like(bits)
    for start in range(0, flat.numel(), 2**32):
        key = random_key(seed, stream, step, start >> 32)
        count = min(flat.numel() - start, 2**32)
        low = torch.arange(count, dtype=torch.int64, device=flat.device)
        random[start : start + count] = _hash32_torch(low ^ key)
    if dtype == torch.bfloat16:
        patterns = ((bits + (random >> 16)) >> 16) & 0xFFFF
        patterns = torch.where(torch.isnan(flat), 0x7FC0, patterns)
    else:
        nearest = flat.to(torch.float16).view(torch.int16).to(torch.int64) & 0xFFFF
        patterns = torch.where(
            (bits & 0x7FFFFFFF) >= 0x477FE000, nearest, _float16_stochastic_patterns(bits, random)
        )
    as_int16 = torch.where(patterns >= 0x8000, patterns - 0x10000, patterns).to(torch.int16)
    return as_int16.view(dtype).reshape(values.shape)
