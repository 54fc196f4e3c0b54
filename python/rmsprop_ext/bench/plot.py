"""The benchmark's PNG: throughput against size with the roofline, and scaling against threads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .config import Measurement

__all__ = ["write_plot"]


def write_plot(rows: Sequence[Measurement], path: str, title: str) -> None:
    """Writes the two panels to `path`; needs matplotlib (pip install 'rmsprop_ext[bench]')."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as error:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from error

    fig, (sizes_ax, threads_ax) = plt.subplots(1, 2, figsize=(14, 5.5))
    sizes = [r for r in rows if r.section == "sizes"]
    for name in dict.fromkeys(r.implementation for r in sizes):
        points = sorted((r.elements, r.gbytes_per_s) for r in sizes if r.implementation == name)
        style: dict[str, Any] = {"marker": "o", "label": name}
        if name == "roofline kernel":
            style = {
                "color": "black",
                "linestyle": "--",
                "linewidth": 2.5,
                "label": "roofline (memory)",
            }
        sizes_ax.plot(*zip(*points), **style)
    sizes_ax.set(
        xscale="log",
        yscale="log",
        xlabel="elements (float32, one tensor)",
        ylabel="effective GB/s (20 bytes per element)",
        title="Throughput vs size, all threads",
    )
    sizes_ax.grid(True, which="both", alpha=0.3)
    sizes_ax.legend(fontsize=8)

    threads = [r for r in rows if r.section == "threads"]
    for n in sorted({r.elements for r in threads}):
        for name, fmt in (("native rmsprop_step", "-o"), ("roofline kernel", "--s")):
            points = sorted(
                (r.threads, r.gbytes_per_s)
                for r in threads
                if r.elements == n and r.implementation == name
            )
            if points:
                label = f"{'native' if name.startswith('native') else 'roofline'}, {n:,} elements"
                threads_ax.plot(*zip(*points), fmt, label=label)
    threads_ax.set(xlabel="threads", ylabel="effective GB/s", title="Scaling with threads")
    threads_ax.grid(True, alpha=0.3)
    threads_ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
