"""``python -m rmsprop_ext converge``: does training in fewer bytes converge like float32?

Three tasks on data every machine has: the chapter's airfoil regression (``airfoil``, the book's
protocol and figure) and a character-level transformer language model on the Python standard
library's source (``charlm``), each with torch.optim.RMSprop and rmsprop_ext.RMSprop in float32
and pure bfloat16 training with every state form and compensation; and word vectors on the same
source (``embeddings``), with dense and sparse gradients (exact and lazy). The same seeds for
every run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .airfoil import AIRFOIL_RUNS, EVAL_EVERY, ROWS, airfoil_data, run_airfoil
from .charlm import CHARLM_RUNS, CharLMConfig, run_charlm
from .common import ConvergeResult
from .embeddings import EMBEDDINGS_RUNS, EmbeddingsConfig, run_embeddings
from .report import summary, write_plot

__all__ = [
    "AIRFOIL_RUNS",
    "CHARLM_RUNS",
    "EMBEDDINGS_RUNS",
    "TASKS",
    "CharLMConfig",
    "ConvergeResult",
    "EmbeddingsConfig",
    "airfoil_data",
    "plot",
    "run_airfoil",
    "run_charlm",
    "run_converge",
    "run_embeddings",
    "summary",
]

TASKS = ("airfoil", "charlm", "embeddings")


def run_converge(
    seeds: int,
    progress: bool = True,
    tasks: Sequence[str] = TASKS,
    charlm: CharLMConfig | None = None,
    bf16_seeds: int | None = None,
    embeddings: EmbeddingsConfig | None = None,
) -> list[ConvergeResult]:
    """Every run of each task on seeds 0..seeds-1, the bfloat16 runs on seeds 0..bf16_seeds-1
    (default: as many), the language model in `charlm`'s configuration (by default the
    benchmark's)."""
    charlm = charlm or CharLMConfig()
    embeddings = embeddings or EmbeddingsConfig()
    low = seeds if bf16_seeds is None else bf16_seeds

    def seeds_of(run: tuple[str, str, str, dict[str, object]]) -> range:
        return range(low if run[1] == "bfloat16" else seeds)

    jobs = []
    if "airfoil" in tasks:
        jobs += [("airfoil", run, seed) for run in AIRFOIL_RUNS for seed in seeds_of(run)]
    if "charlm" in tasks:
        jobs += [("charlm", run, seed) for run in CHARLM_RUNS for seed in seeds_of(run)]
    if "embeddings" in tasks:
        jobs += [("embeddings", run, seed) for run in EMBEDDINGS_RUNS for seed in seeds_of(run)]
    results = []
    for i, (task, (label, dtype, kind, options), seed) in enumerate(jobs):
        if progress:
            bar = "#" * (30 * (i + 1) // len(jobs))
            print(f"\r[{bar:30}] {task}: {label}, seed {seed}\033[K", end="", file=sys.stderr)
        if task == "airfoil":
            results.append(run_airfoil(label, dtype, kind, options, seed))
        elif task == "charlm":
            results.append(run_charlm(label, dtype, kind, options, seed, charlm))
        else:
            results.append(run_embeddings(label, dtype, kind, options, seed, embeddings))
    if progress:
        print(file=sys.stderr)
    return results


def plot(
    results: Sequence[ConvergeResult],
    path: str,
    charlm: CharLMConfig,
    embeddings: EmbeddingsConfig | None = None,
) -> None:
    """The loss curves of `results` as a PNG at `path`."""
    steps = {
        "airfoil": EVAL_EVERY / ROWS,
        "charlm": charlm.eval_every,
        "embeddings": (embeddings or EmbeddingsConfig()).eval_every,
    }
    write_plot(results, path, steps)
