from collections.abc import Sequence
from typing import Any

import numpy as np

class Hyperparams:
    def __init__(
        self,
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
        lr_in_momentum: bool,
        nesterov: bool,
        bias_correction: bool,
        fused_multiply_add: bool,
        torch_sqrt: bool,
        compensation: str = "none",
        seed: int = 0,
        round_each_op: bool = False,
        torch_add_block: int = 0,
        torch_threads: int = 1,
    ) -> None: ...
    @property
    def lr(self) -> float: ...
    @property
    def alpha(self) -> float: ...
    @property
    def eps(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def momentum(self) -> float: ...
    @property
    def centered(self) -> bool: ...
    @property
    def maximize(self) -> bool: ...
    @property
    def eps_in_sqrt(self) -> bool: ...
    @property
    def decoupled_weight_decay(self) -> bool: ...
    @property
    def lr_in_momentum(self) -> bool: ...
    @property
    def nesterov(self) -> bool: ...
    @property
    def bias_correction(self) -> bool: ...
    @property
    def fused_multiply_add(self) -> bool: ...
    @property
    def round_each_op(self) -> bool: ...
    @property
    def torch_add_block(self) -> int: ...
    @property
    def torch_threads(self) -> int: ...
    @property
    def square_root_f32(self) -> str: ...
    @property
    def square_root_f64(self) -> str: ...
    @property
    def compensation(self) -> str: ...
    @property
    def seed(self) -> int: ...

def rmsprop_step(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    momentum_buffer: np.ndarray | None = None,
    grad_avg: np.ndarray | None = None,
    compensation: np.ndarray | None = None,
    *,
    hyperparams: Hyperparams,
    num_threads: int = 0,
    step: float = 0.0,
    stream: int = 0,
) -> None: ...
def rmsprop_step_many(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    square_avgs: Sequence[np.ndarray],
    momentum_buffers: Sequence[np.ndarray] | None = None,
    grad_avgs: Sequence[np.ndarray] | None = None,
    compensations: Sequence[np.ndarray] | None = None,
    *,
    hyperparams: Hyperparams,
    num_threads: int = 0,
    check_only: bool = False,
    steps: Sequence[np.ndarray] | None = None,
    step: float = 0.0,
    streams: Sequence[int] | None = None,
) -> None: ...
def rmsprop_sparse_step_many(
    params: Sequence[np.ndarray],
    square_avgs: Sequence[Any],
    momentum_buffers: Sequence[Any] | None = None,
    grad_avgs: Sequence[Any] | None = None,
    compensations: Sequence[np.ndarray] | None = None,
    *,
    indices: Sequence[np.ndarray],
    values: Sequence[np.ndarray],
    row_steps: Sequence[np.ndarray] | None = None,
    idle: Sequence[np.ndarray] | None = None,
    hyperparams: Hyperparams,
    num_threads: int = 0,
    check_only: bool = False,
    steps: Sequence[np.ndarray] | None = None,
    step: float = 0.0,
    streams: Sequence[int] | None = None,
    roofline: bool = False,
) -> None: ...
def rmsprop_catch_up_rows(
    params: Sequence[np.ndarray],
    square_avgs: Sequence[Any],
    momentum_buffers: Sequence[Any] | None = None,
    grad_avgs: Sequence[Any] | None = None,
    compensations: Sequence[np.ndarray] | None = None,
    *,
    row_steps: Sequence[np.ndarray],
    idle: Sequence[np.ndarray],
    indices: Sequence[np.ndarray | None] | None = None,
    min_idle: int = 1,
    hyperparams: Hyperparams,
    num_threads: int = 0,
    steps: Sequence[np.ndarray] | None = None,
    step: float = 0.0,
    streams: Sequence[int] | None = None,
) -> None: ...
def set_num_threads(num_threads: int) -> None: ...
def _install_torch_sqrt(
    *, float32: str, float64: str, vms_sqrt: int, vmd_sqrt: int, set_num_threads_local: int
) -> None: ...
def _torch_sqrt_installed() -> bool: ...
def _kernel_computes_square_root(isa: str, form: str, dtype: str) -> bool: ...
def _mkl_sqrt(form: str, values: np.ndarray) -> np.ndarray: ...
def _set_bf16_instructions(enabled: bool) -> bool: ...
def _bf16_instructions() -> bool: ...
def _set_write_staging(mode: str) -> None: ...
def _set_split_writes(mode: str) -> None: ...
def _cpu_has_zen_l1_utags() -> bool: ...
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
    compensations: Sequence[np.ndarray] | None = None,
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
        compensations: Sequence[np.ndarray] | None,
        steps: Sequence[np.ndarray],
        streams: Sequence[int] | None,
        *,
        momentum: bool,
        centered: bool,
        kahan: bool = False,
    ) -> None: ...
    def step(
        self,
        owners: Sequence[Any],
        *,
        hyperparams: Hyperparams,
        num_threads: int = 0,
        check_only: bool = False,
    ) -> bool: ...
    def __len__(self) -> int: ...
