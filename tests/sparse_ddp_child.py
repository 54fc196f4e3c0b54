"""Rank script of tests/test_sparse.py's DDP test: examples/sparse_embedding.py's training under
DistributedDataParallel; rank 0 saves the final parameters to argv[2]; argv[1] is the steps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from helpers import leave_when_every_rank_is_done

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sparse_embedding.py"


def main() -> None:
    spec = importlib.util.spec_from_file_location("sparse_embedding", EXAMPLE)
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model, _ = example.train(int(sys.argv[1]), ddp=True)
    if dist.get_rank() == 0:
        torch.save([p.detach().clone() for p in model.parameters()], sys.argv[2])
    leave_when_every_rank_is_done()


if __name__ == "__main__":
    main()
