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

pytestmark = [
    pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch"),
    pytest.mark.needs_torch,
]

STEPS = 200
# Vector bodies, scalar tails, a one-element and a 2-D parameter.
SHAPES = [(1031,), (17, 33), (5,), (1,), (3 * 1024 + 7,)]


def torch_table() -> list[tuple[str, dict[str, Any]]]:
    from torch.testing._internal.common_optimizers import optim_inputs_func_rmsprop

    return [(case.desc, case.kwargs) for case in optim_inputs_func_rmsprop("cpu")]


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
    import torch

    for a, b in zip(theirs, ours):
        assert a.dtype == b.dtype
    return sum(int((a != b).sum()) for a, b in zip(theirs, ours) if not torch.equal(a, b))


def differing_from_torch_loop(kwargs: dict[str, Any], dtype: Any) -> int:
    theirs = train(torch_rmsprop(foreach=False), kwargs, dtype)
    return differing_elements(theirs, train(rmsprop_ext.RMSprop, kwargs, dtype))


@pytest.mark.parametrize("dtype_name", ["float32", "float64", "complex64"])
def test_torch_table_is_matched_bit_for_bit(dtype_name: str) -> None:
    import torch

    dtype = getattr(torch, dtype_name)
    for desc, kwargs in torch_table():
        loop = train(torch_rmsprop(foreach=False), kwargs, dtype)
        foreach = train(torch_rmsprop(foreach=True), kwargs, dtype)
        ours = train(rmsprop_ext.RMSprop, kwargs, dtype)
        assert differing_elements(loop, ours) == 0, (desc, "for-loop")
        if torch_paths_disagree(kwargs, dtype):
            # Not an exception we grant ourselves: torch's two paths really differ here.
            assert differing_elements(loop, foreach) > 0, desc
        else:
            assert differing_elements(foreach, ours) == 0, (desc, "foreach")


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
    for dtype in (torch.float32, torch.float64, torch.complex64)
    for desc, kwargs in t.torch_table()
    if t.differing_from_torch_loop(kwargs, dtype)
]
from rmsprop_ext._rounding import torch_square_roots
print(torch.backends.cpu.get_cpu_capability(), rmsprop_ext.get_isa(), torch_square_roots())
print("mismatches:", bad)
sys.exit(1 if bad else 0)
"""


def check_table_in_child(**environment: str) -> str:
    """Runs the torch table in a fresh process with these environment variables; its output."""
    tests = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
        [sys.executable, "-c", CHECK_TABLE.format(tests=tests)],
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
    output = check_table_in_child(ATEN_CPU_CAPABILITY=capability, RMSPROP_EXT_ISA=isa)
    assert capability.upper() in output  # torch really ran with that capability


@pytest.mark.parametrize("mkl_path", ["AVX2", "SSE4_2"])
def test_torch_table_on_each_mkl_code_path(mkl_path: str, isa: str) -> None:
    """MKL picks its vector math's code path by CPU, and torch.sqrt rounds as that path does.
    Told to take an older one, MKL rounds square roots unlike its AVX-512 path (SSE4.2: 1 ulp
    either way on 17% of float32 inputs), and the native step follows by calling MKL."""
    output = check_table_in_child(MKL_ENABLE_INSTRUCTIONS=mkl_path, RMSPROP_EXT_ISA=isa)
    assert "None" not in output  # a square root the probe could not place
    if mkl_path == "SSE4_2":
        assert "'float32': 'outside'" in output  # the probe really saw MKL's other rounding
