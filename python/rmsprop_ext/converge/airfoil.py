"""The convergence benchmark's first task: the chapter's own experiment, Dive into Deep
Learning's airfoil self-noise regression (``d2l.train_ch11``): the first 1500 rows of the data
(shipped with the package, see ``data/CITATION.md``), standardised; a linear model with weights
drawn from N(0, 0.01^2); squared loss / 2; minibatches of 10, shuffled each epoch; 2 epochs;
RMSProp with lr 0.01 and gamma (alpha) 0.9; the loss on all 1500 rows every 200 examples. The
book reports a final loss of 0.244 for its scratch and its concise (torch.optim.RMSprop)
optimizer.

Every optimizer runs on the same seeds (model initialisation and shuffling): the textbook's
scratch step (``reference.rmsprop_torch``), torch.optim.RMSprop and rmsprop_ext.RMSprop in
float32, and pure bfloat16 training (model, data and gradients in bfloat16) with each state form
and compensation of rmsprop_ext. The model has 6 parameters, so it checks the protocol and the
book's figure more than the storage forms; the character language model is the harder test.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np

from .common import BF16_FORMS, ConvergeResult, Run, make_step

__all__ = ["AIRFOIL_RUNS", "EVAL_EVERY", "ROWS", "airfoil_data", "run_airfoil"]

ROWS, BATCH, EPOCHS, LR, GAMMA = 1500, 10, 2, 0.01, 0.9
EVAL_EVERY = 200  # examples between two losses on the whole data, as train_ch11 records them


def airfoil_data() -> np.ndarray:
    """The first 1500 rows of the airfoil data, standardised column by column over all 1503 rows
    (as d2l's get_data_ch11), float32."""
    text = resources.files("rmsprop_ext").joinpath("data/airfoil_self_noise.dat").read_text()
    data = np.loadtxt(text.splitlines(), dtype=np.float32, delimiter="\t")
    data = (data - data.mean(axis=0)) / data.std(axis=0)
    return data[:ROWS]


AIRFOIL_RUNS: list[Run] = [
    ("textbook scratch fp32", "float32", "scratch", {}),
    ("torch RMSprop fp32", "float32", "torch", {}),
    ("rmsprop_ext fp32", "float32", "ours", {}),
    *BF16_FORMS,
]


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
    step = make_step(kind, params, LR, GAMMA, options)

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
