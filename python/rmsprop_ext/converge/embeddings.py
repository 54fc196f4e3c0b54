"""The convergence benchmark's embedding task: word vectors with sparse gradients, on the Python
standard library's source, which every machine with Python has.

Text: the stdlib's top-level modules, split into words and punctuation; the most frequent
`EmbeddingsConfig.vocabulary` tokens kept (the rest one unknown token); the last tenth of the
token stream held out. Model: skip-gram with negative sampling (word2vec): an input and an output
table, ``nn.Embedding(sparse=...)`` each, so nearly all parameters are embedding rows and a batch
touches a few thousand of them. Each (word, neighbour) pair scores the dot product of the word's
input row and the neighbour's output row against `negatives` rows drawn from the unigram law to
the power 0.75. Loss: the held-out pairs' logistic loss, with fixed negatives. The runs: dense
torch.optim.RMSprop, rmsprop_ext with dense gradients, and rmsprop_ext with sparse gradients,
exact and lazy, on the same seeds and batches; each run's optimizer step is timed.
"""

from __future__ import annotations

import math
import re
import sysconfig
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import ConvergeResult, Run

__all__ = ["EMBEDDINGS_RUNS", "EmbeddingsConfig", "run_embeddings", "stdlib_tokens"]

TOKEN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|\d+|[^\sA-Za-z_0-9]")


@dataclass(frozen=True)
class EmbeddingsConfig:
    steps: int = 1500
    eval_every: int = 150
    vocabulary: int = 50_000
    dim: int = 64
    batch: int = 512  # (word, neighbour) pairs per step
    window: int = 2
    negatives: int = 5
    lr: float = 5e-4
    momentum: float = 0.9
    eval_pairs: int = 8192


# (label, dtype, optimizer kind, options): sparse=None means dense gradients.
EMBEDDINGS_RUNS: list[Run] = [
    ("torch RMSprop, dense", "float32", "torch", {"sparse": None}),
    ("rmsprop_ext, dense", "float32", "ours", {"sparse": None}),
    ("rmsprop_ext, sparse exact", "float32", "ours", {"sparse": "exact"}),
    ("rmsprop_ext, sparse lazy", "float32", "ours", {"sparse": "lazy"}),
]


def stdlib_tokens(config: EmbeddingsConfig) -> tuple[np.ndarray, np.ndarray]:
    """The stdlib's top-level modules as token ids (int64; 0 is the unknown token) and each
    id's count."""
    root = Path(sysconfig.get_paths()["stdlib"])
    text = "\n".join(
        path.read_text(encoding="utf-8", errors="replace") for path in sorted(root.glob("*.py"))
    )
    words = TOKEN.findall(text)
    if not words:
        raise FileNotFoundError(f"no Python source under {root}")
    common = [w for w, _ in Counter(words).most_common(config.vocabulary - 1)]
    ids = {w: i + 1 for i, w in enumerate(common)}
    tokens = np.fromiter((ids.get(w, 0) for w in words), dtype=np.int64, count=len(words))
    counts = np.bincount(tokens, minlength=config.vocabulary)
    return tokens, counts


def _pairs(tokens: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (word, neighbour within `window`) pair of the token stream."""
    centres, contexts = [], []
    for offset in range(1, window + 1):
        centres += [tokens[:-offset], tokens[offset:]]
        contexts += [tokens[offset:], tokens[:-offset]]
    return np.concatenate(centres), np.concatenate(contexts)


def run_embeddings(
    label: str,
    dtype_name: str,
    kind: str,
    options: dict[str, Any],
    seed: int,
    config: EmbeddingsConfig | None = None,
    data: tuple[np.ndarray, np.ndarray] | None = None,
) -> ConvergeResult:
    """One training run; the held-out loss every `config.eval_every` steps (and at step 0), and
    the median time of its optimizer steps. `data`: (tokens, counts) to use instead of the
    stdlib's (the tests take a slice)."""
    import torch

    from ..optimizer import RMSprop

    del dtype_name  # float32: the task compares sparse and dense steps, not storage forms
    config = config or EmbeddingsConfig()
    tokens, counts = stdlib_tokens(config) if data is None else data
    split = len(tokens) * 9 // 10
    train_words, train_contexts = _pairs(tokens[:split], config.window)
    held_words, held_contexts = _pairs(tokens[split:], config.window)
    noise = torch.from_numpy(counts.astype(np.float64) ** 0.75)
    sparse = options["sparse"]

    torch.manual_seed(seed)
    tables: Any = torch.nn.ModuleDict(
        {
            name: torch.nn.Embedding(config.vocabulary, config.dim, sparse=sparse is not None)
            for name in ("words", "contexts")
        }
    )
    with torch.no_grad():
        tables["words"].weight.uniform_(-0.5 / config.dim, 0.5 / config.dim)
        tables["contexts"].weight.zero_()
    if kind == "torch":
        optimizer: Any = torch.optim.RMSprop(
            tables.parameters(), lr=config.lr, momentum=config.momentum
        )
    else:
        optimizer = RMSprop(
            tables.parameters(), lr=config.lr, momentum=config.momentum, sparse=sparse or "exact"
        )
        optimizer.watch_embeddings(tables)  # looked-up rows up to date before each forward

    def loss_of(words: Any, contexts: Any, negatives: Any) -> Any:
        w = tables["words"](words)
        positive = (w * tables["contexts"](contexts)).sum(-1)
        negative = torch.einsum("bd,bkd->bk", w, tables["contexts"](negatives))
        logistic = torch.nn.functional.logsigmoid
        return -(logistic(positive).mean() + logistic(-negative).sum(-1).mean())

    generator = torch.Generator().manual_seed(10_000 + seed)
    held = np.random.default_rng(0).choice(len(held_words), config.eval_pairs, replace=False)
    held_batch = (
        torch.from_numpy(held_words[held]),
        torch.from_numpy(held_contexts[held]),
        torch.multinomial(
            noise, config.eval_pairs * config.negatives, True, generator=torch.Generator()
        ).view(config.eval_pairs, config.negatives),
    )

    def evaluate() -> float:
        with torch.no_grad():
            loss = float(loss_of(*held_batch))
        return loss if math.isfinite(loss) else float("inf")

    result = ConvergeResult("embeddings", label, seed)
    result.losses.append(evaluate())
    step_times = []
    for i in range(1, config.steps + 1):
        pick = torch.randint(0, len(train_words), (config.batch,), generator=generator).numpy()
        negatives = torch.multinomial(
            noise, config.batch * config.negatives, True, generator=generator
        ).view(config.batch, config.negatives)
        optimizer.zero_grad()
        loss_of(
            torch.from_numpy(train_words[pick]), torch.from_numpy(train_contexts[pick]), negatives
        ).backward()
        start = time.perf_counter()
        optimizer.step()
        step_times.append(time.perf_counter() - start)
        if i % config.eval_every == 0:
            result.losses.append(evaluate())  # (the lookup hooks bring the rows it reads up)
    result.step_ms = float(np.median(step_times)) * 1e3
    return result
