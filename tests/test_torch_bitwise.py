"""rmsprop_ext.RMSprop gives torch.optim.RMSprop's results bit for bit (compared with torch.equal).

The configurations are torch's own optimizer test table for RMSprop; every test runs on each
instruction set (conftest), and the subprocess tests repeat the table under each of torch's CPU
capabilities, whose kernels round multiply-adds differently (FMA in AVX2/AVX-512, not in DEFAULT).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import rmsprop_ext
from conftest import HAS_TORCH
from helpers import torch_bits

pytestmark = [
    pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch"),
    pytest.mark.needs_torch,
]

STEPS = 200
# Vector bodies, scalar tails, a one-element and a 2-D parameter.
SHAPES = [(1031,), (17, 33), (5,), (1,), (3 * 1024 + 7,)]


# Rows beyond torch's table: maximize where the kernel leaves the gradient unsigned and carries
# the sign in the division's constant (momentum without centering or weight decay).
EXTRA_ROWS = [
    ("maximize, w/ momentum", {"maximize": True, "momentum": 0.9}),
    ("maximize, centered", {"maximize": True, "centered": True}),
]


def torch_table() -> list[tuple[str, dict[str, Any]]]:
    from torch.testing._internal.common_optimizers import optim_inputs_func_rmsprop

    return [(case.desc, case.kwargs) for case in optim_inputs_func_rmsprop("cpu")] + EXTRA_ROWS


def warm_up_torch_sqrt() -> None:
    """torch's first parallel sqrt in a process can differ on its worker threads (MKL starting up
    there: 1,557 of 3,093 elements in 2 of 6 fresh processes), which is torch's nondeterminism,
    not rmsprop_ext's; the comparisons start after it."""
    import torch

    for _ in range(2):
        torch.ones(1 << 16).sqrt()


def train(optimizer: Any, kwargs: dict[str, Any], dtype: Any, steps: int = STEPS) -> list[Any]:
    """`steps` steps on fixed random parameters and gradients whose scale changes by step."""
    import torch

    warm_up_torch_sqrt()
    generator = torch.Generator().manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(shape, generator=generator, dtype=dtype)) for shape in SHAPES
    ]
    opt = optimizer(params, **kwargs)
    for k in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator, dtype=dtype) * (1 + k % 3)
        opt.step()
    return [p.detach() for p in params]


def torch_rmsprop(foreach: bool) -> Callable[..., Any]:
    import torch

    return lambda params, **kwargs: torch.optim.RMSprop(params, foreach=foreach, **kwargs)


def torch_paths_disagree(kwargs: dict[str, Any], dtype: Any) -> bool:
    """torch's for-loop adds the weight decay to a complex gradient in complex arithmetic, which
    never fuses the multiply-add; its foreach path views the tensors as reals first and fuses it.
    The two torch paths then differ from each other, and rmsprop_ext follows the for-loop (the
    default on CPU)."""
    from rmsprop_ext._rounding import torch_fuses_multiply_add

    return dtype.is_complex and kwargs.get("weight_decay", 0) != 0 and torch_fuses_multiply_add()


def differing_elements(theirs: list[Any], ours: list[Any]) -> int:
    # NaNs compare by their bits too (float16 with eps=1e-8 makes 0/0)
    for a, b in zip(theirs, ours):
        assert a.dtype == b.dtype
    return sum(int((torch_bits(a) != torch_bits(b)).sum()) for a, b in zip(theirs, ours))


def differing_from_torch_loop(kwargs: dict[str, Any], dtype: Any) -> int:
    theirs = train(torch_rmsprop(foreach=False), kwargs, dtype)
    return differing_elements(theirs, train(rmsprop_ext.RMSprop, kwargs, dtype))


# bfloat16 and float16: torch rounds the result of every operation to the dtype, and its 16-bit
# add(other, alpha=) rounds the product first after its vector loop (rmsprop_ext follows both).
DTYPES = ["float32", "float64", "complex64", "bfloat16", "float16"]


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_torch_table_is_matched_bit_for_bit(dtype_name: str) -> None:
    import torch

    dtype = getattr(torch, dtype_name)
    for desc, kwargs in torch_table():
        loop = train(torch_rmsprop(foreach=False), kwargs, dtype)
        foreach = train(torch_rmsprop(foreach=True), kwargs, dtype)
        ours = train(rmsprop_ext.RMSprop, kwargs, dtype)
        assert differing_elements(loop, ours) == 0, (desc, "for-loop")
        if dtype in (torch.bfloat16, torch.float16):
            # torch's foreach path rounds 16-bit tensors unlike its own for-loop (4,254 of 4,700
            # bfloat16 elements apart after 200 default steps); the for-loop is its CPU default.
            continue
        if torch_paths_disagree(kwargs, dtype):
            # Not an exception we grant ourselves: torch's two paths really differ here.
            assert differing_elements(loop, foreach) > 0, desc
        else:
            assert differing_elements(foreach, ours) == 0, (desc, "foreach")


@pytest.mark.parametrize("torch_threads", [1, 2, 3])
@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_sixteen_bit_parameters_follow_torch_across_its_thread_chunks(
    dtype_name: str, torch_threads: int
) -> None:
    """Past 32768 elements torch splits a tensor over its threads, and each thread's chunk ends in
    elements its vector loop leaves over, where add(other, alpha=) rounds differently: the
    weight decay and the momentum update must follow torch's split for its thread count."""
    import torch

    dtype = getattr(torch, dtype_name)
    kwargs = {"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.1, "centered": True}
    previous = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        generator = torch.Generator().manual_seed(2)
        start = [torch.randn(n, generator=generator).to(dtype) for n in (100_003, 65_541)]
        theirs = [torch.nn.Parameter(p.clone()) for p in start]
        ours = [torch.nn.Parameter(p.clone()) for p in start]
        torch_opt = torch.optim.RMSprop(theirs, **kwargs)
        our_opt = rmsprop_ext.RMSprop(ours, **kwargs)
        for _ in range(20):
            for a, b in zip(theirs, ours):
                a.grad = torch.randn(a.shape, generator=generator).to(dtype)
                b.grad = a.grad.clone()
            torch_opt.step()
            our_opt.step()
        assert differing_elements([p.detach() for p in theirs], [p.detach() for p in ours]) == 0
    finally:
        torch.set_num_threads(previous)


def test_functional_and_numpy_apis_round_like_the_optimizer() -> None:
    import numpy as np
    import torch

    generator = torch.Generator().manual_seed(1)
    p0 = torch.randn(2053, generator=generator)
    grads = [torch.randn(2053, generator=generator) for _ in range(20)]
    kwargs = {"lr": 1e-2, "momentum": 0.5, "centered": True, "weight_decay": 0.1}

    param = torch.nn.Parameter(p0.clone())
    opt = torch.optim.RMSprop([param], foreach=False, **kwargs)
    array = p0.numpy().copy()
    numpy_opt = rmsprop_ext.NumpyRMSprop([array], **kwargs)
    functional = p0.clone()
    state = [torch.zeros_like(p0) for _ in range(3)]
    for g in grads:
        param.grad = g
        opt.step()
        numpy_opt.step([g.numpy()])
        rmsprop_ext.rmsprop_step(
            functional, g, state[0], momentum_buffer=state[1], grad_avg=state[2], **kwargs
        )
    assert torch.equal(functional, param.detach())
    assert np.array_equal(array, param.detach().numpy())


CHECK_TABLE = """
import sys, torch, rmsprop_ext
sys.path.insert(0, {tests!r})
import test_torch_bitwise as t
bad = [
    (str(dtype), desc)
    for dtype in (getattr(torch, name) for name in {dtypes!r})
    for desc, kwargs in t.torch_table()
    if t.differing_from_torch_loop(kwargs, dtype)
]
from rmsprop_ext._rounding import torch_square_roots
print(torch.backends.cpu.get_cpu_capability(), rmsprop_ext.get_isa(), torch_square_roots())
print("mismatches:", bad)
sys.exit(1 if bad else 0)
"""


def check_table_in_child(dtypes: list[str], **environment: str) -> str:
    """Runs the torch table in a fresh process with these environment variables; its output."""
    tests = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
        [sys.executable, "-c", CHECK_TABLE.format(tests=tests, dtypes=dtypes)],
        capture_output=True,
        text=True,
        env={**os.environ, **environment},
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_torch_table_under_each_torch_cpu_capability(capability: str, isa: str) -> None:
    output = check_table_in_child(DTYPES, ATEN_CPU_CAPABILITY=capability, RMSPROP_EXT_ISA=isa)
    # torch really ran with that capability (which torch before 2.9 names "NO AVX" for default)
    names = {"default": ("DEFAULT", "NO AVX"), "avx2": ("AVX2",)}[capability]
    assert any(name in output for name in names), output


# MKL's SSE4.2 path as a user would ask for it (an AMD CPU takes it anyway), and its AVX2 path by
# its column of MKL's dispatch table, which MKL takes on any vendor's CPU (MKL_ENABLE_INSTRUCTIONS
# =AVX2 gives it on Intel's only).
@pytest.mark.parametrize("mkl_path", ["MKL_ENABLE_INSTRUCTIONS=SSE4_2", "MKL_VML_DEBUG_CPU_TYPE=3"])
def test_torch_table_on_each_mkl_code_path(mkl_path: str, isa: str) -> None:
    """MKL picks its vector math's code path by CPU, and torch.sqrt rounds as that path does.
    Told to take an older one, MKL rounds square roots unlike its AVX-512 path (SSE4.2: 1 ulp
    either way on 17% of float32 inputs), and the native step follows: the avx2 and avx512
    kernels compute MKL's root in their pass, the scalar kernel calls MKL's function
    (test_mkl_paths.py checks the roots themselves)."""
    name, value = mkl_path.split("=")
    # 16-bit updates take the CPU's float32 square root, as torch's 16-bit sqrt does (not MKL's)
    output = check_table_in_child(DTYPES[:3], **{name: value}, RMSPROP_EXT_ISA=isa)
    assert "None" not in output  # a square root the probe could not place
    # the probe really saw MKL's other rounding (which path is MKL's choice on each CPU)
    assert "'float32': 'mkl_" in output and "'float32': 'mkl_avx512'" not in output
    if name == "MKL_VML_DEBUG_CPU_TYPE":
        assert "'float32': 'mkl_avx2'" in output, output


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
@pytest.mark.parametrize(
    "kwargs", [{}, {"momentum": 0.9, "centered": True}, {"weight_decay": 0.1, "maximize": True}]
)
def test_non_finite_sixteen_bit_values_follow_torch_in_vector_lanes(
    dtype_name: str, kwargs: dict[str, Any]
) -> None:
    """NaN, infinities, the largest values and subnormals in the vector body (not only in the
    scalar tail): torch rounds each intermediate result, and a NaN must stay a NaN through every
    rounding, whatever its payload (signalling ones and all-ones ones included: the vector
    kernels' bfloat16 rounding relies on NaNs never carrying out of the low half). Which NaN is
    not compared: torch's own loops store some as 0xFFFF where rmsprop_ext stores 0x7FC0 (the NaN
    of torch's scalar conversion)."""
    import torch

    def same(a: Any, b: Any) -> bool:
        nan = torch.isnan(a)
        return torch.equal(nan, torch.isnan(b)) and torch.equal(
            a[~nan].view(torch.int16), b[~nan].view(torch.int16)
        )

    dtype = getattr(torch, dtype_name)
    info = torch.finfo(dtype)
    specials = [float("nan"), -float("nan"), float("inf"), -float("inf"), info.max, -info.max]
    specials += [info.tiny / 4, -info.tiny / 4, 0.0, -0.0, 1.0, -3.0]
    # NaN bit patterns: signalling and quiet, both signs, the smallest and the largest payloads.
    exponent = 0x7F80 if dtype == torch.bfloat16 else 0x7C00
    payloads = [exponent | 1, 0x7FFF, -1, -0x8000 | exponent | 1]
    generator = torch.Generator().manual_seed(3)

    def with_specials(values: Any) -> Any:
        positions = torch.randperm(256, generator=generator)[: 3 * len(specials + payloads)]
        values[positions[: 3 * len(specials)]] = torch.tensor(specials * 3)
        values = values.to(dtype)
        patterns = torch.tensor(payloads * 3, dtype=torch.int16)
        values.view(torch.int16)[positions[3 * len(specials) :]] = patterns
        return values

    grads = [with_specials(torch.randn(256, generator=generator)) for _ in range(4)]
    # The parameter's own NaNs, only a few, so that most lanes still take the updates' roundings.
    start = torch.randn(256, generator=generator).to(dtype)
    start.view(torch.int16)[torch.randperm(256, generator=generator)[: len(payloads)]] = (
        torch.tensor(payloads, dtype=torch.int16)
    )
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt_ours = rmsprop_ext.RMSprop([ours], lr=0.01, **kwargs)
    opt_theirs = torch.optim.RMSprop([theirs], lr=0.01, foreach=False, **kwargs)
    for grad in grads:
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        opt_ours.step()
        opt_theirs.step()
        assert same(ours.detach(), theirs.detach())
        for name, value in opt_theirs.state[theirs].items():
            if name != "step":
                assert same(opt_ours.state[ours][name], value), name
