"""Optimizer state containers that report when an entry is replaced.

The prepared native step holds the state tensors it was built with. torch.optim.RMSprop reads
``optimizer.state[p][name]`` afresh each step, so code that assigns a new tensor there (or a new
dict to ``optimizer.state[p]``) must reach the next update: these containers call a function on
every change of their entries, and the optimizer drops its prepared steps then. Reads and
in-place changes of the tensors cost nothing. They pickle and deep-copy as the plain dict and
defaultdict they stand for, so a saved state dict never needs this module to load.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

__all__ = ["TrackedState", "TrackedStates"]


class _CallsOnChange:
    """The mutators of a dict, each followed by `_on_change()`: dict's update, setdefault, pop,
    popitem, clear and |= do not go through __setitem__/__delitem__, so each is wrapped."""

    _on_change: Callable[[], None]

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)  # type: ignore[misc]
        self._on_change()

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)  # type: ignore[misc]
        self._on_change()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)  # type: ignore[misc]
        self._on_change()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        value = super().setdefault(key, default)  # type: ignore[misc]
        self._on_change()
        return value

    def pop(self, *args: Any) -> Any:
        value = super().pop(*args)  # type: ignore[misc]
        self._on_change()
        return value

    def popitem(self) -> Any:
        item = super().popitem()  # type: ignore[misc]
        self._on_change()
        return item

    def clear(self) -> None:
        super().clear()  # type: ignore[misc]
        self._on_change()

    def __ior__(self, other: Any) -> Any:
        super().__ior__(other)  # type: ignore[misc]
        self._on_change()
        return self


class TrackedState(_CallsOnChange, dict):  # type: ignore[type-arg]
    """A parameter's state dict that calls `on_change` whenever an entry is set or removed."""

    def __init__(self, entries: Any, on_change: Callable[[], None]):
        super().__init__(entries)
        self._on_change = on_change

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


class TrackedStates(_CallsOnChange, defaultdict):  # type: ignore[type-arg]
    """The optimizer's ``state`` (a defaultdict(dict), as torch's) calling `on_change` whenever a
    parameter's state dict is set or removed."""

    def __init__(self, states: Any, on_change: Callable[[], None]):
        super().__init__(dict, states)
        self._on_change = on_change

    def __reduce__(self) -> Any:
        return (_plain_states, (dict(self),))


def _plain_states(states: dict[Any, Any]) -> defaultdict[Any, Any]:
    return defaultdict(dict, states)
