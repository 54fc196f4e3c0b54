"""The implementations the benchmark times, each a step function over buffers shared by the
cases of a group."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _core, reference
from ..functional import rmsprop_step
from .config import ALPHA, LR, PYTHON_LOOP_SAMPLE, VARIANTS, StepFn, torch_available

# Buffers shared by every case of one group: the roofline kernel, the native calls, each torch
# optimizer (its parameter, gradient and state) and the Python formulas all step on the very same
# memory, so no case gains or loses by where (or on what pages) its own buffers would sit.
_SHARED: dict[int, list[np.ndarray]] = {}

CACHE_LINE_BYTES = 64
PAGE_BYTES = 4096

# A variant's state past square_avg: (its option, the buffer's RMSprop name), in the order
# torch's first step makes them.
EXTRA_STATE = (("momentum", "momentum_buffer"), ("centered", "grad_avg"))


def _aligned(n: int) -> np.ndarray:
    """n float32 starting one cache line into a page and spanning what torch's allocator maps for
    n float32 (its 64-byte alignment included), so that buffers allocated one after another lie
    as torch's tensors do: each mapped on its own, its size plus 4 KiB below the one before.

    numpy's heap packs smaller arrays a few bytes apart beyond their size, and a written buffer
    that starts just above a read one slows every kernel's loop (docs/storage_speed.md, "Buffers
    that start just above each other"). A page more per buffer, as this function took before,
    put 16M-element buffers 2^26 + 2^13 bytes apart, where Zen's L1 evicts the lines of
    neighbouring buffers for each other ("Lines that evict each other"); torch's 16M-element
    tensors lie 2^26 + 2^12 apart, where it does not."""
    raw = np.empty(n + CACHE_LINE_BYTES // 4, dtype=np.float32)
    skip = ((CACHE_LINE_BYTES - raw.ctypes.data) % PAGE_BYTES) // 4
    if skip > CACHE_LINE_BYTES // 4:  # not where glibc maps large blocks: pad a page instead
        raw = np.empty(n + (PAGE_BYTES + CACHE_LINE_BYTES) // 4, dtype=np.float32)
        skip = ((CACHE_LINE_BYTES - raw.ctypes.data) % PAGE_BYTES) // 4
    return raw[skip : skip + n]


def _arrays(n: int, count: int) -> list[np.ndarray]:
    """param, grad, square_avg and `count - 3` more state buffers (momentum_buffer or grad_avg,
    zero) of n float32: the group's shared set, grown when a case needs more buffers."""
    arrays = _SHARED.setdefault(n, [])
    rng = np.random.default_rng(len(arrays))
    while len(arrays) < count:
        a = _aligned(n)
        if len(arrays) < 3:
            a[:] = rng.standard_normal(n, dtype=np.float32)
        else:
            a[:] = 0.0
        if len(arrays) == 2:
            np.abs(a, out=a)  # square_avg >= 0
        arrays.append(a)
    return arrays[:count]


def release_shared_buffers() -> None:
    _SHARED.clear()


def _extra_state(variant: str, extra: Sequence[Any]) -> dict[str, Any]:
    """The variant's extra state buffers by their RMSprop names (momentum_buffer, then grad_avg,
    the order torch's first step makes them), taken from the buffers _arrays returns past
    square_avg."""
    options, _ = VARIANTS[variant]
    names = [name for option, name in EXTRA_STATE if option in options]
    return dict(zip(names, extra))


def _params_on_shared_memory(
    count: int, n: int, variant: str = "plain"
) -> tuple[list[Any], dict[str, Any]]:
    """count parameters of n elements, with gradients, that are views of the group's shared flat
    param and grad of count * n elements; returns them and the shared RMSProp state by name."""
    import torch

    options, _ = VARIANTS[variant]
    param, grad, square_avg, *extra = map(torch.from_numpy, _arrays(count * n, 3 + len(options)))
    params = [torch.nn.Parameter(param[i * n : (i + 1) * n]) for i in range(count)]
    for i, p in enumerate(params):
        p.grad = grad[i * n : (i + 1) * n]
    return params, {"square_avg": square_avg, **_extra_state(variant, extra)}


def _share_state(opt: Any, state: dict[str, Any], n: int) -> None:
    """Points the optimizer's per-parameter state at views of the shared buffers: after one
    step (which builds the state), every optimizer updates the same state memory."""
    opt.step()
    for group in opt.param_groups:
        for i, p in enumerate(group["params"]):
            for key, buffer in state.items():
                if key not in opt.state[p]:
                    raise KeyError(f"{type(opt).__name__} keeps no {key!r} state")
                opt.state[p][key] = buffer[i * n : (i + 1) * n]
    if hasattr(opt, "_plans"):
        opt._plans = []  # rmsprop_ext prepares its step again, over the new state


def ours_on_shared_memory(count: int, n: int, variant: str = "plain") -> StepFn:
    """rmsprop_ext.RMSprop over `count` parameters of `n` elements that are views of the group's
    shared buffers: 1 x N and count x n then run on the very same memory, and their ratio shows
    the per-tensor overhead alone."""
    from ..optimizer import RMSprop

    params, state = _params_on_shared_memory(count, n, variant)
    opt = RMSprop(params, lr=LR, alpha=ALPHA, **VARIANTS[variant][0])
    _share_state(opt, state, n)
    return opt.step


def transparent_huge_pages() -> str:
    """The kernel's THP mode ("always", "madvise", "never"), or "" where it cannot be read."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return next(word[1:-1] for word in f.read().split() if word.startswith("["))
    except (OSError, StopIteration):
        return ""


def _numpy_hugepage_switch() -> Callable[[bool], bool] | None:
    """numpy's switch for madvise(MADV_HUGEPAGE) on its large allocations (on by default on
    Linux), or None where this numpy has none."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            switch = getattr(__import__(module, fromlist=["_"]), "_set_madvise_hugepage", None)
        except ImportError:
            continue
        if switch is not None:
            return switch  # type: ignore[no-any-return]
    return None


def native_on_pages(n: int, huge: bool, threads: int) -> StepFn:
    """The native step on its own param, grad and square_avg, backed by 2 MiB transparent huge
    pages (what numpy asks for, and torch with THP_MEM_ALLOC_ENABLE=1) or by 4 KiB pages (what
    torch's allocator gets by default)."""
    switch = _numpy_hugepage_switch()
    assert switch is not None
    previous = switch(huge)
    try:
        x, g, s = (_aligned(n) for _ in range(3))
    finally:
        switch(previous)
    rng = np.random.default_rng(0)
    for a in (x, g, s):
        a[:] = rng.standard_normal(n, dtype=np.float32)
    np.abs(s, out=s)
    return lambda: rmsprop_step(x, g, s, lr=LR, alpha=ALPHA, num_threads=threads)


def native_functional(n: int, variant: str, threads: int, rounding: str = "torch") -> StepFn:
    options, _ = VARIANTS[variant]
    x, g, s, *extra = _arrays(n, 3 + len(options))
    state = _extra_state(variant, extra)

    def step() -> None:
        rmsprop_step(
            x, g, s, lr=LR, alpha=ALPHA, num_threads=threads, rounding=rounding, **options, **state
        )

    return step


def roofline(n: int, variant: str, threads: int) -> StepFn:
    options, _ = VARIANTS[variant]
    x, g, s, *extra = _arrays(n, 3 + len(options))
    state = _extra_state(variant, extra)
    momentum = [state["momentum_buffer"]] if "momentum_buffer" in state else None
    centered = [state["grad_avg"]] if "grad_avg" in state else None

    def step() -> None:
        _core.roofline_step_many(
            [x],
            [g],
            [s],
            momentum,
            centered,
            momentum=options.get("momentum", 0.0),
            centered=options.get("centered", False),
            num_threads=threads,
        )

    return step


def numpy_scratch(n: int, variant: str, threads: int) -> StepFn:
    x, g, s = _arrays(n, 3)
    hyper = {"lr": LR, "gamma": ALPHA}
    return lambda: reference.rmsprop_numpy([(x, g)], [s], hyper)


def python_loop(n: int, variant: str, threads: int) -> StepFn:
    """The scalar textbook formula in a Python loop over PYTHON_LOOP_SAMPLE elements."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(PYTHON_LOOP_SAMPLE).tolist()
    g = rng.standard_normal(PYTHON_LOOP_SAMPLE).tolist()
    s = [0.0] * PYTHON_LOOP_SAMPLE
    eps = reference.TEXTBOOK_EPS

    def step() -> None:
        for i in range(PYTHON_LOOP_SAMPLE):
            s[i] = ALPHA * s[i] + (1 - ALPHA) * g[i] * g[i]
            x[i] -= LR * g[i] / math.sqrt(s[i] + eps)

    return step


def _torch_params(count: int, n: int) -> list[Any]:
    """count parameters of n elements with gradients, each allocated on its own."""
    import torch

    gen = torch.Generator().manual_seed(0)
    params = []
    for _ in range(count):
        p = torch.nn.Parameter(torch.randn(n, generator=gen))
        p.grad = torch.randn(n, generator=gen)
        params.append(p)
    return params


def ours_optimizer(count: int, n: int, variant: str) -> StepFn:
    """rmsprop_ext.RMSprop: on the shared buffers for one tensor, else on its own tensors."""
    from ..optimizer import RMSprop

    if count == 1:
        return ours_on_shared_memory(1, n, variant)
    return RMSprop(_torch_params(count, n), lr=LR, alpha=ALPHA, **VARIANTS[variant][0]).step


def torch_rmsprop(count: int, n: int, variant: str, foreach: bool) -> StepFn:
    import torch

    if count > 1:
        params = _torch_params(count, n)
        return torch.optim.RMSprop(
            params, lr=LR, alpha=ALPHA, foreach=foreach, **VARIANTS[variant][0]
        ).step
    params, state = _params_on_shared_memory(1, n, variant)
    opt = torch.optim.RMSprop(params, lr=LR, alpha=ALPHA, foreach=foreach, **VARIANTS[variant][0])
    _share_state(opt, state, n)
    return opt.step


def inductor_available() -> bool:
    """Whether torch.compile's inductor backend can build here: it compiles C++ with the
    system's compiler."""
    import shutil

    return torch_available() and any(shutil.which(cc) for cc in ("g++", "c++", "clang++"))


def compiled_step(step: Callable[[], Any]) -> StepFn:
    """torch.compile(step), compiled here by one call (before any timing); the step it returns
    carries the compile time as its `note`."""
    import torch

    with warnings.catch_warnings():
        # inductor's import calls torch's own deprecated torch.jit.script_method (torch 2.13)
        warnings.filterwarnings(
            "ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning
        )
        compiled = torch.compile(step)
        start = time.perf_counter()
        compiled()
        seconds = time.perf_counter() - start

    def run() -> None:
        compiled()

    run.note = f"torch.compile(opt.step); compiled in {seconds:.1f} s"  # type: ignore[attr-defined]
    return run


def torch_compiled_rmsprop(count: int, n: int, variant: str) -> StepFn:
    """torch.compile(opt.step) of torch.optim.RMSprop, as the PyTorch docs suggest for a faster
    optimizer: inductor generates one C++ loop for the whole step (see compiled_step)."""
    import torch

    params, state = _params_on_shared_memory(count, n, variant)
    opt = torch.optim.RMSprop(params, lr=LR, alpha=ALPHA, **VARIANTS[variant][0])
    _share_state(opt, state, n)
    return compiled_step(opt.step)


def torch_fused_adagrad(count: int, n: int, variant: str) -> StepFn:
    import torch

    if count > 1:
        return torch.optim.Adagrad(_torch_params(count, n), lr=LR, fused=True).step
    params, state = _params_on_shared_memory(1, n)
    opt = torch.optim.Adagrad(params, lr=LR, fused=True)
    # Adagrad's sum takes square_avg's memory: the same 20 bytes per element on the same buffers
    # as rmsprop_ext. One sums squares and the other averages them, so the values stay finite.
    _share_state(opt, {"sum": state["square_avg"]}, n)
    return opt.step


def torch_scratch(n: int, variant: str, threads: int) -> StepFn:
    (p,), state = _params_on_shared_memory(1, n)
    s = state["square_avg"]
    grad = p.grad.clone()
    hyper = {"lr": LR, "gamma": ALPHA}

    def step() -> None:
        reference.rmsprop_torch([p], [s], hyper)
        p.grad.copy_(grad)  # the textbook step zeroes the gradient; restore it

    return step
