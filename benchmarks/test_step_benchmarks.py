"""The measurements of `python -m rmsprop_ext bench` as pytest-benchmark cases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rmsprop_ext import bench

torch = pytest.importorskip("torch")

SIZES = [1 << 16, 1 << 20, 1 << 24]
THREADS = torch.get_num_threads()


def run(benchmark: Any, step: Callable[[], Any]) -> None:
    step()  # lazy state and page faults before timing
    benchmark(step)


@pytest.mark.parametrize("variant", list(bench.VARIANTS))
@pytest.mark.parametrize("n", SIZES)
def test_native_functional(benchmark: Any, n: int, variant: str) -> None:
    run(benchmark, bench.native_functional(n, variant, THREADS))


@pytest.mark.parametrize("variant", list(bench.VARIANTS))
@pytest.mark.parametrize("n", SIZES)
def test_roofline_kernel(benchmark: Any, n: int, variant: str) -> None:
    run(benchmark, bench.roofline(n, variant, THREADS))


@pytest.mark.parametrize("n", SIZES)
def test_native_optimizer(benchmark: Any, n: int) -> None:
    run(benchmark, bench.ours_optimizer(1, n, "plain"))


@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("n", SIZES)
def test_torch_rmsprop(benchmark: Any, n: int, foreach: bool) -> None:
    run(benchmark, bench.torch_rmsprop(1, n, "plain", foreach))


@pytest.mark.parametrize("n", SIZES)
def test_torch_fused_adagrad(benchmark: Any, n: int) -> None:
    run(benchmark, bench.torch_fused_adagrad(1, n, "plain"))


@pytest.mark.parametrize("n", SIZES)
def test_numpy_scratch(benchmark: Any, n: int) -> None:
    run(benchmark, bench.numpy_scratch(n, "plain", THREADS))


@pytest.mark.parametrize("count,n", [(1000, 1 << 14), (100, 4096)])
def test_many_tensors_native(benchmark: Any, count: int, n: int) -> None:
    run(benchmark, bench.ours_optimizer(count, n, "plain"))


@pytest.mark.parametrize("count,n", [(1000, 1 << 14), (100, 4096)])
def test_many_tensors_torch_foreach(benchmark: Any, count: int, n: int) -> None:
    run(benchmark, bench.torch_rmsprop(count, n, "plain", True))
