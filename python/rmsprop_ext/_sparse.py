"""The optimizer's row-sparse steps: embedding tables whose gradients are sparse COO tensors.

A table's gradient names a few rows (``indices``) and holds their values; the native step updates
just those rows. Exact steps (``sparse="exact"``, the default) first bring each touched row
through the steps it sat out, in closed form (`rmsprop_ext._idle_steps`), so that every row read
where the docs say (`RMSprop.flush`, `state_dict`, a looked-up row with `watch_embeddings`) equals
the dense step's. The bookkeeping: ``state["row_step"]`` (int64, one per row: the last step each
row is up to date with) and ``state["idle_steps"]`` (float64, (4, length): the factors of the
recent steps). Lazy steps (``sparse="lazy"``) leave idle rows as they are, as TF1's
SparseApplyRMSProp did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import _core, _huge_pages, _idle_steps
from ._idle_steps import IdleSteps
from .functional import as_native_array, as_state_array

__all__ = [
    "SPARSE_MODES",
    "GroupTables",
    "SparseGradientError",
    "catch_up",
    "check_sparse_mode",
    "forget_rows",
    "is_sparse",
    "sparse_step",
    "table_parts",
    "without_bookkeeping",
]

SPARSE_MODES = ("exact", "lazy")
ROW_STEP = "row_step"
IDLE_STEPS = "idle_steps"
BOOKKEEPING = (ROW_STEP, IDLE_STEPS)


class SparseGradientError(RuntimeError, TypeError):
    """A sparse gradient RMSprop cannot take (a layout other than COO, or more than one sparse
    dimension). A RuntimeError, as torch.optim.RMSprop raises for every sparse gradient, and a
    TypeError, as rmsprop_ext raises for every argument of the wrong kind."""


def check_sparse_mode(mode: Any) -> None:
    if mode not in SPARSE_MODES:
        raise ValueError(f"Invalid sparse: {mode!r} (expected 'exact' or 'lazy')")


def is_sparse(grad: Tensor) -> bool:
    return grad.layout != torch.strided


def table_parts(p: Tensor, grad: Tensor, where: str) -> tuple[Tensor, Tensor]:
    """The row numbers (int64) and row values (contiguous, the parameter's dtype) of a sparse COO
    gradient of `p`; TypeError/ValueError naming `where` for anything else."""
    if grad.layout != torch.sparse_coo:
        raise SparseGradientError(
            f"{where} has a {grad.layout} gradient; rmsprop_ext takes sparse gradients in the COO "
            "layout (nn.Embedding(sparse=True), nn.EmbeddingBag(sparse=True))"
        )
    if grad.shape != p.shape:
        raise ValueError(
            f"{where} has shape {tuple(p.shape)} but its sparse gradient {tuple(grad.shape)}"
        )
    if p.dim() < 1 or grad.sparse_dim() != 1:
        raise SparseGradientError(
            f"{where}'s sparse gradient has {grad.sparse_dim()} sparse dimensions; a row-sparse "
            "step takes one (rows of a table), the rest dense"
        )
    if grad.dtype != p.dtype:
        raise TypeError(f"{where} has dtype {p.dtype} but its sparse gradient {grad.dtype}")
    if p.is_complex():
        raise TypeError(f"{where} is complex; row-sparse steps take real tables")
    return grad._indices()[0], grad._values().contiguous()


def _rows_state(state: dict[str, Any], p: Tensor, steps_done: int) -> None:
    """The exact steps' bookkeeping, made when a table first gets a sparse gradient: every row up
    to date with the steps done so far."""
    if ROW_STEP not in state:
        empty = torch.empty((p.shape[0],), dtype=torch.int64)
        state[ROW_STEP] = _huge_pages.filled_on_huge_pages(empty, steps_done)
        state[IDLE_STEPS] = torch.from_numpy(IdleSteps(_idle_steps.IDLE_STEPS_LENGTH).factors)


def without_bookkeeping(state: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """A state dict's "state" with each entry's bookkeeping left out (a state dict has every row
    up to date, see RMSprop.state_dict)."""
    return {
        key: {name: value for name, value in entries.items() if name not in BOOKKEEPING}
        for key, entries in state.items()
    }


def forget_rows(state: dict[str, Any]) -> None:
    for key in BOOKKEEPING:
        state.pop(key, None)


def _buffers(
    states: Sequence[dict[str, Any]], params: Sequence[Tensor], options: dict[str, Any]
) -> list[Any]:
    """The native call's table arguments: params, square_avgs, momentum_buffers, grad_avgs,
    compensations (numpy views)."""
    from .optimizer import _state_buffer

    def views(key: str) -> list[Any]:
        return [as_state_array(_state_buffer(s, key), f"{key}[{i}]") for i, s in enumerate(states)]

    return [
        [as_native_array(p, f"params[{i}]") for i, p in enumerate(params)],
        views("square_avg"),
        views("momentum_buffer") if options["momentum"] > 0 else None,
        views("grad_avg") if options["centered"] else None,
        views("compensation") if options["compensation"] == "kahan" else None,
    ]


def _row_arrays(states: Sequence[dict[str, Any]], exact: bool) -> tuple[Any, Any]:
    if not exact:
        return None, None
    return [s[ROW_STEP].numpy() for s in states], [s[IDLE_STEPS].numpy() for s in states]


def check_exact(options: dict[str, Any], where: str) -> None:
    if options["weight_decay"] and not options["decoupled_weight_decay"]:
        raise ValueError(
            f"sparse='exact' cannot step {where}: with weight_decay={options['weight_decay']} "
            "(coupled, added to the gradient) a row without gradient still has one, and its idle "
            "steps have no closed form. Use decoupled_weight_decay=True, sparse='lazy', or a "
            "dense gradient"
        )


def sparse_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    states: Sequence[dict[str, Any]],
    streams: Sequence[int],
    options: dict[str, Any],
    mode: str,
    hyperparams: _core.Hyperparams,
    num_threads: int,
    *,
    check_only: bool = False,
    where: Sequence[str] = (),
) -> None:
    """One row-sparse step of these tables (their state made by the optimizer), in one native
    call; everything checked before anything is written (with check_only, only checked)."""
    exact = mode == "exact"
    names = list(where) or [f"params[{i}]" for i in range(len(params))]
    parts = [table_parts(p, g, name) for p, g, name in zip(params, grads, names)]
    if exact:
        for name in names:
            check_exact(options, name)
    if check_only:
        if exact:  # the bookkeeping a first step would make, on copies
            fresh = [dict(s) for s in states]
            for s, p in zip(fresh, params):
                _rows_state(s, p, int(s["step"].item()))
            states = fresh
    else:
        # What runs before the step's own native call (rows swept up to date when they near the
        # end of the factors, a table turning lazy brought up to date) runs after its checks, so
        # that a step that fails changes nothing.
        lengths = [s[IDLE_STEPS].shape[1] if IDLE_STEPS in s else 0 for s in states]
        due = [
            i
            for i, (s, length) in enumerate(zip(states, lengths))
            if length and (not exact or IdleSteps.sweep_due(int(s["step"].item()), length))
        ]
        if due:
            sparse_step(
                params,
                grads,
                states,
                streams,
                options,
                mode,
                hyperparams,
                num_threads,
                check_only=True,
                where=names,
            )
        for i in due:
            catch_up(
                [params[i]],
                [states[i]],
                [streams[i]],
                options,
                hyperparams,
                num_threads,
                min_idle=lengths[i] // 2 if exact else 1,
            )
        for s, p in zip(states, params):
            if exact:
                _rows_state(s, p, int(s["step"].item()))
            else:
                forget_rows(s)
    row_steps, idle = _row_arrays(states, exact)
    _core.rmsprop_sparse_step_many(
        *_buffers(states, params, options),
        indices=[indices.numpy() for indices, _ in parts],
        values=[as_native_array(values, f"values[{i}]") for i, (_, values) in enumerate(parts)],
        row_steps=row_steps,
        idle=idle,
        hyperparams=hyperparams,
        num_threads=num_threads,
        check_only=check_only,
        steps=[s["step"].numpy() for s in states],
        streams=list(streams),
    )
    if check_only:
        return
    torch.autograd.graph.increment_version(list(params))
    if exact:
        for s in states:
            idle_steps = IdleSteps(factors=s[IDLE_STEPS].numpy())
            idle_steps.push(**options)


def catch_up(
    params: Sequence[Tensor],
    states: Sequence[dict[str, Any]],
    streams: Sequence[int],
    options: dict[str, Any],
    hyperparams: _core.Hyperparams,
    num_threads: int,
    *,
    rows: Sequence[Tensor | None] | None = None,
    min_idle: int = 1,
) -> None:
    """Brings rows of these exact tables up to date with the steps that have run: those named in
    rows[i] (int64 row numbers), or all; only rows idle for at least min_idle steps."""
    if not params:
        return
    indices = None
    if rows is not None:
        indices = [None if r is None else np.ascontiguousarray(r.numpy()) for r in rows]
    row_steps, idle = _row_arrays(states, True)
    _core.rmsprop_catch_up_rows(
        *_buffers(states, params, options),
        row_steps=row_steps,
        idle=idle,
        indices=indices,
        min_idle=min_idle,
        hyperparams=hyperparams,
        num_threads=num_threads,
        steps=[s["step"].numpy() for s in states],
        streams=list(streams),
    )
    torch.autograd.graph.increment_version(list(params))


class GroupTables:
    """One param group's tables in one optimizer step: those with a sparse gradient, and those with
    the exact steps' bookkeeping that now have a dense one (brought up to date, then dense)."""

    def __init__(self, group: dict[str, Any], g: int, options: dict[str, Any]):
        self.group, self.g, self.options = group, g, options
        self.params: list[Tensor] = []
        self.grads: list[Tensor] = []
        self.states: list[dict[str, Any]] = []
        self.streams: list[int] = []
        self.names: list[str] = []
        self.dense: list[tuple[Tensor, dict[str, Any], int]] = []

    def add(self, p: Tensor, state: dict[str, Any], stream: int, index: int) -> None:
        assert p.grad is not None
        self.params.append(p)
        self.grads.append(p.grad)
        self.states.append(state)
        self.streams.append(stream)
        self.names.append(f"param_groups[{self.g}]['params'][{index}]")

    def behind(self, p: Tensor, state: dict[str, Any], stream: int) -> None:
        self.dense.append((p, state, stream))

    def step(self, hyperparams: _core.Hyperparams, num_threads: int, check_only: bool) -> None:
        """With check_only, checks this step's tables (raising, writing nothing); otherwise
        brings the tables turning dense up to date (then drops their bookkeeping) and steps the
        sparse ones."""
        if not check_only and self.dense:
            params, states, streams = (list(column) for column in zip(*self.dense))
            catch_up(params, states, streams, self.options, hyperparams, num_threads)
            for state in states:
                forget_rows(state)
        if self.params:
            sparse_step(
                self.params,
                self.grads,
                self.states,
                self.streams,
                self.options,
                self.group["sparse"],
                hyperparams,
                num_threads,
                check_only=check_only,
                where=self.names,
            )
