"""Shared data makers for the tests."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rmsprop_ext

# Agreement with the float64 reference after 50 steps, as |native - ref| <= tol * (1 + |ref|)
# (values are of order 1). Worst measured on every ISA: float32 2.4e-5 when centered (s - a^2
# cancels, amplifying float32 rounding; torch's own kernel has the same), 4e-6 otherwise;
# float64 3.5e-14. The tolerances leave about 2x headroom over those; a wrong formula misses by
# orders of magnitude more.
TOLERANCE = {np.float32: {"rtol": 5e-5, "atol": 5e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}


def cpu_vendor() -> str:
    """The CPU's vendor ("GenuineIntel", "AuthenticAMD"), or "" where Linux does not say. MKL
    picks its code path by it: its AVX-512 and AVX2 paths are for Intel's CPUs (an AMD EPYC with
    AVX-512 gets its SSE4.2 one, and ignores MKL_ENABLE_INSTRUCTIONS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def needs(module: str, extra: str) -> Any:
    """A skip mark for a test that needs `module` (of pyproject's `extra`) where it is missing; an
    error instead where RMSPROP_EXT_REQUIRE_PEERS is set (CI installs the extras)."""
    missing = importlib.util.find_spec(module) is None
    if missing and os.environ.get("RMSPROP_EXT_REQUIRE_PEERS"):
        raise RuntimeError(f"RMSPROP_EXT_REQUIRE_PEERS is set but {module} is not installed")
    return pytest.mark.skipif(missing, reason=f"needs {module} (pip install '.[{extra}]')")


def torch_bits(tensor: Any) -> Any:
    """A torch tensor's bit patterns as integers of its element's width (complex as pairs of
    reals), so that comparisons tell -0 from +0 and compare NaNs by their bits."""
    import torch

    tensor = torch.view_as_real(tensor) if tensor.is_complex() else tensor
    return tensor.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()])


def checksum(*arrays: Any) -> list[int]:
    """A CRC of each buffer's bytes, to prove a failed call wrote nothing."""
    out = []
    for a in arrays:
        if a is None:
            out.append(0)
            continue
        if hasattr(a, "detach"):
            a = a.detach()
            if str(a.dtype) == "torch.bfloat16":  # numpy has no bfloat16: its bytes as int16
                import torch

                a = a.view(torch.int16)
            array = a.numpy()
        else:
            array = np.asarray(a)
        out.append(zlib.crc32(np.ascontiguousarray(array).tobytes()))
    return out


class GradientStream:
    """Deterministic gradients for step t, with changing signs and magnitudes.

    With `period`, every array repeats with that period, so element i behaves exactly like
    element i % period: the reference needs to run on one period only.
    """

    def __init__(self, size: int, dtype: Any, seed: int, period: int = 0) -> None:
        rng = np.random.default_rng(seed)
        base_size = period if period else size
        self.size, self.dtype, self.period = size, dtype, period
        self.bases = [rng.standard_normal(base_size) for _ in range(3)]
        self.initial_param = self._tile(rng.standard_normal(base_size)).astype(dtype)

    def _tile(self, a: np.ndarray) -> np.ndarray:
        if not self.period:
            return a
        return np.resize(a, self.size)

    def base_grad(self, t: int) -> np.ndarray:
        """Gradient at step t for one period (or the whole array), already rounded to dtype."""
        a, b, c = self.bases
        g = a * np.cos(0.3 * t) + b * np.sin(0.7 * t) + 0.5 * c
        return g.astype(self.dtype)

    def grad(self, t: int) -> np.ndarray:
        return np.ascontiguousarray(self._tile(self.base_grad(t)))


def leave_when_every_rank_is_done() -> None:
    """Ends a rank of run_on_two_ranks' script: every rank is done once all have reached the
    barrier; then the rank leaves without tearing the gloo process group down. Its destruction
    raced with the other rank's once in CI and ended it with "terminate called without an active
    exception" (std::terminate), which says nothing about the optimizer; os._exit skips those
    destructors."""
    import torch.distributed as dist

    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_on_two_ranks(script: Path, *args: str, isa: str, timeout: float) -> str:
    """`script args` under torch.distributed.run on 2 local processes, each on the instruction set
    under test and one OpenMP thread; fails the test with their output unless both exit 0, else
    returns their standard output."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(script),
        *args,
    ]
    env = {**os.environ, "RMSPROP_EXT_ISA": isa, "OMP_NUM_THREADS": "1"}
    # In a session of their own: on a timeout the ranks go too, not only torchrun (subprocess.run
    # would kill torchrun alone and leave a hung rank running).
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    ) as ranks:
        try:
            stdout, stderr = ranks.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(ranks.pid, signal.SIGKILL)
            stdout, stderr = ranks.communicate()
            pytest.fail(f"the ranks ran past {timeout} s:\n{stdout}{stderr}")
    assert ranks.returncode == 0, stdout + stderr
    return stdout


# Two ways a process goes without torch, as code for a child interpreter to run first (after
# `import sys`): an import hook that finds no torch (as if not installed), and
# sys.modules["torch"] = None, the standard way to hide an installed module.
HIDE_TORCH = {
    "not_installed": """
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
sys.meta_path.insert(0, BlockTorch())
""",
    "hidden_in_sys_modules": """
sys.modules["torch"] = None
""",
}


# Option sets of the float32/float64 loop tests: every buffer the update can write, each option
# that changes the arithmetic.
OPTION_SETS: list[dict[str, Any]] = [
    {},
    {"momentum": 0.9},
    {"centered": True},
    {"momentum": 0.9, "centered": True, "nesterov": True},
    {"weight_decay": 0.01, "maximize": True},
    {"weight_decay": 0.01, "decoupled_weight_decay": True, "bias_correction": True},
    {"eps_in_sqrt": True, "momentum": 0.5, "lr_in_momentum": True},
]


def step_buffers(n: int, dtype: type, options: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """param, grad, square_avg and the option's other state, of order 1, from `seed`."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {
        "param": rng.standard_normal(n).astype(dtype),
        "grad": rng.standard_normal(n).astype(dtype),
        "square_avg": np.abs(rng.standard_normal(n)).astype(dtype),
    }
    if options.get("momentum"):
        out["momentum_buffer"] = rng.standard_normal(n).astype(dtype)
    if options.get("centered"):
        out["grad_avg"] = (0.1 * rng.standard_normal(n)).astype(dtype)
    return out


def three_steps(bufs: dict[str, np.ndarray], options: dict[str, Any], rounding: str) -> None:
    """Three steps of rmsprop_step on `bufs`, each with a new gradient, the same in every run."""
    for step in range(1, 4):
        bufs["grad"] *= -1.01  # a new gradient each step, the same in every run
        rmsprop_ext.rmsprop_step(
            bufs["param"],
            bufs["grad"],
            bufs["square_avg"],
            lr=1e-2,
            momentum_buffer=bufs.get("momentum_buffer"),
            grad_avg=bufs.get("grad_avg"),
            rounding=rounding,
            step=step,
            **options,
        )


def as_bits(bufs: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Each buffer's bytes, to compare runs bit for bit."""
    return {name: a.tobytes() for name, a in bufs.items()}


# Lengths below and above the loops' blocks (256 and 1,024 elements), with vector tails, and one
# above the serial threshold so that two threads split it.
LOOP_SIZES = [1, 13, 1031, 3000, 70_001]


def assert_loop_modes_agree(
    set_mode: Callable[[str], None], dtype: type, options: dict[str, Any], rounding: str
) -> None:
    """Three steps with the loop switch `set_mode` at "never" and at "always" give the same bits,
    for every length of LOOP_SIZES. The caller puts the switch back."""
    for n in LOOP_SIZES:
        results = {}
        for mode in ("never", "always"):
            set_mode(mode)
            bufs = step_buffers(n, dtype, options, seed=n)
            three_steps(bufs, options, rounding)
            results[mode] = as_bits(bufs)
        assert results["always"] == results["never"], (n, options)


def views_at_offsets(
    template: dict[str, np.ndarray], offsets: dict[str, int], align: int
) -> dict[str, np.ndarray]:
    """template's buffers copied into views of one array, buffer `name` starting offsets[name]
    bytes after an `align`-byte boundary, so that a test can place buffers against each other
    (pages of the array never touched cost no memory)."""
    first = next(iter(template.values()))
    itemsize = first.dtype.itemsize
    span = align + max(offsets.values()) + first.nbytes
    block: np.ndarray = np.empty(span // itemsize + 1, first.dtype)
    start = (-block.ctypes.data % align) // itemsize
    out: dict[str, np.ndarray] = {}
    for name, values in template.items():
        begin = start + offsets[name] // itemsize
        view = block[begin : begin + values.size]
        view[:] = values
        out[name] = view
    return out


def assert_layout_gives_separate_buffers_bits(
    placed: dict[str, np.ndarray], options: dict[str, Any]
) -> None:
    """Three steps on buffers placed against each other give the bits of the same steps on
    separate copies of them."""
    separate = {name: a.copy() for name, a in placed.items()}
    three_steps(placed, options, "torch")
    three_steps(separate, options, "torch")
    assert as_bits(placed) == as_bits(separate)
