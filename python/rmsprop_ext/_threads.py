"""How many threads the native update uses.

``set_num_threads(n)`` fixes the count for every call. Without it, the functional API and
``NumpyRMSprop`` use OpenMP's default (``OMP_NUM_THREADS``, else the core count), and
``rmsprop_ext.RMSprop`` follows ``torch.get_num_threads()``, so one ``torch.set_num_threads``
governs the whole training step.
"""

from __future__ import annotations

from . import _core

__all__ = ["get_num_threads", "set_num_threads", "threads_for_torch"]


def set_num_threads(num_threads: int) -> None:
    """Threads for every native update; 0 returns to the defaults described above."""
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
        raise ValueError(f"num_threads must be an int >= 0, got {num_threads!r}")
    _core.set_num_threads(num_threads)


def get_num_threads() -> int:
    """Threads the functional API uses now (set_num_threads, else OpenMP's default)."""
    return _core.get_num_threads()


def threads_for_torch() -> int:
    """Threads for rmsprop_ext.RMSprop: set_num_threads if called, else torch.get_num_threads()."""
    requested = _core.requested_num_threads()
    if requested:
        return requested
    import torch

    return torch.get_num_threads()
