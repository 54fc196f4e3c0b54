"""rmsprop_ext: a fused, compiled RMSProp optimizer for CPUs.

``RMSprop`` (needs torch) is a drop-in for ``torch.optim.RMSprop``; ``rmsprop_step`` and
``rmsprop_step_many`` are the functional API for numpy arrays and torch CPU tensors;
``NumpyRMSprop`` is an optimizer for numpy-only code; ``reference`` holds the pure-Python versions.
"""

from __future__ import annotations

import functools
import importlib
import re
import warnings
from typing import Any

from . import reference
from ._core import build_info as _core_build_info
from ._core import get_isa, last_num_threads, set_isa
from ._idle_steps import IdleSteps
from ._threads import get_num_threads, set_num_threads
from .functional import rmsprop_catch_up, rmsprop_step, rmsprop_step_many
from .numpy_optimizer import NumpyRMSprop
from .presets import presets

__version__ = "0.1.0"

# Public names that subclass or hook into torch: imported on first use, so torch stays optional.
_NEEDS_TORCH = {
    "RMSprop": (".optimizer", "RMSprop"),
    "InBackwardRMSprop": (".in_backward", "InBackwardRMSprop"),
    "SparseGradientError": (".optimizer", "SparseGradientError"),
    "dequantize_state_dict": (".quantized_state", "dequantize_state_dict"),
    "step_in_backward": (".in_backward", "step_in_backward"),
}

__all__ = [
    "IdleSteps",
    "InBackwardRMSprop",
    "NumpyRMSprop",
    "RMSprop",
    "SparseGradientError",
    "__version__",
    "build_info",
    "dequantize_state_dict",
    "get_isa",
    "get_num_threads",
    "last_num_threads",
    "presets",
    "reference",
    "rmsprop_catch_up",
    "rmsprop_step",
    "rmsprop_step_many",
    "set_isa",
    "set_num_threads",
    "step_in_backward",
]


def build_info() -> dict[str, Any]:
    """Instruction sets compiled, supported by this CPU, available and in use; OpenMP; threads."""
    return {"version": __version__, **_core_build_info()}


# The oldest torch release the torch-facing tests pass on (pyproject's torch extra says the same;
# .ci/torch_releases tests it): older ones round some ops otherwise (torch 2.2's lerp) or lack what
# the optimizer's sharded and compiled paths use (FSDP2 on the CPU, before 2.7).
OLDEST_TORCH = (2, 7)
_OLDEST_TORCH_NAME = ".".join(map(str, OLDEST_TORCH))


@functools.cache
def _check_torch_release() -> None:
    import torch

    release = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
    if release < OLDEST_TORCH:
        warnings.warn(
            f"rmsprop_ext is tested with torch {_OLDEST_TORCH_NAME} and newer, and torch "
            f"{torch.__version__} is older: its results may not be torch.optim.RMSprop's bit for "
            f"bit, and sharded training may fail (pip install 'torch>={_OLDEST_TORCH_NAME}')",
            RuntimeWarning,
            stacklevel=3,
        )


def __getattr__(name: str) -> Any:
    # RMSprop subclasses torch.optim.Optimizer; importing it lazily keeps torch optional.
    if name in _NEEDS_TORCH:
        module_name, attribute = _NEEDS_TORCH[name]
        try:
            module = importlib.import_module(module_name, __name__)
        except ModuleNotFoundError as error:
            if error.name != "torch":
                raise
            raise ImportError(
                f"rmsprop_ext.{name} needs PyTorch (pip install 'torch>={_OLDEST_TORCH_NAME}'); "
                "the numpy API (rmsprop_step, NumpyRMSprop) works without it"
            ) from error
        _check_torch_release()
        return getattr(module, attribute)
    raise AttributeError(f"module 'rmsprop_ext' has no attribute '{name}'")
