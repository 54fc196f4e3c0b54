"""``python -m rmsprop_ext converge``: does training in fewer bytes converge like float32?

The chapter's own experiment, Dive into Deep Learning's airfoil self-noise regression
(``d2l.train_ch11``): the first 1500 rows of the data (shipped with the package, see
``data/CITATION.md``), standardised; a linear model with weights drawn from N(0, 0.01^2);
squared loss / 2; minibatches of 10, shuffled each epoch; 2 epochs; RMSProp with lr 0.01 and
gamma (alpha) 0.9; the loss on all 1500 rows every 200 examples. The book reports a final loss of
0.244 for its scratch and its concise (torch.optim.RMSprop) optimizer.

Every optimizer runs on the same seeds (model initialisation and shuffling): the textbook's
scratch step (``reference.rmsprop_torch``), torch.optim.RMSprop and rmsprop_ext.RMSprop in
float32, and pure bfloat16 training (model, data and gradients in bfloat16) with each state form
and compensation of rmsprop_ext.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["AIRFOIL_RUNS", "ConvergeResult", "airfoil_data", "run_airfoil", "run_converge"]

ROWS, BATCH, EPOCHS, LR, GAMMA = 1500, 10, 2, 0.01, 0.9
EVAL_EVERY = 200  # examples between two losses on the whole data, as train_ch11 records them


def airfoil_data() -> np.ndarray:
    """The first 1500 rows of the airfoil data, standardised column by column over all 1503 rows
    (as d2l's get_data_ch11), float32."""
    text = resources.files("rmsprop_ext").joinpath("data/airfoil_self_noise.dat").read_text()
    data = np.loadtxt(text.splitlines(), dtype=np.float32, delimiter="\t")
    data = (data - data.mean(axis=0)) / data.std(axis=0)
    return data[:ROWS]


@dataclass
class ConvergeResult:
    task: str
    run: str
    seed: int
    losses: list[float] = field(default_factory=list)  # every EVAL_EVERY examples

    @property
    def final(self) -> float:
        return self.losses[-1]


# (label, dtype of model and data, optimizer factory name, its options)
AIRFOIL_RUNS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("textbook scratch fp32", "float32", "scratch", {}),
    ("torch RMSprop fp32", "float32", "torch", {}),
    ("rmsprop_ext fp32", "float32", "ours", {}),
    ("rmsprop_ext bf16, bf16 state", "bfloat16", "ours", {}),
    ("rmsprop_ext bf16, fp32 state", "bfloat16", "ours", {"state_dtype": "float32"}),
    ("rmsprop_ext bf16, bf16 state, Kahan", "bfloat16", "ours", {"compensation": "kahan"}),
    (
        "rmsprop_ext bf16, bf16 state, stochastic",
        "bfloat16",
        "ours",
        {"compensation": "stochastic"},
    ),
    ("torch RMSprop bf16", "bfloat16", "torch", {}),
]


def _step_function(kind: str, params: list[Any], options: dict[str, Any]) -> Callable[[], None]:
    import torch

    from . import reference
    from .optimizer import RMSprop

    if kind == "scratch":
        states = reference.init_rmsprop_states(params)
        hyper = {"lr": LR, "gamma": GAMMA}
        return lambda: reference.rmsprop_torch(params, states, hyper)
    options = dict(options)
    if "state_dtype" in options:
        options["state_dtype"] = getattr(torch, options["state_dtype"])
    if kind == "torch":
        opt: Any = torch.optim.RMSprop(params, lr=LR, alpha=GAMMA, foreach=False)
    else:
        opt = RMSprop(params, lr=LR, alpha=GAMMA, **options)

    def step() -> None:
        opt.step()
        opt.zero_grad()

    return step


def run_airfoil(label: str, dtype_name: str, kind: str, options: dict[str, Any], seed: int) -> Any:
    """One training run; returns a ConvergeResult with the loss every 200 examples."""
    import torch

    dtype = getattr(torch, dtype_name)
    data = torch.from_numpy(airfoil_data())
    features, labels = data[:, :-1].to(dtype), data[:, -1:].to(dtype)
    gen = torch.Generator().manual_seed(seed)
    weight = torch.normal(0.0, 0.01, (features.shape[1], 1), generator=gen).to(dtype)
    weight.requires_grad_(True)
    bias = torch.zeros(1, dtype=dtype, requires_grad=True)
    params = [weight, bias]
    step = _step_function(kind, params, options)

    def loss_on(x: Any, y: Any) -> Any:
        return ((x @ weight + bias - y) ** 2 / 2).mean()

    def evaluate() -> float:
        # In float32 for every run, from the parameters as they are: the model's quality, not
        # the precision of the evaluation.
        with torch.no_grad():
            x, y = data[:, :-1], data[:, -1:]
            return float(((x @ weight.float() + bias.float() - y) ** 2 / 2).mean())

    result = ConvergeResult("airfoil", label, seed)
    seen = 0
    result.losses.append(evaluate())
    for _ in range(EPOCHS):
        order = torch.randperm(ROWS, generator=gen)
        for start in range(0, ROWS, BATCH):
            batch = order[start : start + BATCH]
            loss_on(features[batch], labels[batch]).backward()
            step()
            seen += len(batch)
            if seen % EVAL_EVERY == 0:
                result.losses.append(evaluate())
    return result


def run_converge(seeds: int, progress: bool = True) -> list[ConvergeResult]:
    """Every airfoil run on seeds 0..seeds-1."""
    results = []
    jobs = [(run, seed) for run in AIRFOIL_RUNS for seed in range(seeds)]
    for i, ((label, dtype, kind, options), seed) in enumerate(jobs):
        if progress:
            bar = "#" * (30 * (i + 1) // len(jobs))
            print(f"\r[{bar:30}] airfoil: {label}, seed {seed}", end="", file=sys.stderr)
        results.append(run_airfoil(label, dtype, kind, options, seed))
    if progress:
        print(file=sys.stderr)
    return results


def summary(results: Sequence[ConvergeResult]) -> list[str]:
    """Final losses per run (mean and range over seeds), and each bfloat16 form against the
    target: within the spread of the float32 seeds, or within 1% of their mean."""
    lines = []
    by_run: dict[str, list[float]] = {}
    for r in results:
        by_run.setdefault(r.run, []).append(r.final)
    fp32 = by_run.get("rmsprop_ext fp32", [])
    low, high = (min(fp32), max(fp32)) if fp32 else (0.0, 0.0)
    mean32 = statistics.mean(fp32) if fp32 else 0.0
    band = (min(low, mean32 * 0.99), max(high, mean32 * 1.01))
    lines.append(
        "airfoil (d2l train_ch11 protocol; the book reports 0.244): final loss, mean [min-max] "
        f"over {len(fp32)} seeds"
    )
    for run, finals in by_run.items():
        verdict = ""
        if "bf16" in run and fp32:
            inside = all(band[0] <= f <= band[1] for f in finals)
            verdict = "  within the fp32 band" if inside else "  OUTSIDE the fp32 band"
        lines.append(
            f"  {run:42} {statistics.mean(finals):.4f} [{min(finals):.4f}-{max(finals):.4f}]"
            f"{verdict}"
        )
    lines.append(f"  fp32 band: [{band[0]:.4f}, {band[1]:.4f}] (seed spread or 1% of the mean)")
    return lines


def write_plot(results: Sequence[ConvergeResult], path: str) -> None:
    """Loss curves (mean over seeds) of every run, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    by_run: dict[str, list[list[float]]] = {}
    for r in results:
        by_run.setdefault(r.run, []).append(r.losses)
    for run, curves in by_run.items():
        mean = np.mean(np.array(curves), axis=0)
        ax.plot(np.arange(len(mean)) * EVAL_EVERY / ROWS, mean, label=run)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (all 1500 rows)")
    ax.set_yscale("log")
    ax.set_title("airfoil self-noise, d2l protocol: RMSProp lr 0.01, gamma 0.9, batch 10")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
