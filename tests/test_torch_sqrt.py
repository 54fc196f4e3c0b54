"""torch's square root as the native step takes it.

torch.sqrt is MKL's vector square root, which on AVX-512 CPUs is 1 ulp below the IEEE one on
some inputs. The avx512 kernel computes MKL's AVX-512 algorithm itself, in the update's single
pass; these tests check it against MKL bit for bit on whole binades, that the probe picks it, and
that the other kernels, which cannot compute it, fall back to MKL's function or refuse clearly.
MKL's other code paths (AVX2, SSE4.2, portable) are checked in test_mkl_paths.py, in processes
whose environment sends MKL down them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
import rmsprop_ext
from conftest import HAS_TORCH
from helpers import cpu_vendor
from rmsprop_ext import _core, _rounding

pytestmark = [
    pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch"),
    pytest.mark.needs_torch,
]

CPU_HAS_AVX512 = "avx512" in rmsprop_ext.build_info()["isa_cpu"]


def float32_patterns(first: int, last: int) -> np.ndarray:
    """Every float32 whose bit pattern lies in [first, last)."""
    return np.arange(first, last, dtype=np.uint32).view(np.float32)


def bits_of(values: np.ndarray) -> np.ndarray:
    return values.view(np.uint32 if values.dtype == np.float32 else np.uint64)


def mkl_sqrt(values: np.ndarray) -> np.ndarray:
    """MKL's own vmsSqrt / vmdSqrt, as torch calls it."""
    functions = _rounding._mkl_sqrt_functions()
    assert functions is not None and all(functions), "MKL's square root not found in torch"
    return _rounding._vml_sqrt(functions[0 if values.dtype == np.float32 else 1], values)


def torch_uses_mkl_avx512() -> bool:
    """MKL on an Intel AVX-512 CPU, left to pick its own code path: torch.sqrt is MKL's AVX-512
    one. (On an AMD EPYC with AVX-512, MKL takes its SSE4.2 path: seen on Zen 4.)"""
    import torch

    return (
        CPU_HAS_AVX512
        and cpu_vendor() == "GenuineIntel"
        and torch.backends.mkl.is_available()
        and "MKL_ENABLE_INSTRUCTIONS" not in os.environ
        and "MKL_CBWR" not in os.environ
    )


@pytest.fixture
def restore_square_roots() -> Iterator[None]:
    yield
    _rounding.install_square_roots(
        {dtype: form or "ieee" for dtype, form in _rounding.torch_square_roots().items()}
    )


def test_the_probe_finds_a_square_root_it_can_follow() -> None:
    forms = _rounding.torch_square_roots()
    assert set(forms) == {"float32", "float64"}
    assert set(forms.values()) <= {"ieee", "outside", *_rounding.MKL_SQUARE_ROOTS}, forms
    if torch_uses_mkl_avx512():
        assert forms == {"float32": "mkl_avx512", "float64": "mkl_avx512"}
    import torch

    if cpu_vendor() == "AuthenticAMD" and torch.backends.mkl.is_available():
        # MKL's path for AMD's CPUs is one the kernels compute in their pass, not an outside one.
        assert set(forms.values()) <= set(_rounding.MKL_SQUARE_ROOTS), forms


def test_mkl_avx512_sqrt_gives_mkls_bits_on_whole_binades(isa: str) -> None:
    if not CPU_HAS_AVX512:
        with pytest.raises(RuntimeError, match="computes the mkl_avx512 square root"):
            _core._mkl_sqrt("mkl_avx512", np.ones(3, dtype=np.float32))
        return
    if not torch_uses_mkl_avx512():
        pytest.skip("MKL takes another path here (told to, or not an Intel CPU): test_mkl_paths")
    # Every bit pattern of: [1/4, 4) (ordinary radicands, the rounding of the estimate's
    # correction), [2^-80, 2^-76) (around the threshold below which MKL scales), the subnormals,
    # and the top binade up to +inf; then random patterns of the whole range, signs and NaNs
    # included. The avx512 kernel's function is the same whichever kernel is active, so the
    # other instruction sets check a smaller share.
    ranges = [(0x3E800000, 0x40800000), (0x17800000, 0x19800000), (0, 0x00800000)]
    ranges.append((0x7F000000, 0x7F800001))
    if isa != "avx512":
        ranges = [(first, first + (1 << 20)) for first, _ in ranges]
    samples = [float32_patterns(first, last) for first, last in ranges]
    rng = np.random.default_rng(7)
    anything = rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    samples.append(anything.view(np.float32))
    for values in samples:
        assert np.array_equal(
            bits_of(_core._mkl_sqrt("mkl_avx512", values)), bits_of(mkl_sqrt(values))
        )
    doubles = [
        rng.integers(0, 1 << 64, 1 << 20, dtype=np.uint64).view(np.float64),
        np.abs(rng.standard_normal(1 << 20)) * 10.0 ** rng.integers(-300, 300, 1 << 20),
        np.ldexp(1.0 + rng.random(1 << 16), rng.integers(-1074, -900, 1 << 16)),
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 5e-324]),
    ]
    for values in doubles:
        assert np.array_equal(
            bits_of(_core._mkl_sqrt("mkl_avx512", values)), bits_of(mkl_sqrt(values))
        )


def test_mkl_avx512_sqrt_is_the_ieee_root_or_one_ulp_below() -> None:
    if not CPU_HAS_AVX512:
        pytest.skip("no AVX-512 on this CPU; the RuntimeError is checked above")
    values = float32_patterns(0x3F800000, 0x40800000)  # [1, 4): every float32
    below = bits_of(np.sqrt(values)).astype(np.int64) - bits_of(
        _core._mkl_sqrt("mkl_avx512", values)
    )
    assert set(np.unique(below)) == {0, 1}
    assert 0.001 < np.mean(below) < 0.02  # about 0.7% of inputs round 1 ulp low


def torch_rounding() -> rmsprop_ext._core.Hyperparams:
    """The native options of a plain torch-default update with torch's rounding."""
    options = rmsprop_ext.functional.hyperparams(0.01, 0.99, 1e-8, 0.0, 0.0, *[False] * 4)
    return rmsprop_ext.functional.native_hyperparams(options)


def differs_from_torch(dtype_name: str) -> int:
    """Elements of one rmsprop_step that differ from torch.optim.RMSprop's for-loop, on a state
    whose square roots round differently in IEEE and MKL arithmetic."""
    import torch

    dtype = getattr(torch, dtype_name)
    generator = torch.Generator().manual_seed(3)
    param = torch.randn(4099, generator=generator, dtype=dtype)
    grad = torch.randn(4099, generator=generator, dtype=dtype)
    square_avg = torch.rand(4099, generator=generator, dtype=dtype)
    ours, ours_square_avg = param.clone(), square_avg.clone()
    rmsprop_ext.rmsprop_step(ours, grad, ours_square_avg, lr=0.01)

    theirs = torch.nn.Parameter(param.clone())
    optimizer = torch.optim.RMSprop([theirs], lr=0.01, foreach=False)
    optimizer.state[theirs] = {"step": torch.tensor(0.0), "square_avg": square_avg.clone()}
    theirs.grad = grad
    optimizer.step()
    assert torch.equal(ours_square_avg, optimizer.state[theirs]["square_avg"])
    return int((ours != theirs.detach()).sum())


def test_each_kernel_takes_torchs_square_root(isa: str) -> None:
    forms = {d: form or "ieee" for d, form in _rounding.torch_square_roots().items()}
    hyperparams = torch_rounding()
    if set(forms.values()) != {"ieee"}:
        assert _core._torch_sqrt_installed()
    assert (hyperparams.square_root_f32, hyperparams.square_root_f64) == (
        forms["float32"],
        forms["float64"],
    )
    assert differs_from_torch("float32") == 0
    assert differs_from_torch("float64") == 0


@pytest.mark.usefixtures("restore_square_roots")
def test_without_mkls_function_only_the_avx512_kernel_can_follow_it(isa: str) -> None:
    if not torch_uses_mkl_avx512():
        pytest.skip("torch.sqrt is not MKL's AVX-512 square root here")
    _core._install_torch_sqrt(
        float32="mkl_avx512", float64="mkl_avx512", vms_sqrt=0, vmd_sqrt=0, set_num_threads_local=0
    )
    if isa == "avx512":
        assert torch_rounding().square_root_f32 == "mkl_avx512"
        assert differs_from_torch("float32") == 0  # computed in the kernel: nothing to call
        assert differs_from_torch("float64") == 0
        return
    with pytest.raises(ValueError, match=f"MKL's AVX-512 one, which the {isa} kernel cannot"):
        torch_rounding()
    # Built while avx512 was active, then used after a switch: refused before any write.
    rmsprop_ext.set_isa("avx512")
    hyperparams = torch_rounding()
    rmsprop_ext.set_isa(isa)
    param = np.ones(1031, dtype=np.float32)
    with pytest.raises(ValueError, match="cannot compute"):
        _core.rmsprop_step(param, np.ones_like(param), np.ones_like(param), hyperparams=hyperparams)
    assert np.array_equal(param, np.ones_like(param))


def test_ieee_rounding_really_differs_from_torch_here(isa: str) -> None:
    """The comparisons above can fail: with the IEEE square root the same step differs."""
    if _rounding.torch_square_roots()["float32"] in (None, "ieee"):
        pytest.skip("torch.sqrt is the IEEE square root here")
    import torch

    generator = torch.Generator().manual_seed(3)
    param = torch.randn(4099, generator=generator)
    grad = torch.randn(4099, generator=generator)
    square_avg = torch.rand(4099, generator=generator)
    results = []
    for rounding in ("torch", "fused"):
        p, s = param.clone(), square_avg.clone()
        rmsprop_ext.rmsprop_step(p, grad, s, lr=0.01, rounding=rounding)
        results.append(p)
    assert int((results[0] != results[1]).sum()) > 0


@pytest.mark.usefixtures("restore_square_roots")
def test_bad_square_root_installs_change_nothing() -> None:
    before = torch_rounding()
    with pytest.raises(ValueError, match="float32 must be one of 'ieee', 'mkl_avx512', 'mkl_avx2'"):
        _core._install_torch_sqrt(
            float32="exact", float64="ieee", vms_sqrt=0, vmd_sqrt=0, set_num_threads_local=0
        )
    with pytest.raises(ValueError, match="required for an 'outside' square root"):
        _core._install_torch_sqrt(
            float32="ieee", float64="outside", vms_sqrt=0, vmd_sqrt=0, set_num_threads_local=0
        )
    after = torch_rounding()
    assert (after.square_root_f32, after.square_root_f64) == (
        before.square_root_f32,
        before.square_root_f64,
    )
    with pytest.raises(TypeError, match="float32 or float64 array, got int64"):
        _core._mkl_sqrt("mkl_avx512", np.arange(3, dtype=np.int64))
    with pytest.raises(ValueError, match="form must name one of MKL's square roots, got 'ieee'"):
        _core._mkl_sqrt("ieee", np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError, match="form must be one of"):
        _core._mkl_sqrt("mkl", np.ones(3, dtype=np.float32))
    # A form that no kernel of this CPU and build computes (on x86 with AVX-512, none).
    available = rmsprop_ext.build_info()["isa_available"]
    for form in ("mkl_avx512", "mkl_avx2", "mkl_sse42", "mkl_portable"):
        if not any(_core._kernel_computes_square_root(k, form, "float64") for k in available):
            with pytest.raises(RuntimeError, match=f"computes the {form} square root of float64"):
                _core._mkl_sqrt(form, np.ones(3, dtype=np.float64))


def test_kernel_computes_square_root_names_the_kernels_forms() -> None:
    computes = _core._kernel_computes_square_root
    assert computes("scalar", "ieee", "float64")
    assert not computes("scalar", "mkl_sse42", "float32")
    assert computes("avx2", "mkl_sse42", "float32") and not computes(
        "avx2", "mkl_avx512", "float32"
    )
    assert computes("avx2", "mkl_avx2", "float64") and not computes("scalar", "mkl_avx2", "float64")
    assert computes("avx512", "mkl_avx512", "float64") and computes(
        "avx512", "mkl_portable", "float32"
    )
    assert computes("avx512", "mkl_sse42", "float64") and not computes(
        "neon", "mkl_sse42", "float64"
    )
    with pytest.raises(ValueError, match="form must be one of"):
        computes("avx2", "mkl", "float32")
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64', got 'int8'"):
        computes("avx2", "ieee", "int8")
    with pytest.raises(ValueError, match="avx3"):
        computes("avx3", "ieee", "float32")
