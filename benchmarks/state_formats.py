"""How faithfully 8-bit formats keep real RMSProp state: the basis for the format of "8bit".

    python benchmarks/state_formats.py [--steps 300]

Trains the convergence benchmark's character language model with float32 state for a few
hundred steps, then encodes its square_avg and momentum_buffer in each candidate format and
measures what the update sees: the relative error of the denominator sqrt(v) + eps (square_avg)
and of the momentum buffer, per element, as median, 99th percentile and the share of elements off
by more than 25%. Candidates:

- rmsprop_ext's "8bit": small floats (4 exponent and 4 mantissa bits for square_avg, sign, 4
  exponent and 3 mantissa bits otherwise) times a power of two per block of 32 (and per block of
  256);
- linear absmax int8 per block of 256 (bitsandbytes' linear block-wise quantization);
- bitsandbytes' dynamic map per block of 256 (its 8-bit optimizers' format), when it is installed;
- linear uint8 of sqrt(v) per group of 32 with a float scale (FlashOptim's choice for Adam's v).

Only the round-to-nearest encodings are compared: the stochastic rounding the kernel adds keeps
each code unbiased, it does not make one code finer.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
from rmsprop_ext import _quantized
from rmsprop_ext.converge.charlm import CharLMConfig, build_model, charlm_text, encode_text

EPS = 1e-8


def train_state(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """square_avg and momentum_buffer of every parameter, flattened, after `steps` steps."""
    config = CharLMConfig()
    symbols = torch.from_numpy(encode_text(charlm_text()).astype(np.int64))
    torch.manual_seed(0)
    model = build_model(config)
    opt = torch.optim.RMSprop(model.parameters(), lr=config.lr, momentum=0.9)
    window = torch.arange(config.context + 1)
    for _ in range(steps):
        offsets = torch.randint(0, len(symbols) - config.context - 1, (config.batch,))
        batch = symbols[offsets[:, None] + window]
        logits = model(batch[:, :-1])
        torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        ).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    states = [opt.state[p] for p in model.parameters()]
    square = np.concatenate([s["square_avg"].numpy().ravel() for s in states])
    momentum = np.concatenate([s["momentum_buffer"].numpy().ravel() for s in states])
    return square, momentum


def blockwise(
    values: np.ndarray, block: int, encode: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """values round-tripped through `encode` (which maps one block to its decoded values)."""
    padded = np.zeros(-(-values.size // block) * block, np.float64)
    padded[: values.size] = values
    return np.concatenate([encode(b) for b in padded.reshape(-1, block)])[: values.size]


def tiny_float(x: np.ndarray, bias: int, mantissa: int) -> np.ndarray:
    """|x| < 2 rounded to floats with `mantissa` bits and exponents down to 1 - bias (below that,
    evenly spaced as the lowest binade), to nearest."""
    magnitude = np.abs(x)
    exponent = np.floor(np.log2(np.maximum(magnitude, 2.0**-300)))
    quantum = 2.0 ** (np.maximum(exponent, 1 - bias) - mantissa)
    return np.sign(x) * np.round(magnitude / quantum) * quantum


def ours(values: np.ndarray, signed: bool, block: int, earlier: bool = False) -> np.ndarray:
    """The "8bit" format with blocks of `block`; `earlier`: square_avg with the earlier layout
    (5 exponent bits, 3 mantissa bits)."""
    if block == _quantized.BLOCK and not earlier:  # the format itself, as the kernel stores it
        return _quantized.decode(*_quantized.encode(values, signed), signed).astype(np.float64)
    bias, mantissa = (15, 3) if signed else ((31, 3) if earlier else (15, 4))

    def one(b: np.ndarray) -> np.ndarray:
        scale = 2.0 ** (np.floor(np.log2(np.abs(b).max() + 1e-300)) + 1)
        return tiny_float(b / scale, bias, mantissa) * scale

    return blockwise(values, block, one)


def linear_absmax(values: np.ndarray, block: int) -> np.ndarray:
    def one(b: np.ndarray) -> np.ndarray:
        scale = np.abs(b).max() / 127 or 1.0
        return np.round(b / scale).clip(-127, 127) * scale

    return blockwise(values, block, one)


def sqrt_linear(values: np.ndarray, block: int) -> np.ndarray:
    def one(b: np.ndarray) -> np.ndarray:
        root = np.sqrt(b)
        scale = root.max() / 255 or 1.0
        return (np.round(root / scale).clip(0, 255) * scale) ** 2

    return blockwise(values, block, one)


def dynamic_map(values: np.ndarray, signed: bool, block: int) -> np.ndarray | None:
    try:
        import bitsandbytes.functional as bnbf  # type: ignore[import-not-found]
    except ImportError:
        return None
    table = bnbf.create_dynamic_map(signed=signed).numpy().astype(np.float64)
    table.sort()

    def one(b: np.ndarray) -> np.ndarray:
        scale = np.abs(b).max() or 1.0
        x = b / scale
        index = np.clip(np.searchsorted(table, x), 1, len(table) - 1)
        nearer_low = np.abs(x - table[index - 1]) <= np.abs(table[index] - x)
        return np.where(nearer_low, table[index - 1], table[index]) * scale

    return blockwise(values, block, one)


def errors(exact: np.ndarray, approx: np.ndarray) -> str:
    relative = np.abs(approx - exact) / np.maximum(np.abs(exact), 1e-30)
    return (
        f"median {np.median(relative):8.4f}  p99 {np.percentile(relative, 99):8.4f}  "
        f">25%: {np.mean(relative > 0.25) * 100:6.2f}% of elements"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    square, momentum = train_state(args.steps)
    print(f"state of {square.size:,} elements after {args.steps} steps")
    exact_denominator = np.sqrt(square.astype(np.float64)) + EPS
    candidates: list[tuple[str, np.ndarray | None, np.ndarray | None]] = [
        ("rmsprop_ext 8bit, block 32", ours(square, False, 32), ours(momentum, True, 32)),
        (
            "earlier 8bit (3 mantissa bits for v)",
            ours(square, False, 32, earlier=True),
            ours(momentum, True, 32),
        ),
        ("the same floats, block 256", ours(square, False, 256), ours(momentum, True, 256)),
        ("linear absmax int8, block 256", linear_absmax(square, 256), linear_absmax(momentum, 256)),
        (
            "bitsandbytes dynamic map, block 256",
            dynamic_map(square, False, 256),
            dynamic_map(momentum, True, 256),
        ),
        ("linear uint8 of sqrt(v), group 32", sqrt_linear(square, 32), None),
    ]
    for name, square_approx, momentum_approx in candidates:
        if square_approx is None:
            print(f"{name:38} (bitsandbytes not installed)")
            continue
        print(f"{name:38} sqrt(v)+eps: {errors(exact_denominator, np.sqrt(square_approx) + EPS)}")
        if momentum_approx is not None:
            print(f"{'':38} momentum:    {errors(momentum, momentum_approx)}")


if __name__ == "__main__":
    main()
