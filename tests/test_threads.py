"""The thread count asked for is the one the update runs on, whichever way it is asked."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import rmsprop_ext
from conftest import HAS_TORCH

LARGE = 1 << 20  # above the serial threshold


@pytest.fixture(autouse=True)
def default_threads() -> Iterator[None]:
    yield
    rmsprop_ext.set_num_threads(0)


def one_step(n: int = LARGE, **kwargs: int) -> int:
    x, g, s = (np.ones(n, np.float32) for _ in range(3))
    rmsprop_ext.rmsprop_step(x, g, s, lr=1e-3, **kwargs)
    return rmsprop_ext.last_num_threads()


def test_set_num_threads_and_per_call_count_are_honoured() -> None:
    rmsprop_ext.set_num_threads(1)
    assert one_step() == 1
    rmsprop_ext.set_num_threads(2)
    assert one_step() == 2
    assert one_step(num_threads=1) == 1  # a per-call count wins
    with pytest.raises(ValueError, match="num_threads"):
        rmsprop_ext.set_num_threads(-1)


def test_small_updates_stay_on_one_thread() -> None:
    rmsprop_ext.set_num_threads(2)
    assert one_step(n=1000) == 1


def test_omp_num_threads_is_honoured() -> None:
    code = (
        "import numpy as np, rmsprop_ext\n"
        "x, g, s = (np.ones(1 << 20, np.float32) for _ in range(3))\n"
        "rmsprop_ext.rmsprop_step(x, g, s, lr=1e-3)\n"
        "print(rmsprop_ext.get_num_threads(), rmsprop_ext.last_num_threads())\n"
    )
    for threads in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": threads},
        ).stdout.split()
        assert out == [threads, threads]


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")
def test_torch_optimizer_follows_torch_set_num_threads_unless_set_explicitly() -> None:
    import torch

    previous = torch.get_num_threads()
    p = torch.nn.Parameter(torch.randn(LARGE))
    p.grad = torch.randn(LARGE)
    opt = rmsprop_ext.RMSprop([p])
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            opt.step()  # the general path, then the prepared one
            opt.step()
            assert rmsprop_ext.last_num_threads() == threads
        rmsprop_ext.set_num_threads(2)
        opt.step()
        assert rmsprop_ext.last_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
