"""The update in two passes per block, the state's buffers then the parameter's (the default on
AMD's Zen cores, whose L1 data cache evicts the parameter's line and the state's for each other
where their addresses share a hash: two_pass_blocks in cpp/core/kernel.cpp), gives the one-pass
loop's bits; and the CPU test that picks it says what /proc/cpuinfo says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import rmsprop_ext
from helpers import (
    OPTION_SETS,
    as_bits,
    assert_layout_gives_separate_buffers_bits,
    assert_loop_modes_agree,
    cpu_vendor,
    step_buffers,
    views_at_offsets,
)
from rmsprop_ext import _core

# Byte offsets from the parameter, within one allocation, where a one-pass loop is slowest on a
# Zen core. The parameter sits where bits 12-27 of its address are clear, so each offset flips
# exactly its own bits: square_avg differs in bits 13 and 26, which Zen's utag XORs together, so
# its first line shares its set and utag with the parameter's; the momentum buffer is in
# square_avg's sets and utags (bits 14 and 25 more), grad_avg in the parameter's (bits 12 and 27);
# the gradient is in other sets.
COLLIDING_OFFSETS = {
    "param": 0,
    "grad": (1 << 28) + 3 * 64,
    "square_avg": (1 << 26) + (1 << 13),
    "momentum_buffer": (1 << 26) + (1 << 25) + (1 << 14) + (1 << 13),
    "grad_avg": (1 << 27) + (1 << 12),
}


@pytest.fixture(autouse=True)
def automatic_split() -> Iterator[None]:
    yield
    _core._set_split_writes("auto")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTION_SETS)
@pytest.mark.parametrize("rounding", ["torch", "fused"])
def test_two_pass_blocks_give_the_one_pass_loops_bits(
    dtype: type, options: dict[str, Any], rounding: str
) -> None:
    assert_loop_modes_agree(_core._set_split_writes, dtype, options, rounding)


@pytest.mark.parametrize("param_dtype", ["bfloat16", "float16"])
def test_two_pass_blocks_of_16_bit_parameters_with_float32_state_give_the_one_pass_bits(
    param_dtype: str,
) -> None:
    torch = pytest.importorskip("torch")
    results = {}
    for mode in ("never", "always"):
        _core._set_split_writes(mode)
        generator = torch.Generator().manual_seed(3)
        n = 70_001
        param = torch.randn(n, generator=generator).to(getattr(torch, param_dtype))
        grad = torch.randn(n, generator=generator).to(param.dtype)
        state = [torch.rand(n, generator=generator) for _ in range(3)]
        for step in range(1, 4):
            rmsprop_ext.rmsprop_step(
                param,
                grad,
                state[0],
                lr=1e-2,
                momentum=0.9,
                momentum_buffer=state[1],
                centered=True,
                grad_avg=state[2],
                step=step,
            )
        results[mode] = [t.view(torch.uint8).numpy().tobytes() for t in [param, *state]]
    assert results["always"] == results["never"]


def colliding_layout(n: int, dtype: type, options: dict[str, Any]) -> dict[str, np.ndarray]:
    """step_buffers' values in views of one array at COLLIDING_OFFSETS."""
    template = step_buffers(n, dtype, options, seed=11)
    return views_at_offsets(template, COLLIDING_OFFSETS, align=1 << 28)


@pytest.mark.parametrize("mode", ["never", "always"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": 0.9}, {"centered": True}, {"momentum": 0.9, "centered": True}],
)
def test_colliding_buffers_give_the_separate_buffers_bits(
    dtype: type, options: dict[str, Any], mode: str, isa: str
) -> None:
    """In two passes, square_avg and grad_avg (written in the first) and the parameter and the
    momentum buffer (in the second) share their sets and utags on some pages of this layout:
    there the block updates a copy of grad_avg or the momentum buffer on the stack
    (with_written_pairs_apart in kernel.cpp; on any CPU in "always"), which must give the same
    bits."""
    _core._set_split_writes(mode)
    assert_layout_gives_separate_buffers_bits(colliding_layout(70_001, dtype, options), options)


@pytest.mark.parametrize("variant", ["plain", "both"])
@pytest.mark.parametrize("mode", ["never", "always", "auto"])
def test_roofline_kernel_in_either_loop_leaves_every_buffer_unchanged(
    variant: str, mode: str
) -> None:
    options = {"momentum": 0.9, "centered": True} if variant == "both" else {}
    bufs = colliding_layout(70_001, np.float32, options)
    before = as_bits(bufs)
    _core._set_split_writes(mode)
    _core.roofline_step_many(
        [bufs["param"]],
        [bufs["grad"]],
        [bufs["square_avg"]],
        [bufs["momentum_buffer"]] if "momentum_buffer" in bufs else None,
        [bufs["grad_avg"]] if "grad_avg" in bufs else None,
        momentum=options.get("momentum", 0.0),
        centered=bool(options.get("centered")),
        num_threads=2,
    )
    assert as_bits(bufs) == before


def cpu_family() -> int:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu family"):
                return int(line.split(":", 1)[1])
    return -1


def test_zen_cores_and_only_they_are_told_apart() -> None:
    # Zen to Zen 4 (families 17h-19h) hash as zen_l1.h models; Zen 5 (1Ah) lost nothing there
    # and runs the one-pass loops.
    zen = cpu_vendor() in ("AuthenticAMD", "HygonGenuine") and 0x17 <= cpu_family() <= 0x19
    assert _core._cpu_has_zen_l1_utags() == zen
    assert rmsprop_ext.build_info()["two_pass_loops"] == zen


def test_unknown_split_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="'auto', 'always' or 'never'"):
        _core._set_split_writes("sometimes")
