"""The convergence benchmark's second task: a character-level transformer language model on the
Python standard library's own source, which every machine with Python has.

Text: a fixed list of stdlib modules read from ``sysconfig``'s stdlib path (those present in this
Python), characters outside printable ASCII mapped to one symbol; the last tenth of the text is
held out. Model: a GPT-style decoder (pre-norm blocks of causal self-attention and a 4x GELU MLP,
learned positions, tied input/output embedding) of about 1M parameters. Training: RMSProp
(lr 1e-3, alpha 0.99), gradients clipped to norm 1, random windows of the training text, the
same seed giving the same initialisation and batches to every optimizer. The loss reported is
the held-out cross-entropy in nats per character, computed in float32 from the parameters as
they are (for bfloat16 runs: their bfloat16 values).
"""

from __future__ import annotations

import math
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import BF16_FORMS, ConvergeResult, Run, make_step

__all__ = ["CHARLM_RUNS", "CharLMConfig", "charlm_text", "encode_text", "run_charlm"]

MODULES = (
    "argparse.py",
    "ast.py",
    "collections/__init__.py",
    "dataclasses.py",
    "enum.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "inspect.py",
    "json/decoder.py",
    "json/encoder.py",
    "logging/__init__.py",
    "os.py",
    "random.py",
    "statistics.py",
    "string.py",
    "subprocess.py",
    "textwrap.py",
    "threading.py",
    "typing.py",
)
# Tab, newline and printable ASCII; anything else becomes the last symbol.
ALPHABET = "\t\n" + "".join(chr(c) for c in range(32, 127))
VOCAB = len(ALPHABET) + 1


@dataclass(frozen=True)
class CharLMConfig:
    steps: int = 2000
    eval_every: int = 200
    batch: int = 16
    context: int = 64
    width: int = 128
    layers: int = 5
    heads: int = 4
    lr: float = 1e-3
    alpha: float = 0.99
    eval_batches: int = 16


def charlm_text() -> str:
    """The modules of MODULES that this Python has, concatenated in that order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = [root / name for name in MODULES if (root / name).exists()]
    parts = [path.read_text(encoding="utf-8") for path in paths]
    if not parts:
        raise FileNotFoundError(f"none of the stdlib modules of the task are under {root}")
    return "\n".join(parts)


def encode_text(text: str) -> np.ndarray:
    """Symbol indices (uint8) of `text`."""
    table = np.full(128, VOCAB - 1, np.uint8)
    for i, ch in enumerate(ALPHABET):
        table[ord(ch)] = i
    codes = np.frombuffer(text.encode("ascii", errors="replace"), np.uint8)
    return table[np.minimum(codes, 127)]


def build_model(config: CharLMConfig) -> Any:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(config.width)
            self.qkv = nn.Linear(config.width, 3 * config.width)
            self.proj = nn.Linear(config.width, config.width)
            self.norm2 = nn.LayerNorm(config.width)
            self.mlp = nn.Sequential(
                nn.Linear(config.width, 4 * config.width),
                nn.GELU(),
                nn.Linear(4 * config.width, config.width),
            )

        def forward(self, x: Any) -> Any:
            b, t, c = x.shape
            q, k, v = self.qkv(self.norm1(x)).split(c, dim=2)
            shape = (b, t, config.heads, c // config.heads)
            q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
            return x + self.mlp(self.norm2(x))

    class CharLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(VOCAB, config.width)
            self.position = nn.Parameter(torch.zeros(config.context, config.width))
            self.blocks = nn.Sequential(*[Block() for _ in range(config.layers)])
            self.norm = nn.LayerNorm(config.width)
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            nn.init.normal_(self.position, std=0.02)

        def forward(self, tokens: Any) -> Any:
            x = self.embed(tokens) + self.position[: tokens.shape[1]]
            return self.norm(self.blocks(x)) @ self.embed.weight.t()  # tied output layer

    return CharLM()


def parameter_count(config: CharLMConfig | None = None) -> int:
    return sum(p.numel() for p in build_model(config or CharLMConfig()).parameters())


CHARLM_RUNS: list[Run] = [
    ("torch RMSprop fp32", "float32", "torch", {}),
    ("rmsprop_ext fp32", "float32", "ours", {}),
    *BF16_FORMS,
]


def run_charlm(
    label: str,
    dtype_name: str,
    kind: str,
    options: dict[str, Any],
    seed: int,
    config: CharLMConfig | None = None,
    data: np.ndarray | None = None,
) -> ConvergeResult:
    """One training run; the held-out loss every `config.eval_every` steps (and at step 0).
    `data`: the symbols to use instead of the whole text (the tests take a slice)."""
    import torch

    config = config or CharLMConfig()
    symbols = encode_text(charlm_text()) if data is None else data
    split = len(symbols) * 9 // 10
    train = torch.from_numpy(symbols[:split].astype(np.int64))
    held_out = torch.from_numpy(symbols[split:].astype(np.int64))
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(seed)
    model = build_model(config).to(dtype)
    params = list(model.parameters())
    step = make_step(kind, params, config.lr, config.alpha, options)
    batches = torch.Generator().manual_seed(10_000 + seed)
    window = torch.arange(config.context + 1)
    # Fixed held-out windows, the same for every run.
    count = config.batch * config.eval_batches
    starts = torch.linspace(0, len(held_out) - config.context - 2, count)
    eval_windows = held_out[starts.long()[:, None] + window]

    def loss_of(net: Any, windows: Any) -> Any:
        logits = net(windows[:, :-1])
        return torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, VOCAB), windows[:, 1:].reshape(-1)
        )

    def evaluate() -> float:
        reference = build_model(config)
        with torch.no_grad():
            for mine, theirs in zip(reference.parameters(), params):
                mine.copy_(theirs.float())
            losses = [
                float(loss_of(reference, eval_windows[i : i + config.batch]))
                for i in range(0, len(eval_windows), config.batch)
            ]
        return sum(losses) / len(losses)

    result = ConvergeResult("charlm", label, seed)
    result.losses.append(evaluate())
    for i in range(1, config.steps + 1):
        last = len(train) - config.context - 1
        offsets = torch.randint(0, last, (config.batch,), generator=batches)
        loss_of(model, train[offsets[:, None] + window]).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        step()
        if i % config.eval_every == 0:
            loss = evaluate()
            result.losses.append(loss if math.isfinite(loss) else float("inf"))
    return result
