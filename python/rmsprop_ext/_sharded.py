"""DTensor parameters (FSDP2's sharded parameters) updated natively, one local shard per rank.

A DTensor's local tensor is a plain tensor sharing its storage, so the kernel can update it in
place, as torch's ops on the DTensor do (elementwise ops on operands of one mesh and placements
run on the local tensors). That holds only when the gradient and every state buffer are DTensors
of the parameter's mesh, placements and shape; anything else keeps the torch path, where DTensor
itself decides.
"""

from __future__ import annotations

import sys
from typing import Any

from torch import Tensor

from . import _core
from ._torch_fallback import has_plain_data, native_ok
from .functional import as_native_array, as_state_array

__all__ = ["ShardedStep", "dtensor_type", "local_shards", "native_shard_ok", "shard_stream"]

# The stochastic rounding's stream of a shard: the parameter's stream plus this many times the
# shard's index, so shards of one parameter draw different numbers and replicas the same ones.
_STREAMS_PER_SHARD = 1 << 32


def dtensor_type() -> Any:
    """torch's DTensor class, or None when no DTensor can exist yet (its module not imported):
    the check costs nothing for programs that never shard."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None) if module is not None else None


def local_shards(param: Any, others: list[Any]) -> list[Any] | None:
    """The local tensors of `param` and of `others` (its gradient, state buffers, None for unused
    ones) when `param` is a DTensor and every other one a DTensor of its mesh, placements and
    shape with a plain local tensor; None otherwise (and for 8-bit (codes, exponents) state)."""
    dtensor = dtensor_type()
    if dtensor is None or not isinstance(param, dtensor):
        return None
    spec = param._spec  # mesh, placements and global shape, read without building new objects
    locals_: list[Any] = [_plain_local(param)]
    for other in others:
        if other is None:
            locals_.append(None)
            continue
        if not isinstance(other, dtensor):
            return None
        if not _same_layout(other._spec, spec):
            return None
        locals_.append(_plain_local(other))
    if any(t is not None and t.shape != locals_[0].shape for t in locals_):
        return None
    if not native_ok(locals_[0]) or any(t is not None and not has_plain_data(t) for t in locals_):
        return None
    return locals_


def native_shard_ok(param: Any) -> bool:
    """True for a DTensor parameter whose local tensor the native kernel can update in place."""
    dtensor = dtensor_type()
    return dtensor is not None and isinstance(param, dtensor) and native_ok(_plain_local(param))


def shard_stream(param: Any, stream: int) -> int:
    """The stochastic rounding's stream of this rank's shard of `param`: `stream` for a plain
    tensor and on ranks holding the same replica, distinct per shard of a sharded dimension."""
    dtensor = dtensor_type()
    if dtensor is None or not isinstance(param, dtensor):
        return stream
    mesh = param.device_mesh
    coordinate = mesh.get_coordinate() or []
    shard = 0
    for dim, placement in enumerate(param.placements):
        if placement.is_shard():
            shard = shard * mesh.size(dim) + coordinate[dim]
    return stream + shard * _STREAMS_PER_SHARD


def _same_layout(spec: Any, other: Any) -> bool:
    """Two DTensor specs with the same mesh, placements and global shape: their local tensors
    hold the same elements of the same logical tensor."""
    return (
        (spec.mesh is other.mesh or spec.mesh == other.mesh)
        and spec.placements == other.placements
        and spec.shape == other.shape
    )


def _plain_local(tensor: Any) -> Tensor:
    # _local_tensor is what to_local() returns outside autograd, without building a graph node.
    local: Tensor = tensor._local_tensor
    return local


class ShardedStep:
    """A group's prepared step when every parameter is a DTensor updated natively: the local
    arrays of the parameters and their state, the step counters and the streams are gathered once;
    each step only reads the gradients' local tensors and makes one native call.

    Valid while the group holds the same parameter objects with the same local tensors, and the
    state the same tensors (the optimizer drops its prepared steps when a state entry is
    replaced); `step` returns False, having written nothing, when that no longer holds or a
    gradient is missing or not a DTensor like its parameter.
    """

    def __init__(
        self,
        params: list[Any],
        buffers: list[list[Any]],
        steps: list[Any],
        streams: list[int],
        form: tuple[bool, bool, str | None],
    ) -> None:
        self.params = params
        self.locals = [_plain_local(p) for p in params]
        self.specs = [p._spec for p in params]
        self.arrays = [as_native_array(local, "param") for local in self.locals]
        self.buffers = buffers
        self.steps = steps
        self.streams = streams
        self.form = form  # (momentum, centered, compensation) the buffers were gathered for

    @staticmethod
    def build(
        params: list[Any], states: list[dict[str, Any]], group: dict[str, Any], first_stream: int
    ) -> ShardedStep | None:
        momentum, centered = group["momentum"] > 0, group["centered"]
        compensation = group["compensation"]
        names = ["square_avg"]
        names += ["momentum_buffer"] if momentum else []
        names += ["grad_avg"] if centered else []
        names += ["compensation"] if compensation == "kahan" else []
        buffers: list[list[Any]] = [[] for _ in names]
        try:
            for p, state in zip(params, states):
                local = local_shards(p, [p.grad, *(state.get(name) for name in names)])
                if local is None or any(t is None for t in local):
                    return None
                for column, tensor, name in zip(buffers, local[2:], names):
                    column.append(as_state_array(tensor, name))
            steps = [state["step"].numpy() for state in states]
        except (TypeError, ValueError, KeyError, RuntimeError):
            return None  # state the fast path cannot hold: the general step takes every step
        streams = [shard_stream(p, first_stream + i) for i, p in enumerate(params)]
        return ShardedStep(params, buffers, steps, streams, (momentum, centered, compensation))

    def step(
        self,
        params: list[Any],
        group: dict[str, Any],
        hyperparams: Any,
        num_threads: int,
        check_only: bool = False,
    ) -> bool:
        form = (group["momentum"] > 0, group["centered"], group["compensation"])
        if form != self.form or len(params) != len(self.params):
            return False
        dtensor = dtensor_type()
        grads = []
        for p, mine, local, spec in zip(params, self.params, self.locals, self.specs):
            grad = p.grad
            if p is not mine or p._local_tensor is not local or not isinstance(grad, dtensor):
                return False
            if not _same_layout(grad._spec, spec):
                return False
            grad_local = grad._local_tensor
            if not (has_plain_data(grad_local) and grad_local.is_contiguous()):
                return False
            grads.append(as_native_array(grad_local, "grad"))
        momentum, centered, kahan = self.form[0], self.form[1], self.form[2] == "kahan"
        column = iter(self.buffers)
        square_avgs = next(column)
        _core.rmsprop_step_many(
            self.arrays,
            grads,
            square_avgs,
            next(column) if momentum else None,
            next(column) if centered else None,
            next(column) if kahan else None,
            hyperparams=hyperparams,
            num_threads=num_threads,
            check_only=check_only,
            steps=self.steps,
            streams=self.streams,
        )
        return True

    def updated(self, params: list[Any]) -> list[Any]:
        """What autograd must be told changed after a step of `params` (this step's very
        parameters): the DTensors and their local tensors."""
        return [*self.locals, *params]
