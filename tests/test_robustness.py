"""Concurrency, interrupts, non-finite values, long runs and buffers past 2**31 bytes."""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import rmsprop_ext
from conftest import HAS_TORCH

N = 1 << 20


def reference_run(seed: int, steps: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    param, grad = (
        rng.standard_normal(N).astype(np.float32),
        rng.standard_normal(N).astype(np.float32),
    )
    square_avg = np.zeros_like(param)
    for _ in range(steps):
        rmsprop_ext.rmsprop_step(param, grad, square_avg, lr=1e-3)
    return param


# How many times `interrupt` ran since it was last reset: an interrupt raised where the interpreter
# cannot propagate it (a garbage-collector callback, a finalizer) is swallowed, and only this count
# tells that the timer did fire. `alarm_held_back` pauses automatic collection, the common case.
INTERRUPTS = [0]


def interrupt(*_: object) -> None:
    """What Python's SIGINT handler does; raised from a timer so the test does not depend on how
    SIGINT is disposed (a background CI job inherits it ignored, and Python then never raises)."""
    INTERRUPTS[0] += 1
    raise KeyboardInterrupt


@contextlib.contextmanager
def alarm_held_back() -> Iterator[None]:
    """SIGALRM raises KeyboardInterrupt, but only inside `interrupted_within`'s guarded call.

    Outside it the signal stays blocked, so a timer that fires late (a loaded machine, a slow
    sanitizer build) waits as pending instead of raising outside the test's `try`; on the way out
    a pending alarm is discarded (setting SIG_IGN drops it) before the old handler returns.
    Automatic garbage collection is paused meanwhile: hypothesis times collections with a
    `gc.callbacks` entry, and a KeyboardInterrupt raised inside it would be swallowed and reported
    as an unraisable exception instead of reaching the test.
    """
    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        signal.signal(signal.SIGALRM, previous)


def interrupted_within(delay: float, body: Callable[[], object]) -> bool:
    """Runs body() with a timer that raises KeyboardInterrupt after `delay` seconds; True when it
    did. Needs `alarm_held_back`: the signal is unblocked only around body(), and blocking it again
    runs any handler already due (pthread_sigmask checks for signals), still inside the `try`."""
    INTERRUPTS[0] = 0
    signal.setitimer(signal.ITIMER_REAL, delay)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        body()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    except KeyboardInterrupt:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        return True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return False


def test_threads_calling_at_once_get_exactly_the_single_threaded_results() -> None:
    expected = [reference_run(seed, 20) for seed in range(4)]
    results: list[np.ndarray | None] = [None] * 4

    def work(seed: int) -> None:
        results[seed] = reference_run(seed, 20)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a concurrent update did not finish (deadlock?)"
    for got, want in zip(results, expected):
        assert got is not None and np.array_equal(got, want)


def test_an_update_that_starts_during_another_stays_serial() -> None:
    from rmsprop_ext import _core

    big = [np.ones(1 << 27, np.float32) for _ in range(3)]  # one call of tens of milliseconds
    small = [np.ones(N, np.float32) for _ in range(3)]
    worker = threading.Thread(target=rmsprop_ext.rmsprop_step, args=big, kwargs={"lr": 1e-3})
    worker.start()
    deadline = time.monotonic() + 10
    while _core._updates_in_flight() == 0 and time.monotonic() < deadline:
        pass  # wait until the long update is inside the kernel
    # The long update may already be over here (the scheduler owes this thread nothing), so
    # whether the small one ran inside it is read around it, not assumed.
    busy_before = _core._updates_in_flight() == 1
    rmsprop_ext.rmsprop_step(*small, lr=1e-3, num_threads=2)
    threads_while_busy = rmsprop_ext.last_num_threads()
    still_busy = busy_before and _core._updates_in_flight() == 1
    worker.join()
    if still_busy:  # the small update ran entirely inside the long one
        assert threads_while_busy == 1  # no second team on cores that are already busy
    rmsprop_ext.rmsprop_step(*small, lr=1e-3, num_threads=2)
    assert rmsprop_ext.last_num_threads() == 2  # alone again: a full team
    del big


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")
@pytest.mark.skipif(sys.platform == "win32", reason="SIGALRM timers are POSIX")
# a KeyboardInterrupt swallowed where it cannot propagate is reported as unraisable; the loop below
# re-arms the timer for it, so it is expected here and not an error
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_keyboard_interrupt_during_steps_leaves_the_optimizer_consistent() -> None:
    import torch

    p = torch.nn.Parameter(torch.ones(1 << 23))
    p.grad = torch.full_like(p, 0.5)
    opt = rmsprop_ext.RMSprop([p], lr=1e-3)
    opt.step()  # state exists; the interrupts below land in ordinary steps

    def steps_until_interrupted() -> None:
        for _ in range(100_000):  # minutes of steps: the 2 ms timer always fires first
            opt.step()
            if INTERRUPTS[0]:  # it fired, but its KeyboardInterrupt was swallowed: once more
                INTERRUPTS[0] = 0
                signal.setitimer(signal.ITIMER_REAL, 0.002)
        raise AssertionError("the timer never fired")

    with alarm_held_back():
        interrupted = sum(interrupted_within(0.002, steps_until_interrupted) for _ in range(5))
    assert interrupted == 5
    assert torch.is_grad_enabled()  # no interrupt left autograd switched off
    steps = int(opt.state[p]["step"].item())
    # Every element moved exactly `steps` times: no half-applied update, no uncounted one.
    ref = torch.ones(8)
    ref_p = torch.nn.Parameter(ref)
    ref_opt = rmsprop_ext.RMSprop([ref_p], lr=1e-3)
    for _ in range(steps):
        ref_p.grad = torch.full_like(ref_p, 0.5)
        ref_opt.step()
    assert torch.all(p == ref_p[0]).item()
    opt.step()  # and it still works
    assert int(opt.state[p]["step"].item()) == steps + 1


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")
def test_non_finite_gradients_propagate_like_torch() -> None:
    import torch

    grad = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 0.5])
    ours, theirs = torch.nn.Parameter(torch.ones(5)), torch.nn.Parameter(torch.ones(5))
    opt_ours, opt_theirs = (
        rmsprop_ext.RMSprop([ours], momentum=0.9),
        torch.optim.RMSprop([theirs], momentum=0.9),
    )
    for _ in range(2):
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        opt_ours.step()
        opt_theirs.step()
    torch.testing.assert_close(ours, theirs, equal_nan=True)
    assert torch.isnan(ours[1]) and torch.isnan(ours[2])  # documented: NaN propagates, as in torch


def test_zero_size_buffers_are_accepted_and_untouched() -> None:
    empty = [np.empty(0, np.float32) for _ in range(3)]
    rmsprop_ext.rmsprop_step(*empty, lr=0.1)
    rmsprop_ext.rmsprop_step_many([empty[0]], [empty[1]], [empty[2]], lr=0.1)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_ten_thousand_steps_allocate_nothing_and_leak_nothing() -> None:
    rng = np.random.default_rng(0)
    buffers = [rng.standard_normal(4096).astype(np.float32) for _ in range(4)]
    buffers[2] = np.abs(buffers[2])
    opt = rmsprop_ext.NumpyRMSprop([buffers[0]], lr=1e-4, momentum=0.9)
    grads = [buffers[1]]

    def run(steps: int) -> None:
        for _ in range(steps):
            rmsprop_ext.rmsprop_step(buffers[0], buffers[1], buffers[2], lr=1e-5)
            opt.step(grads)

    run(1000)  # warm-up: lazy imports, caches, allocator pools
    gc.collect()
    refcounts = [sys.getrefcount(b) for b in buffers]
    before = rss_kib()
    run(10_000)
    gc.collect()
    assert rss_kib() - before <= 1024, "resident memory grew by more than 1 MiB"
    assert [sys.getrefcount(b) for b in buffers] == refcounts


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_ten_thousand_optimizer_steps_keep_memory_flat() -> None:
    import torch

    params = [torch.nn.Parameter(torch.randn(1000)) for _ in range(5)]
    for p in params:
        p.grad = torch.randn(1000)
    opt = rmsprop_ext.RMSprop(params, lr=1e-5, momentum=0.9, centered=True)
    for _ in range(1000):
        opt.step()
    gc.collect()
    refcounts = [sys.getrefcount(p) for p in params]
    before = rss_kib()
    for _ in range(10_000):
        opt.step()
    gc.collect()
    assert rss_kib() - before <= 1024
    assert [sys.getrefcount(p) for p in params] == refcounts


def test_buffers_past_two_to_the_31_bytes_are_indexed_with_64_bits() -> None:
    n = (1 << 29) + 17  # float32: 2 GiB + 68 bytes per buffer
    param = np.full(n, 1.0, np.float32)
    grad = np.full(n, 0.5, np.float32)
    grad[-1] = -2.0  # the very last element, past 2**31 bytes, gets its own value
    square_avg = np.zeros(n, np.float32)
    rmsprop_ext.rmsprop_step(param, grad, square_avg, lr=0.1, alpha=0.9)
    for index, g in ((0, 0.5), ((1 << 29) - 1, 0.5), (1 << 29, 0.5), (n - 1, -2.0)):
        s = 0.1 * g * g
        assert square_avg[index] == pytest.approx(s, rel=1e-6)
        assert param[index] == pytest.approx(1.0 - 0.1 * g / (np.sqrt(s) + 1e-8), rel=1e-6)
    del param, grad, square_avg


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")
@pytest.mark.skipif(sys.platform == "win32", reason="SIGALRM timers are POSIX")
# a swallowed interrupt (see INTERRUPTS) is one of the outcomes this test accepts: not interrupted
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_interrupted_first_step_leaves_no_half_built_state() -> None:
    import torch

    with alarm_held_back():
        for delay in (0.0002, 0.0005, 0.001, 0.002):
            p = torch.nn.Parameter(torch.ones(1 << 22))
            p.grad = torch.full_like(p, 0.5)
            opt = rmsprop_ext.RMSprop([p], momentum=0.9, centered=True)
            interrupted_within(delay, opt.step)  # or the alarm comes late and is dropped
            assert torch.is_grad_enabled()  # no interrupt left autograd switched off
            state = opt.state.get(p, {})
            assert set(state) in (set(), {"step", "square_avg", "momentum_buffer", "grad_avg"})
            opt.step()  # usable either way
            assert set(opt.state[p]) == {"step", "square_avg", "momentum_buffer", "grad_avg"}
