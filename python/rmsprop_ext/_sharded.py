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

from ._torch_fallback import has_plain_data, native_ok

__all__ = ["dtensor_type", "local_shards", "native_shard_ok", "shard_stream"]

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
    locals_: list[Any] = [_plain_local(param)]
    for other in others:
        if other is None:
            locals_.append(None)
            continue
        if not (
            isinstance(other, dtensor)
            and other.device_mesh == param.device_mesh
            and other.placements == param.placements
            and other.shape == param.shape
        ):
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


def _plain_local(tensor: Any) -> Tensor:
    # _local_tensor is what to_local() returns outside autograd, without building a graph node.
    local: Tensor = tensor._local_tensor
    return local
