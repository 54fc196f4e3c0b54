"""Run by test_mkl_paths.py in a process whose environment sends MKL down one code path: prints,
as JSON, the square roots the probe found, how many of the active kernel's MKL square roots differ
from MKL's own (float32 on whole binades, float64 on samples), and how many elements of
rmsprop_ext's float32 and float64 steps differ from torch.optim.RMSprop's, with torch's rounding
and with IEEE square roots."""

from __future__ import annotations

import json

import numpy as np
import rmsprop_ext
import torch
from rmsprop_ext import _core, _rounding


def float32_patterns(first: int, last: int) -> np.ndarray:
    return np.arange(first, last, dtype=np.uint32).view(np.float32)


def float32_samples(rng: np.random.Generator) -> list[np.ndarray]:
    """Every float32 of [1/4, 4), the subnormals and the top binade up to +inf, then random bit
    patterns (signs and NaNs included)."""
    return [
        float32_patterns(0x3E800000, 0x40800000),
        float32_patterns(0, 0x00800000),
        float32_patterns(0x7F000000, 0x7F800001),
        rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32),
    ]


def float64_samples(rng: np.random.Generator) -> list[np.ndarray]:
    """Random float64 of [1/4, 4), subnormals, the top binade, and random bit patterns (signs
    and NaNs included), with the boundaries of MKL's ordinary range."""
    edges = np.array(
        [0x0010000000000000, 0x000FFFFFFFFFFFFF, 0x7FCFFFFFFFFFFFFF, 0x7FD0000000000000, 0x0],
        dtype=np.uint64,
    )
    return [
        rng.integers(0x3FD0000000000000, 0x4010000000000000, 1 << 20, dtype=np.uint64),
        rng.integers(0, 0x0010000000000000, 1 << 16, dtype=np.uint64),
        rng.integers(0x7FE0000000000000, 0x7FF0000000000001, 1 << 16, dtype=np.uint64),
        rng.integers(0, 1 << 64, 1 << 20, dtype=np.uint64),
        edges,
    ]


def differing_roots(form: str, dtype: str) -> int:
    """Values whose square root `form`, as the active kernel computes it, differs from MKL's
    function as torch calls it (float32_samples, float64_samples)."""
    rng = np.random.default_rng(11)
    if dtype == "float32":
        address, unsigned = _rounding._mkl_sqrt_functions()[0], np.uint32
        samples = float32_samples(rng)
    else:
        address, unsigned = _rounding._mkl_sqrt_functions()[1], np.uint64
        samples = [bits.view(np.float64) for bits in float64_samples(rng)]
    return sum(
        int(
            np.count_nonzero(
                _core._mkl_sqrt(form, v).view(unsigned)
                != _rounding._vml_sqrt(address, v).view(unsigned)
            )
        )
        for v in samples
    )


def differing_elements(rounding: str, dtype: torch.dtype, **options: float) -> int:
    """Elements of the parameters and state after 3 steps of rmsprop_ext.RMSprop that differ
    from torch.optim.RMSprop's, on 65539 elements (vector body and tail), some state zero and some
    below 2^-107, the only radicands whose root MKL's AVX2 path rounds apart from IEEE."""
    generator = torch.Generator().manual_seed(5)
    start = torch.randn(65539, generator=generator, dtype=dtype)
    grads = [torch.randn(65539, generator=generator, dtype=dtype) for _ in range(3)]
    grads[0][:64] = 0.0  # zero square averages: a radicand MKL takes apart
    for grad in grads:
        grad[1000:3000] *= 1e-17
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    mine = rmsprop_ext.RMSprop([ours], lr=0.01, rounding=rounding, **options)
    reference = torch.optim.RMSprop([theirs], lr=0.01, foreach=False, **options)
    for grad in grads:
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        mine.step()
        reference.step()
    pairs = [(ours.detach(), theirs.detach())]
    pairs += [(mine.state[ours][k], reference.state[theirs][k]) for k in reference.state[theirs]]
    return sum(int((a != b).sum()) for a, b in pairs)


def main() -> None:
    forms = _rounding.torch_square_roots()
    report: dict[str, object] = {"forms": forms, "isa": rmsprop_ext.get_isa()}
    report["differing_roots"] = {
        dtype: differing_roots(form, dtype)
        for dtype, form in forms.items()
        if form in _rounding.MKL_SQUARE_ROOTS
    }
    option_sets = [{}, {"momentum": 0.9, "centered": True, "weight_decay": 0.01}, {"eps": 1e-30}]
    for rounding, key in (("torch", "torch_rounding"), ("fused", "ieee_rounding")):
        report[key] = {
            str(dtype).removeprefix("torch."): [
                differing_elements(rounding, dtype, **o) for o in option_sets
            ]
            for dtype in (torch.float32, torch.float64)
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
