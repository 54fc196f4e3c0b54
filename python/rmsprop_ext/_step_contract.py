"""torch.optim's step contract, kept at a fraction of its per-step cost.

``torch.optim.Optimizer`` wraps every ``step`` in ``record_function`` and runs the step hooks
around it. The ``record_function`` alone costs about 6 us warm and 100 us or more right after a
step that streamed a large model through the caches: as much as the native update of a million
elements. ``run_step`` keeps the contract (global then per-optimizer pre hooks, which may replace
the arguments; the step; ``_optimizer_step_code`` for the profiler's Python tracer; per-optimizer
then global post hooks) and opens the profiler's ``Optimizer.step#<class>.step`` event only while
a profiler is running.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import chain
from typing import Any

import torch

_global_pre_hooks: Mapping[Any, Callable[..., Any]] = {}
_global_post_hooks: Mapping[Any, Callable[..., Any]] = {}
try:
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
except ImportError:  # a torch that keeps them elsewhere: its own step wrapper stays in place
    OWN_STEP_CONTRACT = False
else:
    _global_pre_hooks = _global_optimizer_pre_hooks
    _global_post_hooks = _global_optimizer_post_hooks
    OWN_STEP_CONTRACT = True

__all__ = ["OWN_STEP_CONTRACT", "run_step"]


def run_step(
    optimizer: torch.optim.Optimizer,
    step: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Runs step(*args, **kwargs) (args[0] is the optimizer) as torch.optim's wrapper would."""
    if torch.autograd._profiler_enabled():
        name = f"Optimizer.step#{type(optimizer).__name__}.step"
        with torch.autograd.profiler.record_function(name):
            return _run_with_hooks(optimizer, step, args, kwargs)
    return _run_with_hooks(optimizer, step, args, kwargs)


def _run_with_hooks(
    optimizer: Any, step: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    for pre_hook in chain(_global_pre_hooks.values(), optimizer._optimizer_step_pre_hooks.values()):
        result = pre_hook(optimizer, args, kwargs)
        if result is not None:
            if isinstance(result, tuple) and len(result) == 2:
                args, kwargs = result
            else:
                raise RuntimeError(
                    f"{step} must return None or a tuple of (new_args, new_kwargs), "
                    f"but got {result}."
                )
    out = step(*args, **kwargs)
    optimizer._optimizer_step_code()
    for post_hook in chain(
        optimizer._optimizer_step_post_hooks.values(), _global_post_hooks.values()
    ):
        post_hook(optimizer, args, kwargs)
    return out
