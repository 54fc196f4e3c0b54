"""Embedding tables with sparse gradients: the exact row-sparse step equals the dense step on the
densified gradient (rows idle for 0 to 150 steps, untouched from the start, repeated indices, a
changing learning rate, every option with a closed form for idle rows); the lazy step leaves idle
rows alone; state dicts move between sparse and dense optimizers; bad input changes nothing."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import run_on_two_ranks

torch = pytest.importorskip("torch")

import rmsprop_ext  # noqa: E402
from rmsprop_ext import _huge_pages, _idle_steps  # noqa: E402
from rmsprop_ext._huge_pages import HUGE_PAGE  # noqa: E402

ROWS, DIM, STEPS = 240, 4, 210

OPTION_SETS: list[dict[str, Any]] = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "centered": True},
    {"maximize": True, "eps_in_sqrt": True, "initial_square_avg": 0.25},
    {"bias_correction": True},
    {"momentum": 0.8, "nesterov": True, "lr_in_momentum": True},
    {"momentum": 0.9, "weight_decay": 0.05, "decoupled_weight_decay": True},
]


def lookups(step: int, generator: Any) -> Any:
    """The rows one batch looks up: rows 0-9 every step, row 10 + k every k + 1 steps (idle k
    steps, k up to 150), a few random ones (repeats included); rows from 161 on never."""
    rows = list(range(10)) + [10 + k for k in range(151) if step % (k + 1) == 0]
    extra = torch.randint(0, 40, (8,), generator=generator).tolist()
    return torch.tensor(rows + extra + rows[:3])  # rows 0-2 twice more: uncoalesced repeats


class Pair:
    """The same embedding stepped with a sparse gradient (rmsprop_ext) and a dense one; for
    float32 also a float64 dense run from the same start, the measure of float32's own noise."""

    def __init__(self, options: dict[str, Any], dtype: Any = torch.float32, sparse: str = "exact"):
        torch.manual_seed(0)
        start = torch.empty(ROWS, DIM, dtype=dtype).normal_(0, 2)
        runs = [(True, dtype), (False, dtype)]
        if dtype == torch.float32:
            runs.append((False, torch.float64))
        self.tables = [torch.nn.Embedding(ROWS, DIM, sparse=s, dtype=d) for s, d in runs]
        with torch.no_grad():
            for table in self.tables:
                table.weight.copy_(start)
        self.optimizers = [
            rmsprop_ext.RMSprop(t.parameters(), lr=0.01, sparse=sparse, **options)
            for t in self.tables
        ]
        self.optimizers[0].watch_embeddings(self.tables[0])
        self.schedulers = [
            torch.optim.lr_scheduler.StepLR(o, step_size=25, gamma=0.8) for o in self.optimizers
        ]
        self.generator = torch.Generator().manual_seed(1)
        self.steps = 0

    def step(self) -> list[float]:
        rows = lookups(self.steps, self.generator)
        losses = []
        for table, optimizer, scheduler in zip(self.tables, self.optimizers, self.schedulers):
            target = torch.linspace(-1, 1, DIM, dtype=table.weight.dtype)
            optimizer.zero_grad()
            loss = (table(rows) - target).pow(2).sum()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        self.steps += 1
        return losses

    def buffers(self, run: int) -> dict[str, Any]:
        weight = self.tables[run].weight
        state = self.optimizers[run].state[weight]
        out = {"param": weight.detach().double()}
        out.update({k: v.double() for k, v in state.items() if k not in ("step", "row_step")})
        out.pop("idle_steps", None)
        return out

    def bound(self, name: str = "param") -> float:
        """4e-6 x max(1, max |buffer|) at the dense run's scale (float64: 1e-12 relative)."""
        relative = 4e-6 if self.tables[0].weight.dtype == torch.float32 else 1e-12
        return relative * max(1.0, self.buffers(1)[name].abs().max().item())

    def check(self) -> None:
        """After a flush, every buffer of the sparse run equals the dense run's: the parameter
        within 4e-6 x max(1, max |param|) (float64: 1e-12 relative), each state buffer within
        the same at its own scale or, where float32's noise is larger, no farther from the
        float64 run than the dense float32 run is."""
        self.optimizers[0].flush()
        sparse, dense = self.buffers(0), self.buffers(1)
        exact = self.buffers(2) if len(self.tables) == 3 else None
        for name, values in dense.items():
            difference = (sparse[name] - values).abs().max().item()
            if difference <= self.bound(name):
                continue
            assert exact is not None and name != "param", (name, difference, self.bound(name))
            own_noise = (values - exact[name]).abs().max().item()
            assert (sparse[name] - exact[name]).abs().max().item() <= own_noise, name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(o) or "plain")
def test_exact_sparse_steps_equal_the_dense_step(options: dict[str, Any], dtype: str) -> None:
    pair = Pair(options, getattr(torch, dtype))
    for step in range(STEPS):
        losses = pair.step()
        # The forward read rows brought up to date by the lookup hook: the same loss.
        tolerance = 1e-5 if dtype == "float32" else 1e-12
        assert abs(losses[0] - losses[1]) <= tolerance * max(1.0, losses[1]), step
        if step % 70 == 69 or step == STEPS - 1:
            pair.check()
    # rows idle up to 150 steps were caught up, and those never touched decayed with the rest
    row_step = pair.optimizers[0].state[pair.tables[0].weight]["row_step"]
    assert row_step.min().item() == STEPS


def test_exact_steps_catch_rows_up_across_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """With factors covering 16 steps, rows idle up to 150 steps are swept up to date every 8
    steps, and the result is still the dense step's."""
    monkeypatch.setattr(_idle_steps, "IDLE_STEPS_LENGTH", 16)
    pair = Pair({"momentum": 0.9, "centered": True})
    for _ in range(STEPS):
        pair.step()
    assert pair.optimizers[0].state[pair.tables[0].weight]["idle_steps"].shape == (4, 16)
    pair.check()


def test_without_flush_idle_rows_wait_and_state_dict_brings_them_up_to_date() -> None:
    pair = Pair({"momentum": 0.9})
    for _ in range(12):
        pair.step()
    weights = [t.weight for t in pair.tables]
    state = pair.optimizers[0].state[weights[0]]
    behind = (state["row_step"] < 12).nonzero().flatten()
    assert len(behind) > 0
    # rows behind still have the state of their last step: not the dense one
    square_avgs = [o.state[w]["square_avg"] for o, w in zip(pair.optimizers, weights)]
    assert (square_avgs[0][behind] - square_avgs[1][behind]).abs().max() > 1e-4
    saved = pair.optimizers[0].state_dict()
    assert "row_step" not in saved["state"][0] and "idle_steps" not in saved["state"][0]
    assert (saved["state"][0]["square_avg"] - square_avgs[1]).abs().max() <= pair.bound(
        "square_avg"
    )
    assert (weights[0] - weights[1]).abs().max() <= pair.bound()


def test_lazy_steps_leave_idle_rows_and_step_touched_rows_as_the_dense_step() -> None:
    pair = Pair({"momentum": 0.9, "centered": True}, sparse="lazy")
    weights = [t.weight for t in pair.tables]
    # The first step: touched rows as the dense step has them, bit for bit; the rest untouched.
    before = weights[0].detach().clone()
    pair.step()
    rows = lookups(0, torch.Generator().manual_seed(1)).unique()
    idle = torch.ones(ROWS, dtype=torch.bool)
    idle[rows] = False
    assert torch.equal(weights[0][rows], weights[1][rows])
    assert torch.equal(weights[0][idle], before[idle])
    sparse_state = pair.optimizers[0].state[weights[0]]
    assert "row_step" not in sparse_state
    for _ in range(30):
        pair.step()
    # Later, lazy differs from dense where rows sat out steps (their averages did not decay).
    assert (weights[0] - weights[1]).abs().max() > 1e-3
    assert torch.equal(weights[0][200:], before[200:])  # never looked up: never changed


def test_exact_state_dict_continues_as_a_dense_run_in_torch() -> None:
    options = {"momentum": 0.9, "centered": True}
    pair = Pair(options)
    for _ in range(40):
        pair.step()
    sparse_table, dense_table = pair.tables[:2]
    # state_dict() brings the idle rows up to date, parameters included (momentum moves them):
    # taken first, as a checkpoint takes it with the model's. The copy stands for a file.
    saved = copy.deepcopy(pair.optimizers[0].state_dict())
    torch_table = torch.nn.Embedding(ROWS, DIM)
    with torch.no_grad():
        torch_table.weight.copy_(sparse_table.weight)
    torch_optimizer = torch.optim.RMSprop(torch_table.parameters(), lr=0.01, **options)
    torch_optimizer.load_state_dict(saved)
    # the reverse: torch's dense state dict into a sparse-gradient optimizer
    back_table = torch.nn.Embedding(ROWS, DIM, sparse=True)
    with torch.no_grad():
        back_table.weight.copy_(dense_table.weight)
    back = rmsprop_ext.RMSprop(back_table.parameters(), lr=0.01, **options)
    back.load_state_dict(torch_dense_state_dict(pair, options))
    back.watch_embeddings(back_table)
    generator = torch.Generator().manual_seed(5)
    for step in range(40, 80):
        rows = lookups(step, generator)
        for table, optimizer in ((torch_table, torch_optimizer), (back_table, back)):
            optimizer.zero_grad()
            table(rows).pow(2).sum().backward()
            optimizer.step()
        pair.optimizers[1].zero_grad()
        dense_table(rows).pow(2).sum().backward()
        pair.optimizers[1].step()
    back.flush()
    for table in (torch_table, back_table):
        assert (table.weight - dense_table.weight).abs().max() <= pair.bound()


def torch_dense_state_dict(pair: Pair, options: dict[str, Any]) -> dict[str, Any]:
    """The dense run's state as torch.optim.RMSprop saves it."""
    table = torch.nn.Embedding(ROWS, DIM)
    optimizer = torch.optim.RMSprop(table.parameters(), lr=0.01, **options)
    optimizer.load_state_dict(copy.deepcopy(pair.optimizers[1].state_dict()))
    return copy.deepcopy(optimizer.state_dict())


def test_a_group_holds_sparse_and_dense_parameters_and_a_table_may_change() -> None:
    """An embedding (sparse gradient) and a linear layer (dense) in one group; the embedding's
    gradient turns dense for some steps and sparse again: all as the dense run."""
    torch.manual_seed(3)
    models = []
    for sparse in (True, False):
        torch.manual_seed(3)
        models.append(
            torch.nn.ModuleDict(
                {"table": torch.nn.Embedding(50, 6, sparse=sparse), "head": torch.nn.Linear(6, 1)}
            )
        )
    optimizers = [
        rmsprop_ext.RMSprop(m.parameters(), lr=0.01, momentum=0.9, centered=True) for m in models
    ]
    optimizers[0].watch_embeddings(models[0])
    generator = torch.Generator().manual_seed(4)
    for step in range(60):
        rows = torch.randint(0, 20 if step < 30 else 50, (10,), generator=generator)
        for model, optimizer in zip(models, optimizers):
            model["table"].sparse = not (20 <= step < 25) and model is models[0]
            optimizer.zero_grad()
            model["head"](model["table"](rows)).pow(2).sum().backward()
            optimizer.step()
    optimizers[0].flush()
    # The head's gradient sums over every looked-up row, so the runs' rounding differences feed
    # back into each other's gradients: a looser bound than for a table alone.
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert (a - b).abs().max() <= 4e-5 * max(1.0, b.abs().max().item())


@pytest.mark.parametrize(
    "param_dtype,storage",
    [
        ("bfloat16", {}),
        ("bfloat16", {"state_dtype": torch.float32}),
        ("bfloat16", {"state_dtype": "8bit"}),
        ("bfloat16", {"compensation": "kahan"}),
        ("bfloat16", {"compensation": "stochastic"}),
        ("float16", {"state_dtype": torch.float32, "compensation": "kahan"}),
        ("float32", {"state_dtype": torch.bfloat16}),
        ("float32", {"state_dtype": "8bit"}),
    ],
    ids=lambda v: str(v),
)
def test_sixteen_bit_and_eight_bit_forms_take_sparse_gradients(
    param_dtype: str, storage: dict[str, Any]
) -> None:
    """Every storage form of the dense step takes sparse gradients (rows of 32: whole 8-bit
    blocks). Where the form rounds, two runs cannot agree bit for bit: the exact sparse run must
    stay as close to the float64 dense run as the dense run of the same form does."""
    dtype = getattr(torch, param_dtype)
    torch.manual_seed(0)
    start = torch.randn(64, 32).to(dtype)
    runs = [(dtype, True, storage), (dtype, False, storage), (torch.float64, False, {})]
    weights = []
    for run_dtype, sparse, form in runs:
        table = torch.nn.Embedding(64, 32, sparse=sparse, dtype=run_dtype)
        with torch.no_grad():
            table.weight.copy_(start)
        optimizer = rmsprop_ext.RMSprop(
            table.parameters(), lr=0.01, momentum=0.9, centered=True, **form
        )
        optimizer.watch_embeddings(table)
        generator = torch.Generator().manual_seed(2)
        for step in range(40):
            rows = torch.randint(0, 16 if step % 5 else 64, (12,), generator=generator)
            optimizer.zero_grad()
            (table(rows).double() - 0.5).pow(2).sum().backward()
            optimizer.step()
        optimizer.flush()
        weights.append(table.weight.detach().double())
    sparse_error = (weights[0] - weights[2]).abs().max().item()
    dense_error = (weights[1] - weights[2]).abs().max().item()
    ulp = {"bfloat16": 2**-8, "float16": 2**-11, "float32": 2**-24}[param_dtype]
    assert sparse_error <= 2 * dense_error + 4 * ulp * weights[2].abs().max().item()


def test_eight_bit_state_needs_rows_of_whole_blocks() -> None:
    table = torch.nn.Embedding(10, 8, sparse=True)
    optimizer = rmsprop_ext.RMSprop(table.parameters(), lr=0.1, state_dtype="8bit")
    table(torch.tensor([1, 2])).sum().backward()
    before = table.weight.detach().clone()
    with pytest.raises(ValueError, match="multiple of 32"):
        optimizer.step()
    assert torch.equal(table.weight, before)


def test_coupled_weight_decay_cannot_be_exact_and_nothing_changes() -> None:
    table = torch.nn.Embedding(10, 4, sparse=True)
    optimizer = rmsprop_ext.RMSprop(table.parameters(), lr=0.1, weight_decay=0.01)
    table(torch.tensor([1, 2])).sum().backward()
    before = table.weight.detach().clone()
    with pytest.raises(ValueError, match=r"weight_decay=0\.01.*decoupled_weight_decay=True"):
        optimizer.step()
    assert torch.equal(table.weight, before)
    # lazy takes it: the touched rows decay as in the dense step
    optimizer.param_groups[0]["sparse"] = "lazy"
    optimizer.step()
    assert torch.equal(table.weight[3:], before[3:])
    assert not torch.equal(table.weight[1:3], before[1:3])


def sparse_gradient(indices: list[int], rows: int = 10, dim: int = 4) -> Any:
    index = torch.tensor([indices], dtype=torch.int64)
    return torch.sparse_coo_tensor(
        index, torch.ones(len(indices), dim), (rows, dim), check_invariants=False
    )


@pytest.mark.parametrize(
    "make_grad,error,match",
    [
        (lambda: sparse_gradient([1, 10]), ValueError, "index 10.*outside the table's 10 rows"),
        (lambda: sparse_gradient([-1, 2]), ValueError, "index -1"),
        (lambda: torch.ones(10, 4).to_sparse(2), TypeError, "2 sparse dimensions"),
    ],
    ids=["past-the-end", "negative", "two-sparse-dims"],
)
def test_bad_sparse_gradients_raise_and_nothing_changes(
    make_grad: Any, error: type, match: str
) -> None:
    tables = [torch.nn.Parameter(torch.randn(10, 4)) for _ in range(2)]
    optimizer = rmsprop_ext.RMSprop(tables, lr=0.1, momentum=0.9)
    tables[0].grad = torch.ones(10, 4)  # a dense parameter in the same group, stepped first
    tables[1].grad = make_grad()
    before = [t.detach().clone() for t in tables]
    with pytest.raises(error, match=match):
        optimizer.step()
    assert all(torch.equal(t, b) for t, b in zip(tables, before))
    assert all(len(optimizer.state[t]) == 0 or optimizer.state[t]["step"] == 0 for t in tables)


def test_idle_steps_factors_follow_the_dense_step_by_hand() -> None:
    """The factors after three steps with their own learning rates, against the products and
    sums written out."""
    idle = _idle_steps.IdleSteps(length=8)
    lrs, alpha, momentum, decay = [0.1, 0.05, 0.02], 0.9, 0.8, 0.5
    for lr in lrs:
        idle.push(
            lr=lr, alpha=alpha, momentum=momentum, weight_decay=decay, decoupled_weight_decay=True
        )
    state, buffer, param, taken = idle.factors
    d = [1 - lr * decay for lr in lrs]
    assert state[3] == pytest.approx(alpha**3) and buffer[2] == pytest.approx(momentum**2)
    assert param[3] == pytest.approx(d[0] * d[1] * d[2])
    # x3 = d3 (d2 (d1 x0 - lr1 m b0) - lr2 m^2 b0) - lr3 m^3 b0
    expected = lrs[0] * momentum * d[1] * d[2] + lrs[1] * momentum**2 * d[2] + lrs[2] * momentum**3
    assert taken[3] == pytest.approx(expected)
    assert taken[1] == pytest.approx(lrs[2] * momentum)
    assert (state[0], buffer[0], param[0], taken[0]) == (1, 1, 1, 0)


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sparse_embedding.py"
# The example's training on each rank, which then leaves as the other two-rank tests' scripts do
# (gloo's teardown can race between ranks and abort one: helpers.leave_when_every_rank_is_done).
CHILD = Path(__file__).resolve().parent / "sparse_ddp_child.py"


def vm_flags(address: int) -> list[str]:
    """The VmFlags of the mapping holding `address` (/proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):
                low, high = (int(bound, 16) for bound in first.split("-"))
                inside = low <= address < high
            elif inside and first == "VmFlags:":
                return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise is Linux's")
def test_a_tables_state_is_advised_onto_huge_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """A table stepped with sparse gradients has its state and row steps advised onto 2 MiB pages
    ("hg" in the mapping's flags, whatever the kernel then backs them with); a parameter with a
    dense gradient keeps torch's allocation (its memory may still lie in a mapping advised for an
    earlier table, so that is checked on the calls), and the values are those torch.full_like
    gives."""
    advised_starts: list[int] = []
    advise = _huge_pages.advise_huge_pages

    def recorded(t: Any) -> bool:
        advised_starts.append(t.data_ptr())
        return advise(t)

    monkeypatch.setattr(_huge_pages, "advise_huge_pages", recorded)
    table = torch.nn.Embedding(1 << 19, 8, sparse=True)  # 16 MiB per buffer, row steps 4 MiB
    dense = torch.nn.Linear(1024, 1024)  # 4 MiB of weight
    optimizer = rmsprop_ext.RMSprop(
        [*table.parameters(), *dense.parameters()],
        lr=0.01,
        momentum=0.9,
        centered=True,
        initial_square_avg=0.5,
    )
    (table(torch.tensor([1, 5, 9])).sum() + dense(torch.ones(1024)).sum()).backward()
    optimizer.step()

    state = optimizer.state[table.weight]
    names = ("square_avg", "momentum_buffer", "grad_avg", "row_step")
    # (the checks of a mixed group's first step also make row steps, on a copy of the state)
    assert {state[name].data_ptr() for name in names} <= set(advised_starts)
    for p in dense.parameters():
        assert optimizer.state[p]["square_avg"].data_ptr() not in advised_starts
    for name in names:
        buffer = state[name]
        inside = (buffer.data_ptr() // HUGE_PAGE + 1) * HUGE_PAGE  # a whole 2 MiB page in it
        assert inside + HUGE_PAGE <= buffer.data_ptr() + buffer.numel() * buffer.element_size()
        assert "hg" in vm_flags(inside), name
    untouched = torch.ones(1 << 19, dtype=torch.bool)
    untouched[[1, 5, 9]] = False
    assert torch.equal(state["square_avg"][untouched], torch.full(((1 << 19) - 3, 8), 0.5))
    assert torch.equal(state["momentum_buffer"][untouched], torch.zeros((1 << 19) - 3, 8))


def sparse_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sparse_embedding", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.spread_over_isas  # two torchrun ranks
def test_ddp_with_sparse_gradients_on_two_ranks_trains_as_one_process(
    isa: str, tmp_path: Path
) -> None:
    """examples/sparse_embedding.py: an EmbeddingBag (sparse gradient) and a linear head under
    DistributedDataParallel on two gloo ranks, each on half of every global batch, against one
    process on the whole batches."""
    out = tmp_path / "params.pt"
    run_on_two_ranks(CHILD, "12", str(out), isa=isa, timeout=120)
    model, _ = sparse_example().train(12, ddp=False)
    # The ranks' gradients are summed in another order than one process sums them (float32
    # differences ~1e-7), which centered RMSProp's s - a^2 amplifies on small entries.
    for distributed, single in zip(torch.load(out), model.parameters()):
        torch.testing.assert_close(distributed, single.detach(), rtol=1e-4, atol=1e-5)
