"""``python -m rmsprop_ext demo``: the textbook's RMSProp chapter as pictures, plus a training run.

Writes to a folder:
  weights.png         the weights (1 - gamma) * gamma**t that the running average gives past steps
  trajectory_2d.png   RMSProp (native kernel) on f(x) = 0.1 x1^2 + 2 x2^2 over its contours
  trajectory_rotated.png  the same on the rotated f(x) = 0.1 (x1 + x2)^2 + 2 (x1 - x2)^2
  training.png        a multi-million-parameter MLP trained with rmsprop_ext.RMSprop and with
                      torch.optim.RMSprop: loss curves and time per optimizer step
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import reference
from .bench import Progress
from .functional import rmsprop_step

__all__ = ["run_demo"]

Gradient = Callable[[np.ndarray], np.ndarray]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as error:
        raise SystemExit("the demo draws with matplotlib: pip install matplotlib") from error
    return plt


def native_trajectory(grad: Gradient, start: tuple[float, float], steps: int = 20) -> np.ndarray:
    """RMSProp with the textbook's settings (eta 0.4, gamma 0.9, eps 1e-6 in the sqrt), native."""
    x = np.array(start, dtype=np.float64)
    s = np.zeros(2)
    points = [x.copy()]
    for _ in range(steps):
        rmsprop_step(
            x,
            grad(x),
            s,
            lr=reference.ETA_2D,
            alpha=reference.GAMMA_2D,
            eps=reference.TEXTBOOK_EPS,
            eps_in_sqrt=True,
        )
        points.append(x.copy())
    return np.array(points)


def plot_weights(plt: Any, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    t = np.arange(40)
    for gamma in (0.95, 0.9, 0.8, 0.7):
        ax.plot(t, (1 - gamma) * gamma**t, label=f"gamma = {gamma:.2f}")
    ax.set(
        xlabel="time (steps ago)",
        ylabel="weight of that step's g^2",
        title="RMSProp's leaky average: (1 - gamma) gamma^t",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_trajectory(
    plt: Any,
    path: Path,
    f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    grad: Gradient,
    title: str,
) -> np.ndarray:
    points = native_trajectory(grad, (-5.0, -2.0))
    low = np.minimum(points.min(axis=0), 0.0) - 0.5
    high = np.maximum(points.max(axis=0), 0.0) + 0.5
    x1, x2 = np.meshgrid(np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.contour(x1, x2, f(x1, x2), colors="#1f77b4", levels=20)
    ax.plot(points[:, 0], points[:, 1], "-o", color="#ff7f0e")
    ax.set(xlabel="x1", ylabel="x2", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return points


def train_mlp(
    steps: int, width: int, use_native: bool, progress: Progress
) -> tuple[list[float], list[float]]:
    """A few hundred steps of an MLP on synthetic regression data; returns losses and step times."""
    import torch

    from .optimizer import RMSprop

    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Linear(256, 64), torch.nn.Tanh(), torch.nn.Linear(64, 8))
    model = torch.nn.Sequential(
        torch.nn.Linear(256, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 8),
    )
    optimizer_class = RMSprop if use_native else torch.optim.RMSprop
    opt = optimizer_class(model.parameters(), lr=1e-4, alpha=0.99)
    gen = torch.Generator().manual_seed(1)
    losses, step_times = [], []
    for _ in range(steps):
        x = torch.randn(128, 256, generator=gen)
        with torch.no_grad():
            y = teacher(x)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        start = time.perf_counter()
        opt.step()
        step_times.append(time.perf_counter() - start)
        losses.append(loss.item())
        progress.advance()
        progress.show(f"training with {'rmsprop_ext' if use_native else 'torch'} RMSprop")
    return losses, step_times


def plot_training(
    plt: Any, path: Path, runs: dict[str, tuple[list[float], list[float]]], params: int
) -> dict[str, float]:
    fig, (loss_ax, time_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    medians = {}
    for name, (losses, times) in runs.items():
        loss_ax.plot(losses, label=name, alpha=0.8)
        medians[name] = statistics.median(times) * 1e3
    loss_ax.set(
        yscale="log",
        xlabel="step",
        ylabel="training loss (MSE)",
        title=f"MLP with {params / 1e6:.1f}M parameters: the curves overlay",
    )
    loss_ax.legend()
    names = list(medians)
    time_ax.bar(names, [medians[n] for n in names], color=["#1f77b4", "#ff7f0e"])
    for i, name in enumerate(names):
        time_ax.text(i, medians[name], f"{medians[name]:.2f} ms", ha="center", va="bottom")
    time_ax.set(ylabel="median time of optimizer.step() (ms)", title="Time per optimizer step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return medians


def run_demo(
    out: str, steps: int = 300, width: int = 2048, show_progress: bool = True
) -> list[str]:
    """Writes the pictures to `out`; returns the lines to print."""
    plt = _pyplot()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []

    plot_weights(plt, folder / "weights.png")
    lines.append(f"wrote {folder / 'weights.png'}")

    points = plot_trajectory(
        plt,
        folder / "trajectory_2d.png",
        lambda a, b: 0.1 * a**2 + 2 * b**2,
        lambda x: np.array([0.2 * x[0], 4 * x[1]]),
        "RMSProp on 0.1 x1^2 + 2 x2^2 (eta 0.4, gamma 0.9)",
    )
    lines.append(reference.format_2d_result(20, points[-1, 0], points[-1, 1]) + " (native kernel)")
    lines.append(f"wrote {folder / 'trajectory_2d.png'}")
    plot_trajectory(
        plt,
        folder / "trajectory_rotated.png",
        lambda a, b: 0.1 * (a + b) ** 2 + 2 * (a - b) ** 2,
        lambda x: np.array(
            [0.2 * (x[0] + x[1]) + 4 * (x[0] - x[1]), 0.2 * (x[0] + x[1]) - 4 * (x[0] - x[1])]
        ),
        "RMSProp on the rotated 0.1 (x1+x2)^2 + 2 (x1-x2)^2",
    )
    lines.append(f"wrote {folder / 'trajectory_rotated.png'}")

    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        lines.append("torch is not installed: the training run was skipped")
        return lines
    progress = Progress(2 * steps, show_progress)
    runs = {
        "rmsprop_ext.RMSprop": train_mlp(steps, width, True, progress),
        "torch.optim.RMSprop": train_mlp(steps, width, False, progress),
    }
    progress.close()
    params = 256 * width + width + width * width + width + width * 8 + 8
    medians = plot_training(plt, folder / "training.png", runs, params)
    final = {name: losses[-1] for name, (losses, _) in runs.items()}
    for name in runs:
        lines.append(f"{name}: final loss {final[name]:.5f}, median step {medians[name]:.2f} ms")
    lines.append(f"wrote {folder / 'training.png'}")
    return lines
