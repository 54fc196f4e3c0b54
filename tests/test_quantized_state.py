"""The 8-bit block state ("8bit"): the format's encoder and decoder, the kernel's encoding bit for
bit against them on every ISA and thread count, and the kernel against the float64 reference
step by step."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import rmsprop_ext
from rmsprop_ext import _precision, _quantized
from rmsprop_ext.reference import rmsprop_reference_stored
from test_low_precision import BF16_PATHS, LARGE_SIZE, OPTIONS, STEPS, options_id, ulps

torch = pytest.importorskip("torch")

BLOCK = _quantized.BLOCK
SIZES = [0, 1, 7, 33, 1023]
# (param dtype, compensation) with 8-bit state
FORMS = [
    ("float32", None),
    ("bfloat16", None),
    ("bfloat16", "kahan"),
    ("bfloat16", "stochastic"),
    ("float16", None),
    ("float16", "kahan"),
    ("float16", "stochastic"),
]


@pytest.fixture(params=BF16_PATHS, ids=lambda on: "bf16-instructions" if on else "bf16-integer")
def bf16_path(request: pytest.FixtureRequest) -> Any:
    previous = rmsprop_ext._core._bf16_instructions()
    assert rmsprop_ext._core._set_bf16_instructions(request.param)
    yield request.param
    rmsprop_ext._core._set_bf16_instructions(previous)


def wide_values(size: int, seed: int, positive: bool = False) -> np.ndarray:
    """float32 values over a wide range of magnitudes (2^-20 to 2^8), mixed signs."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(size) * np.exp2(rng.uniform(-20, 8, size))
    return np.abs(values).astype(np.float32) if positive else values.astype(np.float32)


# The format on its own


@pytest.mark.parametrize("signed", [False, True])
def test_every_code_decodes_and_encodes_back_to_itself(signed: bool) -> None:
    codes = np.arange(256, dtype=np.uint8)
    for exponent in (-126, -40, 0, 17, 126):
        exponents = np.full(_quantized.exponent_count(codes.size), exponent, np.int8)
        values = _quantized.decode(codes, exponents, signed)
        again, again_exponents = _quantized.encode(values, signed)
        decoded_again = _quantized.decode(again, again_exponents, signed)
        # The exponent follows the block's largest value, so codes may shift; values may not.
        np.testing.assert_array_equal(decoded_again, values)
        random = np.random.default_rng(exponent + 200).integers(0, 2**32, 256, dtype=np.uint32)
        stochastic, _ = _quantized.encode(values, signed, random)
        np.testing.assert_array_equal(
            _quantized.decode(stochastic, again_exponents, signed), values
        )


@pytest.mark.parametrize("signed", [False, True])
def test_round_to_nearest_is_within_half_a_code(signed: bool) -> None:
    values = wide_values(BLOCK * 200, 1, positive=not signed)
    codes, exponents = _quantized.encode(values, signed)
    decoded = _quantized.decode(codes, exponents, signed).astype(np.float64)
    exact = values.astype(np.float64)
    scale = np.exp2(np.repeat(exponents.astype(np.float64), BLOCK))
    # square_avg: 4 exponent bits, 4 mantissa bits; momentum_buffer, grad_avg: a sign bit, 4
    # exponent bits, 3 mantissa bits. Both with exponents 2^(e - 15).
    bias, mantissa = 15, 3 if signed else 4
    smallest_normal = scale * 2.0 ** (1 - bias)
    normal = np.abs(exact) >= smallest_normal
    # Half the spacing of the mantissa bits: 2^-(mantissa + 1) of the value's binade.
    relative = np.abs(decoded - exact)[normal] / np.abs(exact)[normal]
    assert relative.max() <= 2.0 ** -(mantissa + 1)
    # Below, codes are evenly spaced by 2^(1 - bias - mantissa) of the block's scale.
    absolute = np.abs(decoded - exact)[~normal] / scale[~normal]
    assert absolute.max(initial=0) <= 2.0 ** (1 - bias - mantissa) / 2
    assert np.all(np.sign(decoded[decoded != 0]) == np.sign(exact[decoded != 0]))
    # The block's exponent is the smallest with every magnitude below 2^E.
    largest = np.abs(exact).reshape(-1, BLOCK).max(axis=1)
    assert np.all(largest < np.exp2(exponents.astype(np.float64)))
    assert np.all(largest >= np.exp2(exponents.astype(np.float64) - 1))


def test_non_finite_blocks_read_back_as_nan_and_zero_blocks_as_zero() -> None:
    values = np.zeros(BLOCK * 3 + 5, np.float32)
    values[BLOCK + 3] = np.inf
    values[2 * BLOCK] = np.nan
    codes, exponents = _quantized.encode(values, True)
    decoded = _quantized.decode(codes, exponents, True)
    assert list(exponents) == [-126, _quantized.NON_FINITE, _quantized.NON_FINITE, -126]
    assert np.all(decoded[:BLOCK] == 0)
    assert np.all(np.isnan(decoded[BLOCK : 3 * BLOCK]))
    assert np.all(decoded[3 * BLOCK :] == 0)


def test_stochastic_rounding_of_codes_is_unbiased() -> None:
    # A value a third of the way between two codes: the mean of many roundings lands on it.
    value = np.float32(1.0 + 1.0 / 48.0) * np.float32(0.5)  # between 0.5 and 0.53125
    values = np.full(BLOCK * 4000, value, np.float32)
    random = np.random.default_rng(5).integers(0, 2**32, values.size, dtype=np.uint32)
    codes, exponents = _quantized.encode(values, False, random)
    mean = float(_quantized.decode(codes, exponents, False).astype(np.float64).mean())
    assert abs(mean - float(value)) < 2e-4
    nearest, nearest_exponents = _quantized.encode(values, False)
    assert np.all(_quantized.decode(nearest, nearest_exponents, False) == np.float32(0.5))


def test_stochastic_state_tracks_a_running_average_that_round_to_nearest_stalls() -> None:
    # Why the kernel rounds 8-bit state stochastically: square_avg <- 0.99 s + 0.01 g^2 moves by
    # about 1% a step, less than half the spacing of its codes, so round to nearest stops short.
    alpha, target, size = 0.99, 4.0, BLOCK * 64
    random_source = np.random.default_rng(9)
    stochastic = nearest = (np.zeros(size, np.uint8), np.zeros(size // BLOCK, np.int8))
    for _ in range(1500):
        for name in ("stochastic", "nearest"):
            codes, exponents = stochastic if name == "stochastic" else nearest
            old = _quantized.decode(codes, exponents, False)
            new = (alpha * old + (1 - alpha) * target).astype(np.float32)
            if name == "stochastic":
                random = random_source.integers(0, 2**32, size, dtype=np.uint32)
                stochastic = _quantized.encode(new, False, random)
            else:
                nearest = _quantized.encode(new, False)
    stochastic_mean = _quantized.decode(*stochastic, False).mean()
    nearest_mean = _quantized.decode(*nearest, False).mean()
    assert abs(stochastic_mean / target - 1) < 0.02
    assert nearest_mean < 0.5 * target


# The kernel's encoding, bit for bit


def eight_bit(size: int, signed: bool, seed: int = 0, scale: float = 1.0) -> tuple[Any, Any]:
    """Codes and exponents (torch tensors) of random values."""
    values = wide_values(size, seed, positive=not signed) * np.float32(scale)
    codes, exponents = _quantized.encode(values, signed)
    return torch.from_numpy(codes), torch.from_numpy(exponents)


def kernel_random_bits(size: int, use: str, step: int) -> np.ndarray:
    return _precision.random_bits(7, 3, step, size, use=use)


@pytest.mark.parametrize("param_dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("size", [*SIZES, LARGE_SIZE])
def test_kernel_encodes_state_bit_for_bit_like_the_format(
    param_dtype: str, size: int, bf16_path: bool
) -> None:
    # alpha = 0 makes the new square_avg g * g (one rounding) and grad_avg g exactly, so the
    # codes the kernel stores can be predicted exactly, random bits included.
    # + 0: float16 flushes some values to -0, and lerp's result for a gradient of -0 takes the
    # sign of (-0 - old grad_avg) * 0 (as torch's vector loop does), which this prediction does
    # not follow.
    grad = torch.from_numpy(wide_values(size, 3)).to(getattr(torch, param_dtype)) + 0
    param = torch.zeros(size, dtype=grad.dtype)
    square_avg, grad_avg = eight_bit(size, False, 1), eight_bit(size, True, 2)
    rmsprop_ext.rmsprop_step(
        param,
        grad,
        square_avg,
        lr=1e-3,
        alpha=0.0,
        centered=True,
        grad_avg=grad_avg,
        seed=7,
        stream=3,
        step=4,
    )
    g = grad.to(torch.float32).numpy()
    want_square = _quantized.encode(g * g, False, kernel_random_bits(size, "square_avg", 4))
    want_grad_avg = _quantized.encode(g, True, kernel_random_bits(size, "grad_avg", 4))
    for got, want in ((square_avg, want_square), (grad_avg, want_grad_avg)):
        np.testing.assert_array_equal(got[0].numpy(), want[0])
        np.testing.assert_array_equal(got[1].numpy(), want[1])


@pytest.mark.parametrize("threads", [1, 2])
def test_eight_bit_state_does_not_depend_on_threads_or_isa(threads: int) -> None:
    size = 2**17 + 5

    def run(num_threads: int) -> list[Any]:
        param = torch.from_numpy(wide_values(size, 1)).to(torch.bfloat16)
        buffers = [eight_bit(size, False, 2), eight_bit(size, True, 3), eight_bit(size, True, 4)]
        rmsprop_ext.rmsprop_step(
            param,
            torch.from_numpy(wide_values(size, 5)).to(torch.bfloat16),
            buffers[0],
            lr=1e-3,
            momentum=0.9,
            momentum_buffer=buffers[1],
            centered=True,
            grad_avg=buffers[2],
            compensation="stochastic",
            seed=11,
            step=5,
            num_threads=num_threads,
        )
        return [param.view(torch.int16), *[t for pair in buffers for t in pair]]

    got = run(threads)
    previous = rmsprop_ext.get_isa()
    rmsprop_ext.set_isa("scalar")
    try:
        expected = run(1)
    finally:
        rmsprop_ext.set_isa(previous)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


# The kernel against the float64 reference


def decoded(pair: tuple[Any, Any], name: str) -> np.ndarray:
    codes, exponents = (t.numpy() if isinstance(t, torch.Tensor) else t for t in pair)
    return _quantized.decode(codes, exponents, _quantized.is_signed(name)).astype(np.float64)


def run_against_reference(
    size: int, form: tuple[str, str | None], options: dict[str, Any], steps: int
) -> None:
    param_dtype, compensation = form
    options = {"lr": 1e-2, "eps": 1e-6, **options}
    momentum, centered = options.get("momentum", 0.0) > 0, options.get("centered", False)
    dtype = getattr(torch, param_dtype)
    param = torch.from_numpy(np.random.default_rng(1).standard_normal(size)).to(dtype)
    # Magnitudes as training has them: the state of gradients of about 1e-2 (spread wide).
    state = {"square_avg": eight_bit(size, False, 2, 1e-4)}
    if momentum:
        state["momentum_buffer"] = eight_bit(size, True, 3, 1e-2)
    if centered:
        state["grad_avg"] = eight_bit(size, True, 4, 1e-4)
    kahan = torch.zeros(size, dtype=dtype) if compensation == "kahan" else None
    code_differences = code_total = differing = far = total = 0
    for step in range(1, steps + 1):
        grad = torch.from_numpy(wide_values(size, 100 + step) * np.float32(1e-4)).to(dtype)
        before = param.double().numpy()
        numpy_state = {name: tuple(t.numpy().copy() for t in pair) for name, pair in state.items()}
        want = rmsprop_reference_stored(
            before,
            grad.double().numpy(),
            numpy_state["square_avg"],
            numpy_state.get("momentum_buffer"),
            numpy_state.get("grad_avg"),
            param_dtype=param_dtype,
            state_dtype="8bit",
            compensation=compensation,
            compensation_buffer=None if kahan is None else kahan.double().numpy(),
            seed=7,
            stream=3,
            step=step,
            **options,
        )
        rmsprop_ext.rmsprop_step(
            param,
            grad,
            state["square_avg"],
            momentum_buffer=state.get("momentum_buffer"),
            grad_avg=state.get("grad_avg"),
            compensation=compensation,
            compensation_buffer=kahan,
            seed=7,
            stream=3,
            step=step,
            **options,
        )
        # The codes: the same random bits decide them, so they differ only where float32 and
        # float64 arithmetic fall on two sides of a random threshold or of a block's power of two.
        for name, index in (("square_avg", 1), ("momentum_buffer", 2), ("grad_avg", 3)):
            if name not in state:
                continue
            got_values, want_values = decoded(state[name], name), decoded(want[index], name)
            code_differences += int((got_values != want_values).sum())
            code_total += size
        # The parameter: within one ulp of its dtype but where float32 arithmetic cancels
        # (s - a^2, centered), which is rare; any difference at all is rare too.
        got = param.double().numpy()
        gap = np.abs(got - want[0])
        if param_dtype == "float32":
            differing += int((gap > 1e-5 * np.abs(want[0]) + 1e-9).sum())
            far += int((gap > 1e-3 * np.abs(want[0]) + 1e-9).sum())
        else:
            differing += int((gap > 0).sum())
            far += int((gap > ulps(want[0], param_dtype)).sum())
        total += size
    assert differing <= max(3, total // 200), (differing, total)
    assert far <= max(1, total // 10000), (far, total)
    assert code_differences <= max(2, code_total // 1000), (code_differences, code_total)


# Both bfloat16 conversion paths for the bfloat16 forms; one for the others, which have no choice.
FORM_PATHS = [(f, on) for f in FORMS for on in (BF16_PATHS if f[0] == "bfloat16" else [False])]


@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
@pytest.mark.parametrize(
    ("form", "bf16_instructions"),
    FORM_PATHS,
    ids=[f"{f[0]}-{f[1] or 'nearest'}-{'bf16i' if on else 'int'}" for f, on in FORM_PATHS],
)
@pytest.mark.parametrize("size", SIZES)
def test_eight_bit_state_matches_the_reference(
    size: int, form: tuple[str, str | None], options: dict[str, Any], bf16_instructions: bool
) -> None:
    previous = rmsprop_ext._core._bf16_instructions()
    assert rmsprop_ext._core._set_bf16_instructions(bf16_instructions)
    try:
        run_against_reference(size, form, options, STEPS)
    finally:
        rmsprop_ext._core._set_bf16_instructions(previous)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f"{f[0]}-{f[1] or 'nearest'}")
def test_eight_bit_state_matches_the_reference_on_a_large_threaded_buffer(
    form: tuple[str, str | None],
) -> None:
    run_against_reference(LARGE_SIZE, form, {"momentum": 0.9, "centered": True}, 3)
