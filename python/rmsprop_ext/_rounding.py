"""How torch rounds ``a * b + c`` on this machine, so the native step can round the same way.

torch's CPU kernels for AVX2 and AVX-512 compute ``add(alpha=)``, ``addcmul`` and ``lerp`` with
one rounding (FMA instructions in the vector body, and GCC contracts the scalar tail), while its
DEFAULT kernels (``ATEN_CPU_CAPABILITY=default``, or a CPU without AVX2) round the product and the
sum separately. Which one a process gets is fixed when torch first dispatches, so it is measured
once: torch's own ops on numbers whose two roundings differ.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import warnings
from typing import Any

import numpy as np

from . import _core

__all__ = [
    "MKL_SQUARE_ROOTS",
    "ROUNDINGS",
    "check_rounding",
    "resolve_rounding",
    "square_root_computed_by",
    "torch_fuses_multiply_add",
    "torch_sqrt_installed",
    "torch_square_roots",
]

_PROBE_SIZE = 1031  # a vector body and a scalar tail on every instruction set


def _probe_values() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20261130)
    return tuple(rng.standard_normal(_PROBE_SIZE).astype(np.float32) for _ in range(3))  # type: ignore[return-value]


def _fused(a: Any, b: Any, c: Any) -> np.ndarray:
    # float32 products are exact in float64; the sum's float64 rounding only matters on ties.
    return (a.astype(np.float64) * b + c).astype(np.float32)


@functools.cache
def torch_fuses_multiply_add() -> bool:
    """True when torch's CPU ops in this process round ``a * b + c`` once (FMA)."""
    import torch

    a, b, c = _probe_values()
    ta, tb, tc = (torch.from_numpy(v) for v in (a, b, c))
    weight = np.float32(0.01)
    scaled = np.float32(0.1) * a
    observed = {
        # grad.add(param, alpha=wd)
        "add": (ta.add(tb, alpha=0.01).numpy(), b * weight + a, _fused(b, weight, a)),
        # square_avg.addcmul_(grad, grad, value=...): (value * t1) * t2 + self
        "addcmul": (tc.addcmul(ta, tb, value=0.1).numpy(), scaled * b + c, _fused(scaled, b, c)),
        # grad_avg.lerp_(grad, w): self + w * (end - self)
        "lerp": (ta.lerp(tb, 0.01).numpy(), weight * (b - a) + a, _fused(weight, b - a, a)),
    }
    verdicts = set()
    for name, (got, separate, fused) in observed.items():
        if np.array_equal(got, separate):
            verdicts.add(False)
        elif np.array_equal(got, fused):
            verdicts.add(True)
        else:
            warnings.warn(
                f"torch's {name} rounds neither like one FMA nor like a multiply and an add; "
                "rmsprop_ext cannot follow its rounding bit for bit",
                RuntimeWarning,
                stacklevel=2,
            )
            verdicts.add(True)
    if len(verdicts) > 1:
        warnings.warn(
            "torch fuses some multiply-adds and not others; rmsprop_ext fuses all of them",
            RuntimeWarning,
            stacklevel=2,
        )
    return True in verdicts


# mkl_service.h maps the C name mkl_set_num_threads_local to MKL_Set_Num_Threads_Local(int);
# the exported lower-case symbol is the Fortran entry, which takes a pointer.
_MKL_FUNCTIONS = ("vmsSqrt", "vmdSqrt", "MKL_Set_Num_Threads_Local")


@functools.cache
def _mkl_sqrt_functions() -> tuple[int, int, int] | None:
    """Addresses of MKL's vmsSqrt, vmdSqrt and (C) mkl_set_num_threads_local inside the loaded
    libtorch_cpu, or None."""
    import ctypes

    import torch

    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        path = os.path.join(os.path.dirname(torch.__file__), "lib", name)
        if not os.path.exists(path):
            continue
        try:
            library = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0))
            return tuple(  # type: ignore[return-value]
                ctypes.cast(getattr(library, symbol), ctypes.c_void_p).value
                for symbol in _MKL_FUNCTIONS
            )
        except (OSError, AttributeError):
            return None
    return None


def _sqrt_probe(dtype: type) -> np.ndarray:
    """Radicands that tell square roots apart: every binade of the dtype (subnormals included) at
    random mantissas, the range optimizer states live in, zeros, infinity and NaN."""
    rng = np.random.default_rng(20261130)
    if dtype is np.float32:
        bits = rng.integers(0, 0x7F800000, _SQRT_PROBE_SIZE, dtype=np.uint32)
    else:
        bits = rng.integers(0, 0x7FF0000000000000, _SQRT_PROBE_SIZE, dtype=np.uint64)
    typical = np.exp(rng.uniform(np.log(1e-12), np.log(1e2), _SQRT_PROBE_SIZE))
    special = np.array([0.0, -0.0, np.inf, np.nan])
    return np.concatenate([bits.view(dtype), typical.astype(dtype), special.astype(dtype)])


_SQRT_PROBE_SIZE = 1 << 15
# torch hands MKL's vector math to its threads in grains of 2,048 elements (ATen/cpu/vml.h); the
# probe asks in smaller pieces, so that every piece runs on the calling thread.
_TORCH_SERIAL_PIECE = 2000


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    unsigned = np.uint32 if a.dtype == np.float32 else np.uint64
    return a.shape == b.shape and bool(np.array_equal(a.view(unsigned), b.view(unsigned)))


def _torch_sqrt(values: np.ndarray) -> np.ndarray:
    import torch

    tensor = torch.from_numpy(values)
    return torch.cat([piece.sqrt() for piece in tensor.split(_TORCH_SERIAL_PIECE)]).numpy()


# MKL's code paths that the kernels compute themselves, in the order the probe tries them.
MKL_SQUARE_ROOTS = ("mkl_avx512", "mkl_avx2", "mkl_sse42", "mkl_portable")


def _square_root_form(
    values: np.ndarray, torch_roots: np.ndarray, functions: Any, preferred: str | None = None
) -> str | None:
    """Which square root gives torch's bits: 'ieee', one of MKL_SQUARE_ROOTS, 'outside' or
    None. Where several of MKL's forms give them, `preferred` if it is one of them."""
    if _same_bits(np.sqrt(values), torch_roots):
        return "ieee"
    matching = []
    for form in MKL_SQUARE_ROOTS:
        try:
            if _same_bits(_core._mkl_sqrt(form, values), torch_roots):
                matching.append(form)
        except RuntimeError:  # no kernel here computes this form for this dtype
            pass
    if matching:
        return preferred if preferred in matching else matching[0]
    address = functions[0] if values.dtype == np.float32 else functions[1]
    if address and _same_bits(_vml_sqrt(address, values), torch_roots):
        return "outside"
    return None


@functools.cache
def torch_square_roots() -> dict[str, str | None]:
    """Which square root torch.sqrt computes in this process, per dtype ("float32", "float64").

    "ieee": the correctly rounded one. "mkl_avx512", "mkl_avx2", "mkl_sse42", "mkl_portable": one
    of the code paths of MKL's high-accuracy vsSqrt/vdSqrt (torch with MKL: AVX-512 CPUs take the
    first, AVX2 ones the second; MKL maps its other CPU types onto the third and fourth), which the
    kernels that have its instructions compute in their single pass. "outside": another square
    root of MKL's, reproduced by calling MKL's function, found in the loaded libtorch_cpu, on
    blocks of each update. None: none of these; the native step then cannot follow torch's square
    root bit for bit. The estimate instructions of MKL's paths give different bits on different
    CPUs, so this is decided on each machine from torch.sqrt's results.
    Measured bit for bit (NaNs included) on radicands from every binade. Negative ones, which
    an update never makes, are left out: MKL's NaN for them (+qNaN) is not the CPU's (-qNaN),
    which would tell an MKL path that rounds like IEEE from the CPU's square root for nothing.
    """
    # torch's first parallel sqrt in a process can come out different on the worker threads
    # (seen: 1,557 of 3,093 elements, in 2 of 6 fresh processes; MKL starting up there), so torch
    # is warmed up first, and the probe runs on the calling thread.
    import torch

    for _ in range(2):
        torch.ones(1 << 16).sqrt()
    functions = _mkl_sqrt_functions() or (0, 0, 0)
    forms: dict[str, str | None] = {}
    for dtype in (np.float32, np.float64):
        values = _sqrt_probe(dtype)
        # MKL picks one code path for all its functions, and its float64 paths round apart only
        # on about 1 radicand in a million (the AVX2 and SSE4.2 ones), too rarely for a probe to
        # tell; the float32 ones differ on a fifth. So where several float64 forms match, the
        # float32 path's is the one.
        forms[np.dtype(dtype).name] = _square_root_form(
            values, _torch_sqrt(values), functions, preferred=forms.get("float32")
        )
    return forms


def square_root_computed_by(form: str | None, dtype: str, isa: str) -> str:
    """How the kernel `isa` takes the square root `form` of `dtype` ("float32"/"float64"), in
    words: in its own pass, or by calling MKL's function on blocks."""
    if form is None:
        return "the IEEE square root instead: not bitwise torch"
    if form == "ieee":
        return "the CPU's instruction"
    if form == "outside":
        return "MKL's function, called on blocks"
    if _core._kernel_computes_square_root(isa, form, dtype):
        return f"computed in the {isa} kernel's pass"
    return f"MKL's function, called on blocks: the {isa} kernel cannot compute it"


@functools.cache
def torch_sqrt_installed() -> bool:
    """Installs torch's square root into the extension when torch's differs from the IEEE one.

    See torch_square_roots. Returns True when installed; warns when torch's square root is none
    the extension can follow.
    """
    forms = torch_square_roots()
    if None in forms.values():
        warnings.warn(
            "torch's sqrt is neither the IEEE square root nor one of MKL's that rmsprop_ext can "
            f"reproduce ({forms}); the native step cannot follow it bit for bit",
            RuntimeWarning,
            stacklevel=2,
        )
    chosen = {dtype: form or "ieee" for dtype, form in forms.items()}
    if set(chosen.values()) == {"ieee"}:
        return False
    install_square_roots(chosen)
    return True


def install_square_roots(forms: dict[str, str]) -> None:
    """Installs these square roots (see torch_square_roots) with MKL's functions, when found, as
    the outside ones."""
    functions = _mkl_sqrt_functions() or (0, 0, 0)
    _core._install_torch_sqrt(
        float32=forms["float32"],
        float64=forms["float64"],
        vms_sqrt=functions[0] or 0,
        vmd_sqrt=functions[1] or 0,
        set_num_threads_local=functions[2] or 0,
    )


# The mode torch passes to MKL (aten/src/ATen/cpu/vml.h):
# VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE.
_TORCH_VML_MODE = 0x2 | 0x140000 | 0x100


def _vml_sqrt(address: int, values: np.ndarray) -> np.ndarray:
    """MKL's vector square root at `address` (vmsSqrt or vmdSqrt) applied to `values`."""
    import ctypes

    function = ctypes.CFUNCTYPE(
        None, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64
    )(address)
    out = np.empty_like(values)
    function(values.size, values.ctypes.data, out.ctypes.data, _TORCH_VML_MODE)
    return out


# torch_add_block when torch's add(other, alpha=) has no vector loop: no element in a whole block.
_NO_WHOLE_BLOCK = 1 << 62


@functools.cache
def torch_add_block() -> int:
    """The elements per block of torch's vector loop for add(other, alpha=) on 16-bit tensors (see
    ``Hyperparams.torch_add_block``), measured: in the elements after its last whole block torch
    rounds alpha * other to the dtype before the sum, and the sum below lands on the other side of
    a tie when it does. 0 when every element rounds once (no such elements to follow)."""
    import torch

    size = 127  # odd, and one chunk for any thread count
    param = torch.full((size,), -1.3046875, dtype=torch.bfloat16)
    other = torch.full((size,), 9.0, dtype=torch.bfloat16)
    # -1.3046875 - 0.010009765625 * 9 = -1.39478...: -1.3984375 rounded once; the product rounded
    # to bfloat16 first (-0.08984375) makes the sum a tie that rounds to -1.390625
    rounded_once = param.add(other, alpha=-1e-2) == -1.3984375
    vector_elements = int(rounded_once.to(torch.int64).cumprod(0).sum())
    if vector_elements == size:
        return 0
    if vector_elements == 0:
        return _NO_WHOLE_BLOCK
    return vector_elements & -vector_elements  # whole blocks: its largest power-of-two factor


ROUNDINGS = ("torch", "fused", "separate")


def check_rounding(rounding: Any) -> None:
    """ValueError naming the choices for anything but one of ROUNDINGS."""
    if rounding not in ROUNDINGS:
        raise ValueError(
            f"rounding must be one of {', '.join(map(repr, ROUNDINGS))}, got {rounding!r}"
        )


def resolve_rounding(rounding: str) -> dict[str, Any]:
    """The native Hyperparams fields of a ``rounding`` option: fused_multiply_add, torch_sqrt,
    round_each_op and, following torch in this process, torch_add_block and torch_threads.

    "torch": torch's rounding in this process, bit for bit: FMA or not as its kernels do, its
    square root (MKL's, when torch uses it), and 16-bit buffers rounded after every operation
    (with its add(alpha=) block and thread count, read now). Without torch imported, the rule
    torch would follow (FMA when the CPU has AVX2 and FMA, unless ``ATEN_CPU_CAPABILITY=default``)
    and the IEEE square root. "fused" / "separate": multiply-adds rounded once / twice, IEEE
    square roots, 16-bit buffers rounded once per stored value.
    """
    check_rounding(rounding)
    if rounding != "torch":
        return {
            "fused_multiply_add": rounding == "fused",
            "torch_sqrt": False,
            "round_each_op": False,
        }
    # Not imported, or hidden the standard way (sys.modules["torch"] = None): no torch to follow.
    if sys.modules.get("torch") is None:
        capability = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
        return {
            "fused_multiply_add": _torch_rule(capability),
            "torch_sqrt": False,
            "round_each_op": True,
        }
    import torch

    return {
        "fused_multiply_add": torch_fuses_multiply_add(),
        "torch_sqrt": torch_sqrt_installed(),
        "round_each_op": True,
        "torch_add_block": torch_add_block(),
        "torch_threads": torch.get_num_threads(),
    }


@functools.cache
def _torch_rule(capability: str) -> bool:
    if capability == "default":
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "avx2" in _core.build_info()["isa_cpu"]
    return True
