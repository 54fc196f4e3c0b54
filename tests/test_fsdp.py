"""FSDP2 (fully_shard) on 2 gloo processes: rmsprop_ext.RMSprop updates each rank's shard natively,
in place, with torch.optim.RMSprop's results bit for bit, and distributed checkpoints move between
the two optimizers and from 2 ranks to 1 process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import HAS_TORCH
from helpers import run_on_two_ranks

if not HAS_TORCH:
    pytest.skip("needs PyTorch", allow_module_level=True)

import fsdp_child  # the child's model, data and comparisons, for the one process here
import rmsprop_ext
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

pytestmark = pytest.mark.spread_over_isas  # two torchrun ranks per test

CHILD = Path(__file__).resolve().parent / "fsdp_child.py"
TORCH_VERSION = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fsdp_train.py"


def run_suite(tmp_path: Path, suite: str, isa: str) -> dict:
    out = tmp_path / "report.pt"
    run_on_two_ranks(CHILD, suite, str(out), str(tmp_path), isa=isa, timeout=300)
    report = torch.load(out)
    assert report["world_size"] == 2
    return report


def test_fsdp2_float32_on_two_ranks_matches_torch_and_one_process(tmp_path: Path, isa: str) -> None:
    cases = run_suite(tmp_path, "train", isa)["cases"]
    assert len(cases) == len(fsdp_child.OPTIONS)
    for case in cases:
        assert case["differing"] == 0, case  # parameters bit for bit torch.optim.RMSprop's
        assert case["state_differing"] == 0, case  # and so is the sharded state
        # bit for bit one process stepping on the same global batch (as two accumulated halves),
        # where FSDP2's gradient reduction sums as one process accumulates: from torch 2.9 on
        # (torch 2.8's differs in some elements, for torch.optim.RMSprop as for this optimizer)
        assert case["single_process_differing"] == case["torch_single_process_differing"], case
        if TORCH_VERSION >= (2, 9):
            assert case["single_process_differing"] == 0, case
        # one forward of the whole batch rounds the gradient differently, as it does for torch
        assert case["gap_to_one_forward"] == case["torch_gap_to_one_forward"], case
        assert case["in_place_and_native"], case  # no gather, no copy, no torch path
        assert case["state_like_params"], case  # state DTensors placed like their parameters


def test_fsdp2_mixed_precision_on_two_ranks_matches_torch(tmp_path: Path, isa: str) -> None:
    cases = run_suite(tmp_path, "mixed", isa)["cases"]
    assert len(cases) == len(fsdp_child.OPTIONS)
    for case in cases:
        assert case["differing"] == 0, case
        assert case["state_differing"] == 0, case
        assert case["in_place_and_native"], case


def test_fsdp2_bfloat16_parameters_on_two_ranks_in_every_state_form(
    tmp_path: Path, isa: str
) -> None:
    cases = {case["form"]: case for case in run_suite(tmp_path, "bf16", isa)["cases"]}
    assert set(cases) == set(fsdp_child.FORMS)
    default = cases["bf16 state (torch's bits)"]
    assert default["differing"] == 0 and default["state_differing"] == 0, default
    for name, case in cases.items():
        assert case["in_place_and_native"] and case["state_like_params"], case
        # each shard stepped exactly as the same form steps a plain tensor of its values ...
        if name != "stochastic":
            assert case["shadow_differing"] == [0, 0], case
        else:
            # ... where the stochastic rounding of rank 1's shards draws from other streams than
            # a plain tensor (the shards of one parameter must not repeat each other's numbers)
            assert case["shadow_differing"][0] == 0, case
            assert case["shadow_differing"][1] > 0, case
        assert 0 < case["loss"] < 2 * case["torch_loss"], case  # and it trains


def test_checkpoints_of_two_ranks_move_between_optimizers_and_to_one_process(
    tmp_path: Path, isa: str
) -> None:
    report = run_suite(tmp_path, "checkpoint", isa)
    trips = {(trip["saver"], trip["loader"]): trip for trip in report["round_trips"]}
    assert set(trips) == {("rmsprop_ext", "torch"), ("torch", "rmsprop_ext")}
    for trip in trips.values():
        # the resumed run's next steps are the uninterrupted run's, bit for bit
        assert trip["differing"] == 0 and trip["state_differing"] == 0, trip
        assert trip["loaded_state_like_params"], trip

    # Saved by 2 ranks, loaded by this one process into plain tensors.
    model = fsdp_child.make_model()
    optimizer = rmsprop_ext.RMSprop(model.parameters(), lr=1e-2, **fsdp_child.OPTIONS[1])
    state = {
        "model": get_model_state_dict(model),
        "optim": get_optimizer_state_dict(model, optimizer),
    }
    with pytest.warns(UserWarning, match="load in a single process"):  # what we ask for
        dcp.load(state, checkpoint_id=tmp_path / "two_ranks", no_dist=True)
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])
    loaded = [
        value
        for p in model.parameters()
        for key, value in sorted(optimizer.state[p].items())
        if key != "step"
    ]
    assert fsdp_child.differing(loaded, report["saved_state"]) == 0
    for grads in fsdp_child.given_gradients(model, 5):
        for p, grad in zip(model.parameters(), grads):
            p.grad = grad
        optimizer.step()
    assert fsdp_child.differing(fsdp_child.full(model), report["continued"]) == 0


def test_fsdp_example_on_two_ranks_trains_alike_with_both_optimizers(isa: str) -> None:
    small = ["--width", "32", "--layers", "2", "--steps", "6", "--warmup", "2", "--log-every", "1"]
    outputs = {
        name: run_on_two_ranks(EXAMPLE, "--optimizer", name, *small, isa=isa, timeout=300)
        for name in ("rmsprop_ext", "torch")
    }
    losses = {name: re.findall(r"step +\d+ +loss (\S+)", out) for name, out in outputs.items()}
    assert len(losses["torch"]) == 6 and losses["rmsprop_ext"] == losses["torch"], outputs
    assert len(set(losses["torch"])) > 1, outputs  # it trains
    summary = re.compile(
        r"on 2 ranks, [\d,]+ parameters .*optimizer\.step [\d.]+ ms .* of the step"
    )
    assert summary.search(outputs["rmsprop_ext"]) and "native share 100%" in outputs["rmsprop_ext"]
    assert summary.search(outputs["torch"]), outputs
