"""RMSprop applied during backward: each parameter is updated as soon as its gradient is ready.

With ``register_post_accumulate_grad_hook`` the update of a parameter runs the moment autograd
has finished accumulating its gradient, and the gradient is then freed, so the gradients of the
whole model never exist at the same time: peak memory drops by roughly the size of the gradients
(less the largest few). The math is exactly rmsprop_ext.RMSprop's: each parameter gets its own
optimizer with the same hyperparameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from .optimizer import RMSprop

__all__ = ["InBackwardRMSprop", "step_in_backward"]


class InBackwardRMSprop:
    """Per-parameter RMSprop optimizers driven by post-accumulate-grad hooks.

    Every ``loss.backward()`` is one optimization step for every parameter that received a
    gradient; ``p.grad`` is None afterwards. Do not call ``step()`` or ``zero_grad()`` yourself,
    and do not accumulate gradients over several backward passes (each pass steps). Learning-rate
    schedulers attach to each entry of ``optimizers``.
    """

    def __init__(self, params: Iterable[Tensor], **hyperparams: Any) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("step_in_backward needs at least one parameter that requires grad")
        self.optimizers: dict[Tensor, RMSprop] = {
            p: RMSprop([p], **hyperparams) for p in self.params
        }
        self._handles = [p.register_post_accumulate_grad_hook(self._step) for p in self.params]

    def _step(self, param: Tensor) -> None:
        optimizer = self.optimizers[param]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def remove(self) -> None:
        """Detaches the hooks; backward then only accumulates gradients again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __iter__(self) -> Iterator[RMSprop]:
        return iter(self.optimizers.values())

    def state_dict(self) -> dict[str, Any]:
        """One torch-format state dict per parameter, in parameter order."""
        return {"optimizers": [opt.state_dict() for opt in self.optimizers.values()]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict["optimizers"]
        if len(saved) != len(self.params):
            raise ValueError(f"state_dict has {len(saved)} optimizers, expected {len(self.params)}")
        for opt, entry in zip(self.optimizers.values(), saved):
            opt.load_state_dict(entry)


def step_in_backward(
    model_or_params: torch.nn.Module | Iterable[Tensor], **hyperparams: Any
) -> InBackwardRMSprop:
    """Makes every ``backward()`` update each parameter as soon as its gradient exists.

    Takes a module or an iterable of parameters and RMSprop's keyword arguments; returns the
    InBackwardRMSprop that owns the hooks (keep it; ``.remove()`` undoes them).
    """
    if isinstance(model_or_params, torch.nn.Module):
        model_or_params = model_or_params.parameters()
    return InBackwardRMSprop(model_or_params, **hyperparams)
