"""The convergence benchmark's summary table and plot."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np

from .common import ConvergeResult

__all__ = ["summary", "write_plot"]

HEADLINES = {
    "airfoil": "airfoil (d2l train_ch11 protocol; the book reports 0.244)",
    "charlm": "character transformer LM on stdlib source (held-out nats/char)",
    "embeddings": "skip-gram word vectors on stdlib source (held-out negative-sampling loss)",
}
X_AXES = {"airfoil": "epoch", "charlm": "step", "embeddings": "step"}


def _by_run(results: Sequence[ConvergeResult]) -> dict[str, list[ConvergeResult]]:
    by_run: dict[str, list[ConvergeResult]] = {}
    for r in results:
        by_run.setdefault(r.run, []).append(r)
    return by_run


def fp32_band(finals: Sequence[float]) -> tuple[float, float]:
    """The target for low-precision runs: the spread of the float32 seeds or 1% of their mean,
    whichever is wider."""
    mean = statistics.mean(finals)
    return min(min(finals), mean * 0.99), max(max(finals), mean * 1.01)


def summary(results: Sequence[ConvergeResult]) -> list[str]:
    """Per task, final losses per run (mean and range over seeds), and each bfloat16 run against
    the float32 band of rmsprop_ext's float32 runs: its mean over its seeds (one run of a form
    against the range of three float32 seeds would fall outside half the time by chance alone,
    like a fourth float32 seed), and its mean difference from float32 on the same seeds."""
    lines: list[str] = []
    for task in dict.fromkeys(r.task for r in results):
        by_run = _by_run([r for r in results if r.task == task])
        fp32_runs = by_run.get("rmsprop_ext fp32", [])
        fp32 = [r.final for r in fp32_runs]
        fp32_by_seed = {r.seed: r.final for r in fp32_runs}
        band = fp32_band(fp32) if fp32 else None
        seeds = len(fp32) or len(next(iter(by_run.values())))
        lines.append(f"{HEADLINES.get(task, task)}: final loss, mean [min-max] over {seeds} seeds")
        for run, runs in by_run.items():
            finals = [r.final for r in runs]
            verdict = ""
            if "bf16" in run and band:
                inside = band[0] <= statistics.mean(finals) <= band[1]
                verdict = (
                    "  mean within the fp32 band" if inside else "  mean OUTSIDE the fp32 band"
                )
                paired = [r.final - fp32_by_seed[r.seed] for r in runs if r.seed in fp32_by_seed]
                if paired:
                    verdict += f", {statistics.mean(paired):+.4f} vs fp32 on the same seeds"
            step_ms = [r.step_ms for r in runs if r.step_ms]
            if step_ms:
                verdict += f"  step {statistics.median(step_ms):.2f} ms"
            lines.append(
                f"  {run:42} {statistics.mean(finals):.4f} [{min(finals):.4f}-{max(finals):.4f}]"
                f"{verdict}"
            )
        if band:
            lines.append(
                f"  fp32 band: [{band[0]:.4f}, {band[1]:.4f}] (seed spread or 1% of the mean)"
            )
        lines += _sparse_against_dense(by_run)
    return lines


def _sparse_against_dense(by_run: dict[str, list[ConvergeResult]]) -> list[str]:
    """For runs with sparse gradients: the largest difference of their losses from the dense
    rmsprop_ext run's, at every evaluation point of the same seeds."""
    dense = {r.seed: r.losses for r in by_run.get("rmsprop_ext, dense", [])}
    lines = []
    for run, runs in by_run.items():
        if "sparse" not in run or not dense:
            continue
        gaps = [
            abs(a - b)
            for r in runs
            if r.seed in dense
            for a, b in zip(r.losses, dense[r.seed])
            if math.isfinite(a) and math.isfinite(b)
        ]
        if gaps:
            lines.append(f"  {run}: largest |loss - dense loss| at any point {max(gaps):.2e}")
    return lines


def write_plot(
    results: Sequence[ConvergeResult], path: str, steps_per_point: dict[str, float]
) -> None:
    """Loss curves (mean over seeds) of every run, one panel per task, as a PNG.
    `steps_per_point` gives each task's x distance between two losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r.task for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(8 * len(tasks), 5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for run, runs in _by_run([r for r in results if r.task == task]).items():
            mean = np.mean(np.array([r.losses for r in runs]), axis=0)
            ax.plot(np.arange(len(mean)) * steps_per_point.get(task, 1.0), mean, label=run)
        ax.set_xlabel(X_AXES.get(task, "step"))
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.set_title(HEADLINES.get(task, task), fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
