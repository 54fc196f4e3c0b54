from collections.abc import Sequence
from typing import Any

import numpy as np

def rmsprop_step(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    momentum_buffer: np.ndarray | None = None,
    grad_avg: np.ndarray | None = None,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    eps_in_sqrt: bool,
    decoupled_weight_decay: bool,
    num_threads: int = 0,
) -> None: ...
def rmsprop_step_many(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    square_avgs: Sequence[np.ndarray],
    momentum_buffers: Sequence[np.ndarray] | None = None,
    grad_avgs: Sequence[np.ndarray] | None = None,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    eps_in_sqrt: bool,
    decoupled_weight_decay: bool,
    num_threads: int = 0,
    check_only: bool = False,
    steps: Sequence[np.ndarray] | None = None,
) -> None: ...
def set_num_threads(num_threads: int) -> None: ...
def get_num_threads() -> int: ...
def requested_num_threads() -> int: ...
def last_num_threads() -> int: ...
def _updates_in_flight() -> int: ...
def set_isa(name: str) -> None: ...
def get_isa() -> str: ...
def build_info() -> dict[str, Any]: ...
def roofline_step_many(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    square_avgs: Sequence[np.ndarray],
    momentum_buffers: Sequence[np.ndarray] | None = None,
    grad_avgs: Sequence[np.ndarray] | None = None,
    *,
    momentum: float = 0.0,
    centered: bool = False,
    num_threads: int = 0,
) -> None: ...

class PreparedStep:
    def __init__(
        self,
        owners: Sequence[Any],
        params: Sequence[np.ndarray],
        square_avgs: Sequence[np.ndarray],
        momentum_buffers: Sequence[np.ndarray] | None,
        grad_avgs: Sequence[np.ndarray] | None,
        steps: Sequence[np.ndarray],
        *,
        momentum: bool,
        centered: bool,
    ) -> None: ...
    def step(
        self,
        owners: Sequence[Any],
        *,
        lr: float,
        alpha: float,
        eps: float,
        weight_decay: float,
        momentum: float,
        centered: bool,
        maximize: bool,
        eps_in_sqrt: bool,
        decoupled_weight_decay: bool,
        num_threads: int = 0,
        check_only: bool = False,
    ) -> bool: ...
    def __len__(self) -> int: ...
