"""The roofline kernel moves the update's bytes and leaves every buffer as it was, so the
benchmark can time it on the very buffers the real update uses."""

from __future__ import annotations

import numpy as np
import pytest
from rmsprop_ext import _core


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", ["plain", "momentum", "centered", "both"])
@pytest.mark.parametrize("n", [1, 17, 4099, 1 << 16])
def test_roofline_kernel_leaves_every_buffer_unchanged(dtype: type, variant: str, n: int) -> None:
    rng = np.random.default_rng(n)
    param, grad, square_avg, momentum_buffer, grad_avg = (
        rng.standard_normal(n).astype(dtype) for _ in range(5)
    )
    momentum = variant in ("momentum", "both")
    centered = variant in ("centered", "both")
    buffers = [param, grad, square_avg, momentum_buffer, grad_avg]
    before = [b.copy() for b in buffers]
    _core.roofline_step_many(
        [param],
        [grad],
        [square_avg],
        [momentum_buffer] if momentum else None,
        [grad_avg] if centered else None,
        momentum=0.9 if momentum else 0.0,
        centered=centered,
        num_threads=2,
    )
    for name, b, a in zip(("param", "grad", "square_avg", "momentum", "grad_avg"), before, buffers):
        assert np.array_equal(a, b), name
