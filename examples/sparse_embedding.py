"""An embedding table with sparse gradients, stepped by rmsprop_ext.RMSprop: only the rows a batch
looks up are touched, and the result is the dense step's.

    python examples/sparse_embedding.py
    torchrun --standalone --nproc-per-node 2 examples/sparse_embedding.py --ddp

The model is a bag of words: nn.EmbeddingBag(sparse=True) averages the embeddings of each
sample's tokens, a linear layer scores them. The table's gradient is a sparse COO tensor; the
linear layer's is dense; both are in one optimizer. With momentum the rows a batch leaves out
keep moving in the dense step, so ``watch_embeddings`` brings the rows a forward looks up up to
date first; ``state_dict()`` brings every row up to date. With --ddp each of the ranks trains a
DistributedDataParallel copy on its share of every global batch (gloo, which sums sparse
gradients). Prints the losses; with --out, rank 0 saves the final parameters.
"""

from __future__ import annotations

import argparse
import os
import sys

import rmsprop_ext
import torch

VOCABULARY, DIM, TOKENS, GLOBAL_BATCH = 5000, 16, 12, 32
HYPERPARAMS = {"lr": 1e-2, "momentum": 0.9, "centered": True}


class BagOfWords(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.EmbeddingBag(VOCABULARY, DIM, mode="mean", sparse=True)
        self.head = torch.nn.Linear(DIM, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.table(tokens)).squeeze(1)


def global_batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Token ids drawn from a Zipf-like law (a few words are most of the text), and targets."""
    gen = torch.Generator().manual_seed(1)
    weights = 1.0 / torch.arange(1, VOCABULARY + 1, dtype=torch.float64)
    batches = []
    for _ in range(steps):
        tokens = torch.multinomial(weights, GLOBAL_BATCH * TOKENS, True, generator=gen)
        batches.append(
            (tokens.view(GLOBAL_BATCH, TOKENS), torch.randn(GLOBAL_BATCH, generator=gen))
        )
    return batches


def train(steps: int, ddp: bool) -> tuple[BagOfWords, list[float]]:
    model = BagOfWords()
    rank, world = 0, 1
    module: torch.nn.Module = model
    if ddp:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        module = DistributedDataParallel(model)
    optimizer = rmsprop_ext.RMSprop(model.parameters(), **HYPERPARAMS)
    optimizer.watch_embeddings(model)  # looked-up rows up to date before each forward
    losses = []
    for tokens, target in global_batches(steps):
        share = slice(rank, None, world)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(module(tokens[share]), target[share])
        loss.backward()  # the table's gradient: sparse (DDP averages it over the ranks)
        optimizer.step()
        losses.append(loss.item())
    optimizer.flush()  # every row up to date (state_dict() would do it too)
    return model, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--ddp", action="store_true", help="run under torchrun, gloo backend")
    parser.add_argument("--out", help="rank 0 saves the final parameters here")
    args = parser.parse_args()
    model, losses = train(args.steps, args.ddp)
    rank = 0
    if args.ddp:
        import torch.distributed as dist

        rank = dist.get_rank()
    if rank == 0:
        print("losses: " + " ".join(f"{v:.4f}" for v in losses))
        if args.out:
            torch.save([p.detach().clone() for p in model.parameters()], args.out)
    if args.ddp:
        import torch.distributed as dist

        # Every rank done, then out without gloo's teardown: up to torch 2.7 its destructor can
        # deadlock on the GIL with a worker thread still freeing a finished collective's tensor
        # (pytorch/pytorch#154976, fixed in torch 2.8).
        dist.barrier()
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
