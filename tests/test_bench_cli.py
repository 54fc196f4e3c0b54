"""The benchmark CLI runs end to end (tiny sizes: this checks it works, it measures nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HIDE_TORCH
from rmsprop_ext.__main__ import main

TINY = [
    "bench",
    "--sizes",
    "4096",
    "--variant-size",
    "4096",
    "--many",
    "4",
    "1024",
    "--small-model",
    "4",
    "256",
    "--scaling-sizes",
    "4096",
    "--sparse-table",
    "4096",
    "16",
    "256",
    "--repeat",
    "3",
    "--no-progress",
]


@pytest.mark.spread_over_isas  # the whole benchmark, every section
def test_bench_writes_tables_json_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert main([*TINY, "--json", str(out_json), "--plot", str(out_png)]) == 0
    printed = capsys.readouterr().out
    for heading in (
        "Single float32 tensor of 4,096",
        "Variant 'centered' (28 B/element)",
        "Variant 'momentum+centered' (36 B/element)",
        "Many tensors",
        "Small model",
        "Threads, 4,096",
        "Sparse embedding gradients",
        "Storage forms, 1,048,576 elements",
        "Summary",
    ):
        assert heading in printed
    # Every table names the kernel it ran on (and torch's square root, with torch).
    from rmsprop_ext import get_isa

    titles = [line for line in printed.splitlines() if line.startswith(("Single", "Storage"))]
    assert titles and all(f"[{get_isa()} kernel" in title for title in titles)
    from rmsprop_ext import bench

    can_choose_pages = bench.cases._numpy_hugepage_switch() is not None
    assert ("Memory pages" in printed) == (
        can_choose_pages and bench.transparent_huge_pages() != "never"
    )
    data = json.loads(out_json.read_text())
    names = {row["implementation"] for row in data["rows"]}
    assert {
        "roofline kernel",
        "native rmsprop_step",
        "numpy scratch formula",
        "Python scalar loop",
    } <= names
    if "torch" in sys.modules:
        assert {"torch RMSprop foreach", "torch fused Adagrad", "native RMSprop.step"} <= names
        # Each storage form beside the roofline of its own bytes, and torch's bf16 step.
        assert {"roofline bf16/bf16", "roofline bf16/fp32", "roofline fp32/8bit"} <= names
        assert {"torch RMSprop bf16", "native bf16/bf16 momentum+centered"} <= names
        assert "of its roofline" in printed
        if bench.inductor_available():
            assert {"torch RMSprop compiled", "torch RMSprop bf16 compiled"} <= names
        import torch

        capability = torch.backends.cpu.get_cpu_capability().lower()
        assert all(f"torch {capability}, torch sqrt" in title for title in titles)
        assert data["torch_isa"] == capability
    assert all(
        row["median_s"] > 0 and row["min_s"] <= row["median_s"] <= row["max_s"]
        for row in data["rows"]
    )
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_info_names_the_instruction_set_torch_runs() -> None:
    # torch's kernels and inductor's C++ follow ATEN_CPU_CAPABILITY: every CPU with AVX2 can run
    # torch's avx2 kernels, which is how the peers are timed as on an AVX2-only CPU.
    pytest.importorskip("torch")
    result = subprocess.run(
        [sys.executable, "-m", "rmsprop_ext", "info"],
        capture_output=True,
        text=True,
        env={**os.environ, "ATEN_CPU_CAPABILITY": "default"},
        check=True,
    )
    assert "torch_isa      default" in result.stdout.splitlines()


def test_bench_runs_without_torch() -> None:
    code = (
        "import sys\n" + HIDE_TORCH["not_installed"] + "from rmsprop_ext.__main__ import main\n"
        f"sys.exit(main({TINY!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "torch is not installed: the torch peers were skipped" in result.stdout
    assert "native rmsprop_step" in result.stdout and "torch RMSprop" not in result.stdout


@pytest.mark.parametrize("variant", ["plain", "momentum", "centered", "momentum+centered"])
def test_every_implementation_of_a_group_steps_on_the_same_memory(variant: str) -> None:
    torch = pytest.importorskip("torch")
    from rmsprop_ext import bench

    n = 4096
    try:
        steps = {
            "ours": bench.ours_optimizer(1, n, variant),
            "torch for-loop": bench.torch_rmsprop(1, n, variant, False),
            "torch foreach": bench.torch_rmsprop(1, n, variant, True),
        }
        if variant == "plain":
            steps["fused Adagrad"] = bench.torch_fused_adagrad(1, n, variant)
        arrays = bench.cases._arrays(n, 3 + len(bench.VARIANTS[variant][0]))
        expected = [a.ctypes.data for a in arrays]
        for name, step in steps.items():
            opt = step.__self__
            (p,) = opt.param_groups[0]["params"]
            state = opt.state[p]
            keys = ["sum"] if name == "fused Adagrad" else ["square_avg"]
            keys += [k for k in ("momentum_buffer", "grad_avg") if k in state]
            found = [p.data_ptr(), p.grad.data_ptr(), *(state[k].data_ptr() for k in keys)]
            assert found == expected, name
            step()  # and the optimizer still steps on them
            assert torch.isfinite(p).all()
    finally:
        bench.release_shared_buffers()


def test_each_round_runs_every_case_once_in_a_new_order() -> None:
    from rmsprop_ext.bench import time_interleaved

    calls: list[int] = []
    k, rounds = 4, 12
    steps = [lambda i=i: calls.append(i) for i in range(k)]
    times = time_interleaved(steps, repeat=rounds, budget_s=60.0, inner=1, min_rounds=rounds)
    assert [len(t) for t in times] == [rounds] * k
    timed = calls[2 * k :]  # after two warm-up steps of each case
    orders = [timed[r * 2 * k : (r + 1) * 2 * k : 2] for r in range(rounds)]
    assert all(sorted(order) == list(range(k)) for order in orders)
    # Run back to back, no case always follows the same one.
    sequence = [i for order in orders for i in order]
    for case in range(k):
        before = {a for a, b in zip(sequence, sequence[1:]) if b == case}
        assert len(before) > 1, case


def test_ratios_are_taken_round_by_round() -> None:
    from rmsprop_ext.bench import Measurement
    from rmsprop_ext.bench.report import _ratio

    def row(samples: list[float]) -> Measurement:
        ordered = sorted(samples)
        return Measurement(
            "sizes", "x", "plain", 1, 1, 1, 20, ordered[len(ordered) // 2], ordered[0],
            ordered[-1], len(samples), "", samples,
        )  # fmt: skip

    # The machine halves its speed in the second round: both cases slow down alike.
    slow, fast = row([2.0, 4.0, 2.0]), row([1.0, 2.0, 1.0])
    assert _ratio(slow, fast) == "2.00x [2.00-2.00]"
    # Without common rounds: the ratio of the medians, and of the extremes for the range.
    assert _ratio(row([2.0, 4.0]), fast) == "4.00x [1.00-4.00]"
