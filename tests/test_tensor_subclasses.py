"""DTensor parameters (FSDP2's sharded parameters, here made with distribute_tensor) are updated
natively shard by shard with torch.optim.RMSprop's results; other tensor subclasses take the torch
path, and the functional API says what to pass instead."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import HAS_TORCH
from helpers import run_on_two_ranks

if not HAS_TORCH:
    pytest.skip("needs PyTorch", allow_module_level=True)

import rmsprop_ext
import torch

CHILD = Path(__file__).resolve().parent / "dtensor_child.py"


@pytest.mark.spread_over_isas
def test_dtensor_parameters_on_two_ranks_match_torch(tmp_path: Path, isa: str) -> None:
    out = tmp_path / "report.pt"
    run_on_two_ranks(CHILD, str(out), isa=isa, timeout=300)
    report = torch.load(out)
    assert report["world_size"] == 2
    assert len(report["cases"]) == 6
    for case in report["cases"]:
        assert case["differing"] == 0, case  # bitwise torch's, on every shard
        assert case["state_is_dtensor"], case  # state sharded like the parameter, as torch's
        assert case["coverage"] == 0, case  # all three updated natively, shard by shard
    assert report["stochastic"] == {
        "shards_differ": True,
        "replicas_equal": True,
        "replicas_moved": True,
        "native": True,
    }
    changes = report["changes"]
    assert changes["differing"] == 0, changes
    assert changes["prepared_steps"] >= 20, changes  # most steps took the prepared step


@pytest.fixture
def one_rank_dtensor() -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Makes DTensors on a one-process mesh, which lives as long as the test.

    The mesh runs on torch's fake process group (its collectives do nothing, which one process
    needs), not gloo: up to torch 2.7, gloo's destructor joins its worker threads holding the GIL
    while a worker may still need it to free a finished collective's tensor (pytorch/pytorch#154976,
    in torch 2.8), and this fixture's teardown hung CI's torch 2.7 job that way."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, distribute_tensor
    from torch.testing._internal.distributed.fake_pg import FakeStore

    assert not dist.is_initialized()
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=1)
    mesh = init_device_mesh("cpu", (1,))
    try:
        yield lambda values: distribute_tensor(values, mesh, [Replicate()])
    finally:
        dist.destroy_process_group()


def test_functional_step_names_a_dtensor_argument_and_what_to_pass(
    one_rank_dtensor: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    param = one_rank_dtensor(torch.ones(5))
    square_avg = torch.zeros(5)
    with pytest.raises(TypeError, match=r"param is a DTensor.*to_local\(\)"):
        rmsprop_ext.rmsprop_step(param, torch.ones(5), square_avg, lr=0.1)
    assert torch.equal(square_avg, torch.zeros(5))
    # its local tensor is what the kernel takes, updated in place
    rmsprop_ext.rmsprop_step(param.to_local(), torch.ones(5), square_avg, lr=0.1)
    assert not torch.equal(param.to_local(), torch.ones(5))


def test_eight_bit_state_of_a_dtensor_parameter_is_refused_when_the_optimizer_is_made(
    one_rank_dtensor: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    param = torch.nn.Parameter(one_rank_dtensor(torch.ones(64)))
    with pytest.raises(ValueError, match=r"state_dtype='8bit' needs plain tensors.*DTensor"):
        rmsprop_ext.RMSprop([param], state_dtype="8bit")
    native = rmsprop_ext.RMSprop([param], state_dtype=torch.bfloat16)
    assert native.native_coverage()["native"] == 1


class Wrapped(torch.Tensor):
    """A minimal wrapper subclass that dispatches its own ops (as DTensor does) around a plain
    tensor: the native kernel cannot see its values as one buffer."""

    inner: torch.Tensor

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> Wrapped:
        wrapper = torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype)
        wrapper.inner = inner
        return wrapper

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        from torch.utils._pytree import tree_map

        def unwrap(t: object) -> object:
            return t.inner if isinstance(t, Wrapped) else t

        def wrap(t: object) -> object:
            plain = isinstance(t, torch.Tensor) and not isinstance(t, Wrapped)
            return Wrapped(t) if plain else t

        out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs or {}))
        return tree_map(wrap, out)


def test_other_tensor_subclasses_take_the_torch_path_with_torch_results() -> None:
    generator = torch.Generator().manual_seed(6)
    start = torch.randn(3, 33, generator=generator)
    ours, theirs = Wrapped(start.clone()), Wrapped(start.clone())
    options = {"lr": 1e-2, "momentum": 0.9, "centered": True, "weight_decay": 0.1}
    our_opt = rmsprop_ext.RMSprop([ours], **options)
    torch_opt = torch.optim.RMSprop([theirs], foreach=False, **options)
    for _ in range(10):
        grad = torch.randn(3, 33, generator=generator)
        ours.grad, theirs.grad = Wrapped(grad), Wrapped(grad.clone())
        our_opt.step()
        torch_opt.step()
    assert torch.equal(ours.inner, theirs.inner)
    assert not torch.equal(ours.inner, start)
    coverage = our_opt.native_coverage()
    assert coverage["fallback_params"] == [(0, 0, "tensor subclass Wrapped")]
