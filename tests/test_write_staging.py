"""The staged float32/float64 update (its written buffers copied through a block on the stack,
chosen where a written buffer starts just above a read one) gives the direct loop's bits. Only the
avx2 kernel has the staged loop; on the others "always" leaves their loop as it is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from helpers import (
    OPTION_SETS,
    assert_layout_gives_separate_buffers_bits,
    assert_loop_modes_agree,
    step_buffers,
    views_at_offsets,
)
from rmsprop_ext import _core


@pytest.fixture(autouse=True)
def automatic_staging() -> Iterator[None]:
    yield
    _core._set_write_staging("auto")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTION_SETS)
@pytest.mark.parametrize("rounding", ["torch", "fused"])
def test_staged_update_gives_the_direct_loops_bits(
    dtype: type, options: dict[str, Any], rounding: str
) -> None:
    assert_loop_modes_agree(_core._set_write_staging, dtype, options, rounding)


def shadowed_layout(n: int, dtype: type, options: dict[str, Any]) -> dict[str, np.ndarray]:
    """The buffers of `step_buffers` as slices of one array, each starting 16 bytes past the one
    before modulo 4 KiB (numpy's heap puts equal-sized arrays so), so that written buffers start
    just above read ones."""
    template = step_buffers(n, dtype, options, seed=7)
    stride = n * np.dtype(dtype).itemsize + 4096 + 16
    offsets = {name: k * stride for k, name in enumerate(template)}
    return views_at_offsets(template, offsets, align=4096)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [{}, {"momentum": 0.9, "centered": True}])
def test_buffers_just_above_each_other_give_the_separate_buffers_bits(
    dtype: type, options: dict[str, Any]
) -> None:
    assert_layout_gives_separate_buffers_bits(shadowed_layout(70_001, dtype, options), options)


def test_unknown_staging_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="'auto', 'always' or 'never'"):
        _core._set_write_staging("sometimes")
