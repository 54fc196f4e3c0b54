"""Tensor subclasses the native kernel cannot take (DTensor, as FSDP2 shards parameters) train
through the torch path with torch.optim.RMSprop's results, instead of failing."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import HAS_TORCH
from helpers import run_on_two_ranks

if not HAS_TORCH:
    pytest.skip("needs PyTorch", allow_module_level=True)

import torch

CHILD = Path(__file__).resolve().parent / "dtensor_child.py"


def test_dtensor_parameters_on_two_ranks_match_torch(tmp_path: Path, isa: str) -> None:
    out = tmp_path / "report.pt"
    run_on_two_ranks(CHILD, str(out), isa=isa, timeout=300)
    report = torch.load(out)
    assert report["world_size"] == 2
    assert len(report["cases"]) == 6
    for case in report["cases"]:
        assert case["differing"] == 0, case  # bitwise torch's, on every shard
        assert case["state_is_dtensor"], case  # state sharded like the parameter, as torch's
        assert case["coverage"] == 3, case  # all three took the torch path
