"""The convergence benchmark: the airfoil task (the shipped data and the book's loss), the
character language model and the word vectors with sparse gradients."""

from __future__ import annotations

import numpy as np
import pytest
from rmsprop_ext.converge import AIRFOIL_RUNS, CharLMConfig, airfoil_data, run_airfoil, summary
from rmsprop_ext.converge.charlm import (
    ALPHABET,
    VOCAB,
    charlm_text,
    encode_text,
    parameter_count,
    run_charlm,
)
from rmsprop_ext.converge.common import BF16_FORMS, ConvergeResult
from rmsprop_ext.converge.embeddings import (
    EMBEDDINGS_RUNS,
    EmbeddingsConfig,
    run_embeddings,
    stdlib_tokens,
)

torch = pytest.importorskip("torch")


def test_airfoil_data_is_the_standardised_first_1500_rows() -> None:
    data = airfoil_data()
    assert data.shape == (1500, 6)
    assert abs(float(data[:, 0].mean())) < 0.05  # standardised over all 1503 rows


@pytest.mark.parametrize("run", AIRFOIL_RUNS, ids=[r[0] for r in AIRFOIL_RUNS])
def test_every_run_reaches_the_books_loss(run: tuple, isa: str) -> None:
    # d2l reports 0.244 after 2 epochs (scratch and concise RMSProp, lr 0.01, gamma 0.9).
    result = run_airfoil(*run, seed=0)
    assert len(result.losses) == 1 + 2 * 1500 // 200
    assert 0.235 < result.final < 0.255, result.final
    assert result.losses[0] > 0.4  # it did train


def test_summary_checks_the_bfloat16_runs_against_the_float32_band() -> None:
    runs = [r for r in AIRFOIL_RUNS if r[0] in ("rmsprop_ext fp32", "rmsprop_ext bf16, bf16 state")]
    results = [run_airfoil(*r, seed=s) for r in runs for s in range(2)]
    lines = summary(results)
    assert any("bf16, bf16 state" in line and "fp32 band" in line for line in lines)


def test_summary_judges_a_form_by_its_mean_and_pairs_the_seeds() -> None:
    def runs(label: str, finals: list[float]) -> list[ConvergeResult]:
        return [ConvergeResult("t", label, seed, [2.0, f]) for seed, f in enumerate(finals)]

    fp32 = runs("rmsprop_ext fp32", [1.0, 1.1, 1.2])  # band [1.0, 1.2]
    mean_inside = runs("bf16 a", [0.9, 1.1, 1.3])  # two seeds outside, mean 1.1
    mean_outside = runs("bf16 b", [1.25, 1.25, 1.3])  # mean 1.2667
    lines = summary(fp32 + mean_inside + mean_outside)
    line_a = next(line for line in lines if "bf16 a" in line)
    line_b = next(line for line in lines if "bf16 b" in line)
    assert "mean within the fp32 band" in line_a and "+0.0000 vs fp32 on the same seeds" in line_a
    assert "mean OUTSIDE the fp32 band" in line_b and "+0.1667 vs fp32" in line_b


# The character language model, in a small configuration (the benchmark's is ~1M parameters and
# 2000 steps).
TINY = CharLMConfig(
    steps=8, eval_every=4, batch=4, context=16, width=32, layers=1, heads=2, eval_batches=2
)


def test_charlm_text_is_the_stdlib_source() -> None:
    text = charlm_text()
    assert len(text) > 200_000 and "def " in text
    symbols = encode_text(text)
    assert symbols.max() < VOCAB and symbols.dtype == np.uint8
    assert ALPHABET[symbols[text.index("def ")]] == "d"


def test_charlm_torch_and_rmsprop_ext_train_the_same_model_in_float32() -> None:
    data = encode_text(charlm_text()[:50_000])
    theirs = run_charlm("torch", "float32", "torch", {}, 0, TINY, data)
    ours = run_charlm("ours", "float32", "ours", {}, 0, TINY, data)
    assert len(ours.losses) == 1 + TINY.steps // TINY.eval_every
    assert ours.losses == theirs.losses  # rmsprop_ext's default rounding is torch's
    assert ours.final < ours.losses[0] - 0.3  # it learns


@pytest.mark.parametrize("run", BF16_FORMS, ids=[r[0] for r in BF16_FORMS])
def test_charlm_trains_in_every_bfloat16_form(run: tuple) -> None:
    result = run_charlm(*run, seed=1, config=TINY, data=encode_text(charlm_text()[:50_000]))
    assert all(np.isfinite(result.losses))
    assert result.final < result.losses[0] - 0.3


def test_parameter_count_is_about_a_million() -> None:
    assert 1_000_000 <= parameter_count() <= 1_100_000


EMBEDDINGS_TINY = EmbeddingsConfig(
    steps=40, eval_every=20, vocabulary=2000, dim=16, batch=64, eval_pairs=256
)


@pytest.mark.spread_over_isas  # the kernels are checked on every one elsewhere
def test_embeddings_sparse_exact_trains_as_dense_and_lazy_does_not() -> None:
    tokens, counts = stdlib_tokens(EMBEDDINGS_TINY)
    assert counts.sum() == len(tokens) > 100_000 and len(counts) == EMBEDDINGS_TINY.vocabulary
    data = (tokens[:60_000], np.bincount(tokens[:60_000], minlength=EMBEDDINGS_TINY.vocabulary))
    runs = {run[0]: run_embeddings(*run, 0, EMBEDDINGS_TINY, data) for run in EMBEDDINGS_RUNS}
    dense = runs["rmsprop_ext, dense"].losses
    assert runs["torch RMSprop, dense"].losses == pytest.approx(dense, abs=1e-6)
    assert runs["rmsprop_ext, sparse exact"].losses == pytest.approx(dense, abs=1e-5)
    assert runs["rmsprop_ext, sparse lazy"].losses[-1] != pytest.approx(dense[-1], abs=1e-5)
    assert dense[-1] < dense[0] - 0.05  # it learns
    assert all(r.step_ms > 0 for r in runs.values())
    lines = summary(list(runs.values()))
    assert any("sparse exact: largest |loss - dense loss|" in line for line in lines)
