"""RMSprop and NumpyRMSprop with bfloat16/float16 parameters, state_dtype and compensation: state,
state dicts (to and from torch.optim.RMSprop), errors, and the plain-torch fallback."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import rmsprop_ext
from helpers import checksum

torch = pytest.importorskip("torch")

FORMS = [
    (torch.bfloat16, None, None),
    (torch.bfloat16, torch.float32, "kahan"),
    (torch.bfloat16, None, "stochastic"),
    (torch.float16, torch.float32, None),
    (torch.float16, None, "kahan"),
    (torch.float16, torch.float32, "stochastic"),
    (torch.float32, torch.bfloat16, None),
    (torch.bfloat16, "8bit", "stochastic"),
    (torch.float16, "8bit", "kahan"),
    (torch.float32, "8bit", None),
]


def form_id(form: tuple[Any, Any, Any]) -> str:
    dtype, state, compensation = form
    state_name = str(state).removeprefix("torch.") if state else "same"
    return f"{str(dtype)[6:]}-{state_name}-{compensation or 'nearest'}"


def model(dtype: torch.dtype, seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(shape, generator=gen).to(dtype)) for shape in [(33, 7), (5,)]
    ]


def set_grads(params: list[torch.nn.Parameter], step: int) -> None:
    gen = torch.Generator().manual_seed(1000 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)


def make(params: Any, form: tuple[Any, Any, Any], **options: Any) -> rmsprop_ext.RMSprop:
    _, state_dtype, compensation = form
    return rmsprop_ext.RMSprop(
        params,
        lr=1e-2,
        momentum=0.9,
        centered=True,
        state_dtype=state_dtype,
        compensation=compensation,
        seed=3,
        **options,
    )


def train(opt: Any, params: list[torch.nn.Parameter], steps: range) -> None:
    for step in steps:
        set_grads(params, step)
        opt.step()


@pytest.mark.parametrize("form", FORMS, ids=form_id)
def test_state_has_the_state_dtype_and_round_trips(form: tuple[Any, Any, Any]) -> None:
    dtype, state_dtype, compensation = form
    params = model(dtype)
    opt = make(params, form)
    train(opt, params, range(3))
    state = opt.state[params[0]]
    for key in ("square_avg", "momentum_buffer", "grad_avg"):
        if state_dtype == "8bit":
            assert state[key].dtype == torch.uint8 and state[key].shape == params[0].shape
            assert state[key + "_exponents"].dtype == torch.int8
        else:
            assert state[key].dtype == (state_dtype or dtype)
    assert ("compensation" in state) == (compensation == "kahan")
    if compensation == "kahan":
        assert state["compensation"].dtype == dtype and state["compensation"].abs().sum() > 0
    saved = copy.deepcopy(opt.state_dict())  # as torch.save and torch.load would give it

    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = make(resumed_params, form)
    resumed.load_state_dict(saved)
    train(opt, params, range(3, 6))
    train(resumed, resumed_params, range(3, 6))
    for a, b in zip(params, resumed_params):
        assert torch.equal(a, b)
    for p, q in zip(params, resumed_params):
        for key, value in opt.state[p].items():
            assert torch.equal(value, resumed.state[q][key]), key


@pytest.mark.parametrize("form", FORMS, ids=form_id)
def test_prepared_and_general_steps_agree(form: tuple[Any, Any, Any]) -> None:
    # The prepared fast path (from the second step on) and the general path give the same bits.
    dtype = form[0]
    fast, slow = model(dtype), model(dtype)
    opt_fast, opt_slow = make(fast, form), make(slow, form)
    for step in range(4):
        set_grads(fast, step)
        set_grads(slow, step)
        opt_fast.step()
        opt_slow._plans = []  # forces the general step every time
        opt_slow._general_step()
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)


def test_torch_state_dict_loads_into_another_state_dtype() -> None:
    params = model(torch.float32)
    theirs = torch.optim.RMSprop(params, lr=1e-2, momentum=0.9, centered=True)
    train(theirs, params, range(3))
    saved = copy.deepcopy(theirs.state_dict())
    ours = rmsprop_ext.RMSprop(
        [torch.nn.Parameter(p.detach().clone()) for p in params],
        lr=1e-2,
        momentum=0.9,
        centered=True,
        state_dtype=torch.bfloat16,
    )
    ours.load_state_dict(saved)
    assert ours.param_groups[0]["state_dtype"] == torch.bfloat16
    for p, q in zip(params, ours.param_groups[0]["params"]):
        for key in ("square_avg", "momentum_buffer", "grad_avg"):
            loaded = ours.state[q][key]
            assert loaded.dtype == torch.bfloat16
            assert torch.equal(loaded, theirs.state[p][key].to(torch.bfloat16))


def test_bfloat16_state_loads_into_torch_rmsprop() -> None:
    params = model(torch.bfloat16)
    ours = make(params, (torch.bfloat16, torch.float32, None))
    train(ours, params, range(3))
    theirs_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    theirs = torch.optim.RMSprop(theirs_params, lr=1e-2, momentum=0.9, centered=True)
    theirs.load_state_dict(copy.deepcopy(ours.state_dict()))
    state = theirs.state[theirs_params[0]]
    assert state["square_avg"].dtype == torch.bfloat16  # torch casts to the parameter's dtype
    train(theirs, theirs_params, range(3, 5))
    assert all(torch.isfinite(p).all() for p in theirs_params)


@pytest.mark.parametrize(
    ("dtype", "options", "words"),
    [
        (torch.float32, {"compensation": "kahan"}, "compensation='kahan' is for bfloat16"),
        (torch.float32, {"compensation": "stochastic"}, "compensation='stochastic' is for"),
        (torch.bfloat16, {"compensation": "exact"}, "compensation must be"),
        (torch.float64, {"state_dtype": "8bit"}, "'8bit' is for float32, bfloat16"),
        (torch.bfloat16, {"state_dtype": "4bit"}, "not supported for bfloat16"),
        (torch.bfloat16, {"state_dtype": torch.float16}, "not supported for bfloat16"),
        (torch.float64, {"state_dtype": torch.bfloat16}, "not supported for float64"),
        (torch.bfloat16, {"seed": -1}, "seed"),
    ],
)
def test_bad_options_raise_at_construction(
    dtype: torch.dtype, options: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        rmsprop_ext.RMSprop(model(dtype), **options)


def test_bad_param_group_is_not_added() -> None:
    opt = rmsprop_ext.RMSprop(model(torch.bfloat16), compensation="kahan")
    with pytest.raises(ValueError, match="compensation"):
        opt.add_param_group({"params": model(torch.float32, seed=1)})
    assert len(opt.param_groups) == 1


def test_gradient_of_another_dtype_changes_nothing() -> None:
    params = model(torch.bfloat16)
    opt = make(params, (torch.bfloat16, None, "kahan"))
    train(opt, params, range(2))
    before = checksum(*(p.detach() for p in params), *opt.state[params[0]].values())
    set_grads(params, 9)
    # torch's .grad setter refuses such a gradient (torch 2.13 allows it when told through
    # grad_dtype, 2.9 never); its .data, on every release, does not.
    params[1].grad.data = params[1].grad.float()
    assert params[1].grad.dtype == torch.float32
    with pytest.raises((TypeError, RuntimeError), match="dtype"):
        opt.step()
    after = checksum(*(p.detach() for p in params), *opt.state[params[0]].values())
    assert before == after


def test_functional_checks_the_state_dtype() -> None:
    p = torch.zeros(8, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="square_avg has dtype float16"):
        rmsprop_ext.rmsprop_step(p, p.clone(), torch.zeros(8, dtype=torch.float16), lr=0.1)
    with pytest.raises(ValueError, match="step"):
        rmsprop_ext.rmsprop_step(
            p, p.clone(), torch.zeros(8, dtype=torch.bfloat16), lr=0.1, compensation="stochastic"
        )
    assert torch.equal(p, torch.zeros_like(p))


@pytest.mark.parametrize("compensation", ["kahan", "stochastic"])
def test_the_torch_fallback_takes_the_compensations(compensation: str) -> None:
    # A non-contiguous parameter goes through plain torch ops, compensation included; the result
    # follows the native step on a contiguous copy up to a few rare ulps.
    base = torch.randn(64, 48).to(torch.bfloat16)
    strided = torch.nn.Parameter(base.t())
    dense = torch.nn.Parameter(base.t().contiguous())
    options = {"lr": 1e-3, "compensation": compensation, "seed": 5}
    opt_strided = rmsprop_ext.RMSprop([strided], **options)
    opt_dense = rmsprop_ext.RMSprop([dense], **options)
    assert opt_strided.native_coverage()["fallback"] == 1
    for step in range(5):
        gen = torch.Generator().manual_seed(step)
        grad = torch.randn(48, 64, generator=gen).to(torch.bfloat16)
        strided.grad, dense.grad = grad.clone(), grad.clone()
        opt_strided.step()
        opt_dense.step()
    same = (strided.detach() == dense.detach()).double().mean().item()
    assert same > 0.9, same  # the fallback rounds its bfloat16 state after each torch op


def test_stochastic_rounding_depends_on_the_seed_only() -> None:
    runs = []
    for seed in (1, 1, 2):
        params = model(torch.bfloat16)
        opt = rmsprop_ext.RMSprop(params, lr=1e-3, compensation="stochastic", seed=seed)
        train(opt, params, range(3))
        runs.append(torch.cat([p.detach().reshape(-1) for p in params]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_numpy_optimizer_takes_low_precision_parameters() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    half = np.linspace(-1, 1, 37).astype(np.float16)
    brain = np.linspace(-1, 1, 37).astype(ml_dtypes.bfloat16)
    opt = rmsprop_ext.NumpyRMSprop([half, brain], lr=1e-2, compensation="kahan")
    assert opt.state[1]["compensation"].dtype == brain.dtype
    reference = [half.astype(np.float32), brain.astype(np.float32)]
    ref_opt = rmsprop_ext.NumpyRMSprop(reference, lr=1e-2)
    for _ in range(5):
        opt.step([np.full(37, 0.5, np.float16), np.full(37, 0.5, brain.dtype)])
        ref_opt.step([np.full(37, 0.5, np.float32)] * 2)
    for low, full, state in zip([half, brain], reference, opt.state):
        total = low.astype(np.float64) + state["compensation"].astype(np.float64)
        np.testing.assert_allclose(total, full, rtol=0, atol=2e-3)
    saved = opt.state_dict()
    fresh = rmsprop_ext.NumpyRMSprop(
        [half.copy(), brain.copy()], lr=1e-2, state_dtype=np.float32, compensation="kahan"
    )
    fresh.load_state_dict({**saved, "param_groups": [{**saved["param_groups"][0]}]})
    assert fresh.state[0]["square_avg"].dtype == np.float16  # the saved group's state_dtype


# 8-bit state


def test_eight_bit_state_dict_dequantizes_into_torch_rmsprop() -> None:
    params = model(torch.float32)
    ours = make(params, (torch.float32, "8bit", None))
    train(ours, params, range(3))
    saved = copy.deepcopy(ours.state_dict())
    plain = rmsprop_ext.dequantize_state_dict(saved)
    assert "square_avg_exponents" in saved["state"][0]  # the input is left as it was
    entry = plain["state"][0]
    assert set(entry) == {"step", "square_avg", "momentum_buffer", "grad_avg"}
    assert plain["param_groups"][0]["state_dtype"] is None
    codes = ours.state[params[0]]
    for key in ("square_avg", "momentum_buffer", "grad_avg"):
        assert entry[key].dtype == torch.float32 and entry[key].shape == params[0].shape
        signed = key != "square_avg"
        want = rmsprop_ext._quantized.decode(
            codes[key].numpy(), codes[key + "_exponents"].numpy(), signed
        )
        assert torch.equal(entry[key], torch.from_numpy(want))
    theirs_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    theirs = torch.optim.RMSprop(theirs_params, lr=1e-2, momentum=0.9, centered=True)
    theirs.load_state_dict(plain)
    # torch.optim.RMSprop goes on from the decoded state exactly as rmsprop_ext with float32
    # state loading the same dict does (bit for bit: the default rounding is torch's)
    float_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    float_state = make(float_params, (None, None, None))
    float_state.load_state_dict(copy.deepcopy(plain))
    train(theirs, theirs_params, range(3, 6))
    train(float_state, float_params, range(3, 6))
    for a, b in zip(float_params, theirs_params):
        assert torch.equal(a, b)


def test_float_state_converts_to_and_from_eight_bit() -> None:
    params = model(torch.float32)
    theirs = torch.optim.RMSprop(params, lr=1e-2, momentum=0.9, centered=True)
    train(theirs, params, range(3))
    eight = make([torch.nn.Parameter(p.detach().clone()) for p in params], (None, "8bit", None))
    eight.load_state_dict(copy.deepcopy(theirs.state_dict()))
    for p, q in zip(params, eight.param_groups[0]["params"]):
        for key in ("square_avg", "momentum_buffer", "grad_avg"):
            want = rmsprop_ext._quantized.encode(theirs.state[p][key].numpy(), key != "square_avg")
            assert np.array_equal(eight.state[q][key].numpy(), want[0])
            assert np.array_equal(eight.state[q][key + "_exponents"].numpy(), want[1])
    # and back: a state dict whose group asks for float state loads its 8-bit entries decoded
    # (the saved group's options win, as in torch)
    back = make([torch.nn.Parameter(p.detach().clone()) for p in params], (None, None, None))
    saved = copy.deepcopy(eight.state_dict())
    saved["param_groups"][0]["state_dtype"] = None
    back.load_state_dict(saved)
    q, r = eight.param_groups[0]["params"][0], back.param_groups[0]["params"][0]
    assert set(back.state[r]) == {"step", "square_avg", "momentum_buffer", "grad_avg"}
    want = rmsprop_ext._quantized.decode(
        eight.state[q]["square_avg"].numpy(), eight.state[q]["square_avg_exponents"].numpy(), False
    )
    assert torch.equal(back.state[r]["square_avg"], torch.from_numpy(want))


def test_bad_eight_bit_state_dict_raises_before_loading() -> None:
    params = model(torch.bfloat16)
    opt = make(params, (torch.bfloat16, "8bit", None))
    train(opt, params, range(2))
    saved = copy.deepcopy(opt.state_dict())
    saved["state"][0]["square_avg_exponents"] = saved["state"][0]["square_avg_exponents"][:-1]
    fresh = make(model(torch.bfloat16), (torch.bfloat16, "8bit", None))
    with pytest.raises(ValueError, match="square_avg_exponents"):
        fresh.load_state_dict(saved)
    assert len(fresh.state) == 0


def test_functional_checks_eight_bit_buffers() -> None:
    p = torch.zeros(40, dtype=torch.bfloat16)
    codes, exponents = torch.zeros(40, dtype=torch.uint8), torch.zeros(2, dtype=torch.int8)
    with pytest.raises(TypeError, match="pair"):
        rmsprop_ext.rmsprop_step(p, p.clone(), codes, lr=0.1, step=1)
    with pytest.raises(ValueError, match="exponents must be a one-dimensional int8 array of 2"):
        rmsprop_ext.rmsprop_step(p, p.clone(), (codes, exponents[:1]), lr=0.1, step=1)
    with pytest.raises(ValueError, match="step"):
        rmsprop_ext.rmsprop_step(p, p.clone(), (codes, exponents), lr=0.1)
    with pytest.raises(TypeError, match="float64"):
        rmsprop_ext.rmsprop_step(p.double(), p.double(), (codes, exponents), lr=0.1, step=1)
    with pytest.raises(ValueError, match="share memory"):
        rmsprop_ext.rmsprop_step(p, p.clone(), (codes, codes[:2].view(torch.int8)), lr=0.1, step=1)
    assert not codes.any() and not exponents.any() and not p.any()


def test_the_torch_fallback_takes_eight_bit_state() -> None:
    # A non-contiguous parameter with 8-bit state steps through plain torch ops on the decoded
    # state and stores it back with the kernel's stochastic rounding: nearly the same codes.
    base = torch.randn(64, 48)
    strided = torch.nn.Parameter(base.t())
    dense = torch.nn.Parameter(base.t().contiguous())
    options = {"lr": 1e-3, "state_dtype": "8bit", "momentum": 0.9, "seed": 5}
    opt_strided = rmsprop_ext.RMSprop([strided], **options)
    opt_dense = rmsprop_ext.RMSprop([dense], **options)
    assert opt_strided.native_coverage()["fallback"] == 1
    for step in range(5):
        grad = torch.randn(48, 64, generator=torch.Generator().manual_seed(step))
        strided.grad, dense.grad = grad.clone(), grad.clone()
        opt_strided.step()
        opt_dense.step()
    torch.testing.assert_close(strided.detach(), dense.detach(), rtol=1e-4, atol=1e-6)
    for key in ("square_avg", "momentum_buffer"):
        same = opt_strided.state[strided][key] == opt_dense.state[dense][key]
        assert same.double().mean().item() > 0.99


def test_numpy_optimizer_takes_eight_bit_state() -> None:
    def fresh(state_dtype: Any) -> rmsprop_ext.NumpyRMSprop:
        params = [np.linspace(-1, 1, 70).astype(np.float32), np.ones((3, 5), np.float16)]
        return rmsprop_ext.NumpyRMSprop(params, lr=1e-2, momentum=0.9, state_dtype=state_dtype)

    opt, full = fresh("8bit"), fresh(None)
    assert opt.state[0]["square_avg"].dtype == np.uint8
    assert opt.state[0]["momentum_buffer_exponents"].shape == (3,)
    for step in range(5):
        grads = [np.sin(np.arange(70, dtype=np.float32) + step), np.full((3, 5), 0.5, np.float16)]
        opt.step(grads)
        full.step([g.astype(p.dtype) for g, p in zip(grads, full.params)])
    # the same moves within the 8-bit state's precision (codes at most 12.5% apart)
    start = np.linspace(-1, 1, 70).astype(np.float32)
    moved = np.abs(full.params[0] - start).max()
    assert np.abs(opt.params[0] - full.params[0]).max() <= 0.1 * moved
    saved = opt.state_dict()
    again = fresh("8bit")
    again.load_state_dict(saved)
    for key in ("square_avg", "square_avg_exponents", "momentum_buffer"):
        assert np.array_equal(again.state[0][key], opt.state[0][key])
    # a float32 state dict (the state of the full-precision run) is encoded on loading
    from_float = fresh("8bit")
    from_float.load_state_dict({**full.state_dict(), "param_groups": saved["param_groups"]})
    codes, exponents = rmsprop_ext._quantized.encode(full.state[0]["square_avg"], False)
    assert np.array_equal(from_float.state[0]["square_avg"], codes)
    assert np.array_equal(from_float.state[0]["square_avg_exponents"], exponents)
