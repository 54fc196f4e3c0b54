"""What the convergence tasks share: a run's result and the optimizers they compare."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BF16_FORMS", "ConvergeResult", "Run", "make_step"]


@dataclass
class ConvergeResult:
    task: str
    run: str
    seed: int
    losses: list[float] = field(default_factory=list)  # at the task's evaluation points
    step_ms: float = 0.0  # the median optimizer step, where the task times it

    @property
    def final(self) -> float:
        return self.losses[-1]


# (label, dtype of model and data, optimizer kind, its options): "scratch" is the textbook's
# step (reference.rmsprop_torch), "torch" torch.optim.RMSprop, "ours" rmsprop_ext.RMSprop.
Run = tuple[str, str, str, dict[str, Any]]

# Pure bfloat16 training with each state form and compensation of rmsprop_ext, and torch's. The
# default rounds as torch does (its bits); "rounded once" rounds each stored value once.
BF16_FORMS: list[Run] = [
    ("rmsprop_ext bf16, bf16 state", "bfloat16", "ours", {}),
    ("rmsprop_ext bf16, bf16 state, rounded once", "bfloat16", "ours", {"rounding": "fused"}),
    ("rmsprop_ext bf16, fp32 state", "bfloat16", "ours", {"state_dtype": "float32"}),
    ("rmsprop_ext bf16, bf16 state, Kahan", "bfloat16", "ours", {"compensation": "kahan"}),
    (
        "rmsprop_ext bf16, bf16 state, stochastic",
        "bfloat16",
        "ours",
        {"compensation": "stochastic"},
    ),
    (
        "rmsprop_ext bf16, 8bit state, stochastic",
        "bfloat16",
        "ours",
        {"state_dtype": "8bit", "compensation": "stochastic"},
    ),
    (
        "rmsprop_ext bf16, 8bit state, Kahan",
        "bfloat16",
        "ours",
        {"state_dtype": "8bit", "compensation": "kahan"},
    ),
    ("torch RMSprop bf16", "bfloat16", "torch", {}),
]


def make_step(
    kind: str, params: list[Any], lr: float, alpha: float, options: dict[str, Any]
) -> Callable[[], None]:
    """A function that applies one optimizer step to `params` and clears their gradients."""
    import torch

    from .. import reference
    from ..optimizer import RMSprop

    if kind == "scratch":
        states = reference.init_rmsprop_states(params)
        hyper = {"lr": lr, "gamma": alpha}
        return lambda: reference.rmsprop_torch(params, states, hyper)
    options = dict(options)
    if options.get("state_dtype") in ("float32", "bfloat16"):
        options["state_dtype"] = getattr(torch, options["state_dtype"])
    if kind == "torch":
        opt: Any = torch.optim.RMSprop(params, lr=lr, alpha=alpha, foreach=False)
    else:
        opt = RMSprop(params, lr=lr, alpha=alpha, **options)

    def step() -> None:
        opt.step()
        opt.zero_grad()

    return step
