"""What the steps a row sat out did to it: the factors that bring an idle row up to date.

In the dense step a row without gradient still changes: its running averages decay by alpha, its
momentum buffer by momentum, and its parameter moves by what the buffer still holds (and shrinks
by ``1 - lr * weight_decay`` with decoupled weight decay). Over k such steps each of these is a
product or a sum of the steps' own hyperparameters, so schedulers and changed param groups are
followed exactly. `IdleSteps` keeps them for the most recent ``length`` steps (bounded memory and
work per step); rows idle longer are brought up to date before they fall out of it
(`sweep_due`).

Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["IDLE_STEPS_LENGTH", "IdleSteps"]

# Steps the factors cover. Rows are swept every half of it, so a row is never idle longer.
IDLE_STEPS_LENGTH = 4096


class IdleSteps:
    """Rows of ``factors`` (float64, shape (4, length)), entry k for the k most recent steps:

    * ``state_scale``: the product of alpha (square_avg and grad_avg);
    * ``buffer_scale``: the product of momentum (the momentum buffer);
    * ``param_scale``: the product of ``1 - lr * weight_decay`` (decoupled weight decay);
    * ``buffer_into_param``: what those steps took from the parameter per unit of the momentum
      buffer they started with, so that ``param <- param_scale * param - buffer_into_param * b``.

    Entry 0 is (1, 1, 1, 0): nothing to do. This is the layout the native catch-up reads.
    """

    def __init__(self, length: int = IDLE_STEPS_LENGTH, factors: np.ndarray | None = None):
        if length < 2:
            raise ValueError(f"IdleSteps needs length >= 2, got {length}")
        self.factors = np.zeros((4, length)) if factors is None else factors
        if factors is None:
            self.factors[:3, 0] = 1.0

    @property
    def length(self) -> int:
        return int(self.factors.shape[1])

    def push(
        self,
        *,
        lr: float,
        alpha: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        lr_in_momentum: bool = False,
        nesterov: bool = False,
        **_: Any,
    ) -> None:
        """Adds the step that has just run, with these hyperparameters (a param group's, or
        `rmsprop_ext.hyperparams`' names; others are ignored): every entry covers one step more.
        Coupled weight decay has no closed form for an idle row and is the caller's to refuse."""
        state, buffer, param, taken = self.factors
        decay = 1.0 - lr * weight_decay if decoupled_weight_decay and weight_decay else 1.0
        # The parameter moves by the step's direction times lr (torch) or 1 (lr inside the
        # buffer); Nesterov's direction is momentum times the new buffer.
        outside = 1.0 if lr_in_momentum else lr
        direction = momentum if nesterov else 1.0
        # An entry for k + 1 steps is the one for k followed by this step: the older steps' take
        # shrinks with this step's decay, and this step takes outside * direction times the
        # buffer as it is after them (buffer_scale[k] * momentum).
        taken[1:] = taken[:-1] * decay + outside * direction * momentum * buffer[:-1]
        state[1:] = state[:-1] * alpha
        buffer[1:] = buffer[:-1] * momentum
        param[1:] = param[:-1] * decay

    @staticmethod
    def sweep_due(steps_done: int, length: int = IDLE_STEPS_LENGTH) -> bool:
        """Whether the rows idle for ``length // 2`` steps or more must be brought up to date
        before the next step: at every multiple of half the length. Between two sweeps no row
        falls more than ``length - 1`` steps behind, which the factors cover."""
        return steps_done > 0 and steps_done % (length // 2) == 0
