"""bfloat16 and float16 parameters, low-precision state and the compensations, in the native kernel:
against the float64 reference that rounds each stored buffer once, step by step, on every ISA."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import rmsprop_ext
from conftest import needs_torch
from helpers import TOLERANCE
from rmsprop_ext.reference import rmsprop_reference_stored

torch = pytest.importorskip("torch")

STEPS = 50
# The avx512 kernel rounds to bfloat16 with AVX512-BF16's instruction where the CPU has it, and
# with integer arithmetic otherwise; both must give the same bits.
BF16_PATHS = [True, False] if rmsprop_ext.build_info()["avx512_bf16"] else [False]


@pytest.fixture(params=BF16_PATHS, ids=lambda on: "bf16-instructions" if on else "bf16-integer")
def bf16_path(request: pytest.FixtureRequest) -> Any:
    previous = rmsprop_ext._core._bf16_instructions()
    assert rmsprop_ext._core._set_bf16_instructions(request.param)
    yield request.param
    rmsprop_ext._core._set_bf16_instructions(previous)


SMALL_SIZES = [0, 1, 7, 17, 1023]
LARGE_SIZE = int(os.environ.get("RMSPROP_EXT_TEST_LARGE_SIZE", 2**20 + 3))

# (param dtype, state dtype, compensation): every storage form the kernel is built for.
FORMS = [
    ("bfloat16", "bfloat16", None),
    ("bfloat16", "bfloat16", "kahan"),
    ("bfloat16", "bfloat16", "stochastic"),
    ("bfloat16", "float32", None),
    ("bfloat16", "float32", "kahan"),
    ("bfloat16", "float32", "stochastic"),
    ("float16", "float16", None),
    ("float16", "float16", "kahan"),
    ("float16", "float16", "stochastic"),
    ("float16", "float32", None),
    ("float16", "float32", "kahan"),
    ("float16", "float32", "stochastic"),
    ("float32", "bfloat16", None),
]
OPTIONS = [
    {},
    {"momentum": 0.9, "centered": True},
    {"momentum": 0.9, "nesterov": True, "lr_in_momentum": True, "bias_correction": True},
    {"weight_decay": 0.05, "maximize": True, "eps_in_sqrt": True},
    {"weight_decay": 0.05, "decoupled_weight_decay": True, "momentum": 0.5},
]


def form_id(form: tuple[str, str, str | None]) -> str:
    return f"{form[0]}-state_{form[1]}-{form[2] or 'nearest'}"


def options_id(options: dict[str, Any]) -> str:
    return "-".join(f"{k}={v}" for k, v in options.items()) or "plain"


def ulps(values: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of `dtype`'s values at each of `values` (float64)."""
    bits, min_exp = {"bfloat16": (8, -126), "float16": (11, -14), "float32": (24, -126)}[dtype]
    _, exponent = np.frexp(np.abs(values))
    return np.ldexp(1.0, np.maximum(exponent - 1, min_exp) - (bits - 1))


class Mismatches:
    """Elements where the kernel and the reference differ. In 16-bit buffers this happens rarely:
    where the kernel's float32 arithmetic lands on the other side of a rounding boundary from
    float64's. The first buffer of an element to differ, in the order the step writes them, is
    one ulp off (or a few float32 ulps of its inputs, where the result nearly cancels); the
    buffers after it then take that value and may differ more (s - a^2 cancels, for one).
    A float32 buffer is held to the float32 tolerance of the other reference tests."""

    def __init__(self) -> None:
        self.differing = 0
        self.total = 0
        self.upstream: np.ndarray | None = None

    def start_step(self, size: int) -> None:
        self.upstream = np.zeros(size, dtype=bool)

    def check(self, name: str, got: Any, want: np.ndarray, dtype: str, old: np.ndarray) -> None:
        assert self.upstream is not None
        got64 = got.double().numpy() if isinstance(got, torch.Tensor) else got
        if dtype == "float32":
            keep = ~self.upstream
            np.testing.assert_allclose(
                got64[keep], want[keep], **TOLERANCE[np.float32], err_msg=name
            )
            return
        # Where a result nearly cancels (a + w (g - a) near zero), float32 arithmetic is off by
        # a few float32 ulps of the inputs, which can be many ulps of the tiny result.
        close = np.abs(got64 - want) <= 2.0**-20 * (np.abs(old) + np.abs(want))
        differs = (got64 != want) & ~close
        first = differs & ~self.upstream
        if first.any():
            gap = np.abs(got64 - want)[first] / ulps(want, dtype)[first]
            assert gap.max() <= 1.0, f"{name}: {gap.max()} ulps from the reference"
        self.upstream |= differs
        self.differing += int(differs.sum())
        self.total += want.size

    def assert_rare(self) -> None:
        assert self.differing <= max(2, self.total // 200), (self.differing, self.total)


def random_stored(size: int, dtype: str, scale: float, seed: int, positive: bool = False) -> Any:
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(size, generator=generator, dtype=torch.float64) * scale
    if positive:
        values = values.abs()
    return values.to(getattr(torch, dtype))


def run_against_reference(
    size: int, form: tuple[str, str, str | None], options: dict[str, Any], steps: int
) -> None:
    param_dtype, state_dtype, compensation = form
    # The reference rounds each stored value once; rounding="torch" (tested against torch itself
    # in test_torch_bitwise) rounds 16-bit state of the parameter's dtype after every operation.
    options = {"lr": 1e-2, "eps": 1e-6, "rounding": "fused", **options}
    momentum, centered = options.get("momentum", 0.0) > 0, options.get("centered", False)
    param = random_stored(size, param_dtype, 1.0, 1)
    square_avg = random_stored(size, state_dtype, 1e-2, 2, positive=True)
    momentum_buffer = random_stored(size, state_dtype, 1e-2, 3) if momentum else None
    grad_avg = random_stored(size, state_dtype, 1e-3, 4) if centered else None
    kahan = torch.zeros(size, dtype=param.dtype) if compensation == "kahan" else None
    mismatches = Mismatches()
    for step in range(1, steps + 1):
        grad = random_stored(size, param_dtype, 0.1, 100 + step)
        before = param.double().numpy()
        old = {
            "square_avg": square_avg.double().numpy(),
            "momentum_buffer": None
            if momentum_buffer is None
            else momentum_buffer.double().numpy(),
            "grad_avg": None if grad_avg is None else grad_avg.double().numpy(),
        }
        want = rmsprop_reference_stored(
            param.double().numpy(),
            grad.double().numpy(),
            square_avg.double().numpy(),
            None if momentum_buffer is None else momentum_buffer.double().numpy(),
            None if grad_avg is None else grad_avg.double().numpy(),
            param_dtype=param_dtype,
            state_dtype=state_dtype,
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
            square_avg,
            momentum_buffer=momentum_buffer,
            grad_avg=grad_avg,
            compensation=compensation,
            compensation_buffer=kahan,
            seed=7,
            stream=3,
            step=step,
            **options,
        )
        # in the order the step writes them
        mismatches.start_step(size)
        mismatches.check("square_avg", square_avg, want[1], state_dtype, old["square_avg"])
        if grad_avg is not None:
            mismatches.check("grad_avg", grad_avg, want[3], state_dtype, old["grad_avg"])
        if momentum_buffer is not None:
            mismatches.check(
                "momentum_buffer", momentum_buffer, want[2], state_dtype, old["momentum_buffer"]
            )
        assert mismatches.upstream is not None
        state_differs = mismatches.upstream.copy()
        mismatches.check("param", param, want[0], param_dtype, before)
        if kahan is not None:
            # The compensation is a small difference of float32 values near the parameter and its
            # update, whose rounding errors (float32 ulps of those) can be a large share of it.
            # Where the parameter rounded the other way (a tie) the compensation differs by its
            # ulp, so the value it stands for, parameter plus compensation, is what is compared.
            # A state buffer that rounded the other way (rarely, see Mismatches) changes the
            # update by a 16-bit rounding of it.
            got = param.double().numpy() + kahan.double().numpy()
            update = want[0] + want[4] - before
            scale = 2.0**-21 * (np.abs(want[0]) + np.abs(before)) + 2.0**-7 * np.abs(update)
            gap = np.abs(got - (want[0] + want[4]))[~state_differs]
            allowed = (ulps(want[4], param_dtype) + scale)[~state_differs]
            assert np.all(gap <= allowed), gap.max()
        # Both go on from the kernel's values, so each step is checked on its own.
    mismatches.assert_rare()


@needs_torch
@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
@pytest.mark.parametrize("form", FORMS, ids=form_id)
@pytest.mark.parametrize("size", SMALL_SIZES)
def test_stored_forms_match_the_reference(
    size: int, form: tuple[str, str, str | None], options: dict[str, Any], bf16_path: bool
) -> None:
    run_against_reference(size, form, options, STEPS)


@needs_torch
@pytest.mark.parametrize("form", FORMS, ids=form_id)
def test_stored_forms_match_the_reference_on_a_large_threaded_buffer(
    form: tuple[str, str, str | None], bf16_path: bool
) -> None:
    run_against_reference(LARGE_SIZE, form, {"momentum": 0.9, "centered": True}, 3)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("threads", [1, 2])
def test_stochastic_rounding_does_not_depend_on_threads_or_isa(
    threads: int, dtype: str, bf16_path: bool
) -> None:
    # The same update on one thread and on two (split at cache lines, peeled differently) and on
    # every ISA must give the same bits: the generator sees only seed, stream, step and index.
    size = 2**16 + 5
    torch_dtype = getattr(torch, dtype)
    param = random_stored(size, dtype, 1.0, 1)
    grad = random_stored(size, dtype, 0.1, 2)
    square_avg = torch.zeros(size, dtype=torch_dtype)
    rmsprop_ext.rmsprop_step(
        param,
        grad,
        square_avg,
        lr=1e-3,
        compensation="stochastic",
        seed=11,
        step=5,
        num_threads=threads,
    )
    # The reference's float64 arithmetic may put a rare element on the other side of the random
    # threshold; the kernel's own bits are fixed, so compare against a scalar run of the kernel.
    previous = rmsprop_ext.get_isa()
    rmsprop_ext.set_isa("scalar")
    try:
        expected = random_stored(size, dtype, 1.0, 1)
        rmsprop_ext.rmsprop_step(
            expected,
            grad,
            torch.zeros(size, dtype=torch_dtype),
            lr=1e-3,
            compensation="stochastic",
            seed=11,
            step=5,
            num_threads=1,
        )
    finally:
        rmsprop_ext.set_isa(previous)
    assert torch.equal(param.view(torch.int16), expected.view(torch.int16))


# (dtype, start, lr): each step moves the parameter by lr, under half its ulp at `start`;
# float16 also in its subnormal range, whose spacing is 2^-24 for every value.
UNBIASED_CASES = [
    ("bfloat16", 1.0, 1e-3),
    ("float16", 1.0, 1e-4),
    ("float16", 2.0**-20, 2.0**-27),
]


@pytest.mark.parametrize(("dtype", "start", "lr"), UNBIASED_CASES)
def test_stochastic_rounding_is_unbiased(dtype: str, start: float, lr: float) -> None:
    # A step far below one ulp: round to nearest never moves the parameter, stochastic rounding
    # moves it in proportion, so the mean over many elements follows the float64 update.
    size = 2**16
    param = torch.full((size,), start, dtype=getattr(torch, dtype))
    nearest = param.clone()
    grad = torch.ones_like(param)
    options = {"lr": lr, "alpha": 0.0, "eps": 0.0}  # each step: x -= lr * g / |g| = lr
    for step in range(1, 11):
        rmsprop_ext.rmsprop_step(
            param, grad, torch.zeros_like(param), compensation="stochastic", step=step, **options
        )
        rmsprop_ext.rmsprop_step(nearest, grad, torch.zeros_like(param), **options)
    assert torch.equal(nearest, torch.full_like(nearest, start))  # lr is under half an ulp
    assert abs(param.double().mean().item() - (start - 10 * lr)) < 0.02 * (10 * lr)


# float16 values around every case of the stochastic rounding: normal, at the subnormal
# boundary, subnormal, tiny (float32 subnormal results), near the largest value, zeros.
FLOAT16_EDGES = [
    1.0, -1.5, 3.0e-5, 6.1035e-05, -6.0e-5, 2.0**-24, 3.0 * 2.0**-24, 0.0, -0.0,
    1.0e-7, 65504.0, -65504.0, 65472.0, 60000.0, 2.0**-14, 1000.0,
]  # fmt: skip


@pytest.mark.parametrize("lr", [1e-3, 3e-6, 1e-8, 1e-30, 40.0])
def test_float16_stochastic_rounding_matches_the_torch_emulation(lr: float) -> None:
    # With alpha = 0 and eps = 0 the float32 result is param - lr * sign(grad) in both the kernel
    # and the plain-torch fallback, so this compares the two implementations of the rounding
    # itself (C++ on this ISA, int64 torch ops in the fallback) bit for bit.
    from rmsprop_ext._torch_fallback import rmsprop_torch_step

    # every case in each vector, then vectors of float16 normals alone (the kernels' fast path)
    edges = torch.tensor(FLOAT16_EDGES, dtype=torch.float16).repeat(257)
    base = torch.cat([edges, torch.linspace(-1000.0, 1000.0, 4099).to(torch.float16)])
    grad = torch.where(torch.arange(base.numel()) % 3 == 0, -1.0, 1.0).to(torch.float16)
    native, emulated = base.clone(), base.clone()
    options = {"lr": lr, "alpha": 0.0, "eps": 0.0, "compensation": "stochastic", "seed": 3}
    rmsprop_ext.rmsprop_step(native, grad, torch.zeros_like(base), step=7, stream=2, **options)
    rmsprop_torch_step(
        emulated,
        grad,
        torch.zeros_like(base),
        None,
        None,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        maximize=False,
        eps_in_sqrt=False,
        decoupled_weight_decay=False,
        step=7,
        stream=2,
        **options,
    )
    assert torch.equal(native.view(torch.int16), emulated.view(torch.int16))
    assert not torch.equal(native, base) or lr < 1e-20


def test_kahan_summation_keeps_small_updates() -> None:
    size = 4096
    param = torch.ones(size, dtype=torch.bfloat16)
    kahan = torch.zeros_like(param)
    grad = torch.ones(size, dtype=torch.bfloat16)
    options = {"lr": 1e-3, "alpha": 0.0, "eps": 0.0}
    for _ in range(100):
        rmsprop_ext.rmsprop_step(
            param,
            grad,
            torch.zeros_like(param),
            compensation="kahan",
            compensation_buffer=kahan,
            **options,
        )
    # 100 steps of 1e-3: the stored value plus the compensation is 0.9 within float32 rounding.
    total = param.double() + kahan.double()
    assert torch.allclose(total, torch.full_like(total, 0.9), atol=1e-4)
    assert torch.all(param.double() == 0.8984375)  # the bfloat16 nearest to 0.9


def test_bfloat16_state_rounds_float32_like_torch(bf16_path: bool) -> None:
    # With alpha = 0 and centered, grad_avg becomes the gradient itself, stored as bfloat16: the
    # kernel's rounding of arbitrary float32 values (every ISA) must be torch's.
    generator = torch.Generator().manual_seed(5)
    bits = torch.randint(-(2**31), 2**31 - 1, (100_003,), generator=generator, dtype=torch.int64)
    grad = bits.to(torch.int32).view(torch.float32)
    grad = torch.where(torch.isfinite(grad), grad, 0.0)
    # (not -0.0: the 16-bit kernels add the coupled weight decay as wd * param + grad with wd = 0
    # when unused, which turns a gradient of -0 into +0)
    grad = torch.cat(
        [grad, torch.tensor([0.0, 1e-45, -3e-39, 3.3895e38, 1 + 2**-8, 1 + 3 * 2**-9])]
    )
    param = torch.zeros_like(grad)
    square_avg = torch.zeros_like(grad, dtype=torch.bfloat16)
    grad_avg = torch.zeros_like(grad, dtype=torch.bfloat16)
    rmsprop_ext.rmsprop_step(
        param, grad, square_avg, grad_avg=grad_avg, centered=True, alpha=0.0, lr=0.0
    )
    assert torch.equal(grad_avg.view(torch.int16), grad.to(torch.bfloat16).view(torch.int16))
    # NaN: torch's own conversions disagree (0x7fc0 from its scalar code, 0xffff from its
    # vectorised one); every path of the kernel stores 0x7fc0.
    nan = torch.tensor([float("nan"), -float("nan")] * 20)
    nan_avg = torch.zeros_like(nan, dtype=torch.bfloat16)
    rmsprop_ext.rmsprop_step(
        torch.zeros_like(nan),
        nan,
        torch.zeros_like(nan_avg),
        grad_avg=nan_avg,
        centered=True,
        alpha=0.0,
        lr=0.0,
    )
    assert torch.all(nan_avg.view(torch.int16) == 0x7FC0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "options", [{}, {"momentum": 0.9}, {"momentum": 0.9, "centered": True}], ids=options_id
)
def test_rounding_once_is_close_to_torch_and_closer_to_the_exact_step(
    dtype: torch.dtype, options: dict[str, Any]
) -> None:
    # torch rounds to the dtype after every op of its step (the square root, the + eps, the
    # quotient's sum), and so does the default rounding="torch" (test_torch_bitwise);
    # rounding="fused" rounds each stored result once. From the same state, one step of the
    # two differs by at most two ulps of the dtype at the operands' magnitude (the old value, the
    # new one and the change), and the kernel's is the nearer to the exact step. Centered, torch's
    # rounding of a^2 before s - a^2 cancels can put it many ulps away: there only the second.
    centered = options.get("centered", False)
    name = str(dtype).removeprefix("torch.")
    size = 10_000
    param = random_stored(size, name, 1.0, 1)
    theirs = torch.nn.Parameter(param.clone())
    ours = torch.nn.Parameter(param.clone())
    opt_theirs = torch.optim.RMSprop([theirs], lr=1e-3, eps=1e-4, foreach=False, **options)
    opt_ours = rmsprop_ext.RMSprop([ours], lr=1e-3, eps=1e-4, rounding="fused", **options)
    for step in range(1, 4):
        grad = random_stored(size, name, 0.1, 10 + step)
        theirs.grad, ours.grad = grad.clone(), grad.clone()
        # from torch's state each time (copied in place), so every step is compared on its own
        for key, value in opt_theirs.state[theirs].items():
            opt_ours.state[ours][key].copy_(value)
        with torch.no_grad():
            ours.copy_(theirs)
        before = {"param": theirs.detach().double().numpy()}
        before.update({k: v.double().numpy() for k, v in opt_theirs.state[theirs].items()})
        exact = rmsprop_reference_stored(
            before["param"],
            grad.double().numpy(),
            before.get("square_avg", np.zeros(size)),
            before.get("momentum_buffer", np.zeros(size)),
            before.get("grad_avg", np.zeros(size)),
            param_dtype="float64",
            state_dtype=name,  # the step from the state as stored, as both take it
            lr=1e-3,
            eps=1e-4,
            **options,
        )[0]
        opt_theirs.step()
        opt_ours.step()
        # Where a state value came out one ulp apart (torch rounds s twice: mul_, addcmul_), the
        # parameters took different denominators; compare them where the state agrees.
        # Each buffer, in the order the step writes them, where the ones before it agree.
        same_state = np.ones(size, dtype=bool)
        assert opt_ours.state[ours]["step"].item() == opt_theirs.state[theirs]["step"].item()
        for key in ("square_avg", "grad_avg", "momentum_buffer"):
            if key not in opt_theirs.state[theirs]:
                continue
            want64 = opt_theirs.state[theirs][key].double().numpy()
            got64 = opt_ours.state[ours][key].double().numpy()
            old = before.get(key, np.zeros(size))
            magnitude = np.maximum.reduce([np.abs(want64), np.abs(old), np.abs(want64 - old)])
            gap = (np.abs(got64 - want64) / ulps(magnitude, name))[same_state]
            assert centered or gap.max() <= 2.0, (key, step, gap.max())
            same_state &= got64 == want64
        assert same_state.mean() > 0.3  # torch rounds each of s, a, b twice or more
        got64, want64 = ours.detach().double().numpy(), theirs.detach().double().numpy()
        old = before["param"]
        magnitude = np.maximum.reduce([np.abs(want64), np.abs(old), np.abs(want64 - old)])
        gap = (np.abs(got64 - want64) / ulps(magnitude, name))[same_state]
        assert centered or gap.max() <= 2.0, ("param", step, gap.max())
        ours_error = np.abs(got64 - exact)[same_state].mean()
        torch_error = np.abs(want64 - exact)[same_state].mean()
        assert ours_error <= torch_error, (step, ours_error, torch_error)
