"""MKL's AVX2-class square roots on 16 lanes (the avx512 kernel) against 8 lanes (the avx2 kernel).

The avx512 kernel takes the estimate of each float32 lane on two 8-lane halves and the steps after
it on all 16 lanes at once, and sends vectors holding a lane MKL takes apart through the 8-lane
function. Both kernels must give the same bits for every input, on any CPU with both: this needs
neither MKL nor torch, so it also covers the forms MKL does not take on the CPU at hand (on an AMD
EPYC MKL takes only its SSE4.2 path, which test_mkl_paths.py compares with MKL itself).
"""

from __future__ import annotations

import numpy as np
import pytest
import rmsprop_ext
from conftest import AVAILABLE_ISAS
from rmsprop_ext import _core

pytestmark = pytest.mark.skipif(
    not {"avx2", "avx512"} <= set(AVAILABLE_ISAS), reason="needs the avx2 and avx512 kernels"
)

AVX2_CLASS = ["mkl_avx2", "mkl_sse42", "mkl_portable"]


def roots_on(isa: str, form: str, values: np.ndarray) -> np.ndarray:
    rmsprop_ext.set_isa(isa)
    return _core._mkl_sqrt(form, values)


def float32_samples() -> np.ndarray:
    """Every pattern of [1/4, 4) and of the top binade up to +inf, a stretch of subnormals, the
    patterns around MKL's limit for the lanes it takes apart, random patterns of any sign (NaNs
    included), and the special values; shuffled, so that special lanes share vectors with
    ordinary ones."""
    ranges = [(0x3E800000, 0x40800000), (0x7F000000, 0x7F800001), (0, 1 << 20)]
    ranges.append((0x7F7FE000, 0x7F800000))
    patterns = [np.arange(first, last, dtype=np.uint32) for first, last in ranges]
    rng = np.random.default_rng(21)
    patterns.append(rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32))
    values = np.concatenate([p.view(np.float32) for p in patterns])
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 1e-45], dtype=np.float32)
    values = np.concatenate([values, special])
    return values[rng.permutation(values.size)]


def float64_samples() -> np.ndarray:
    rng = np.random.default_rng(22)
    values = np.concatenate(
        [
            rng.integers(0, 1 << 64, 1 << 20, dtype=np.uint64).view(np.float64),
            np.abs(rng.standard_normal(1 << 18)) * 10.0 ** rng.integers(-300, 300, 1 << 18),
            np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 5e-324, 2.0**1022, 2.0**-1022]),
        ]
    )
    return values[rng.permutation(values.size)]


def bits(values: np.ndarray) -> np.ndarray:
    return values.view(np.uint32 if values.dtype == np.float32 else np.uint64)


# Each case sets the kernels itself (the autouse isa fixture restores the active one), so it runs
# once, not once per instruction set.
@pytest.mark.spread_over_isas
@pytest.mark.parametrize("form", AVX2_CLASS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_avx512_kernel_gives_the_avx2_kernels_bits(form: str, dtype: str) -> None:
    values = float32_samples() if dtype == "float32" else float64_samples()
    eight = roots_on("avx2", form, values)
    sixteen = roots_on("avx512", form, values)
    assert np.array_equal(bits(eight), bits(sixteen))
    # The comparison can fail: the forms differ from the IEEE root on these inputs.
    ordinary = np.isfinite(values) & (values > 0)
    assert np.any(bits(eight)[ordinary] != bits(np.sqrt(values[ordinary])))
