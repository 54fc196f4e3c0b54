r"""RMSprop as a ``torch.optim.Optimizer`` whose step is one fused native pass per param group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import _core, _huge_pages, _sharded, _sparse, quantized_state
from ._precision import (
    check_compensation,
    check_param_compensation,
    check_seed,
    dtype_name,
    state_dtype_name,
)
from ._step_contract import OWN_STEP_CONTRACT, run_step
from ._threads import threads_for_torch
from ._torch_fallback import has_plain_data, native_ok, rmsprop_torch_step
from ._tracked_state import TrackedState, TrackedStates
from .functional import (
    as_native_array,
    as_state_array,
    check_extension_options,
    hyperparams,
    native_hyperparams,
    native_torch_dtypes,
    options_from,
)
from .numpy_optimizer import check_optimizer_args

__all__ = ["RMSprop", "SparseGradientError", "rmsprop"]

_T = TypeVar("_T")


SparseGradientError = _sparse.SparseGradientError


_EXTENSION_DEFAULTS = {
    "eps_in_sqrt": False,
    "initial_square_avg": 0.0,
    "decoupled_weight_decay": False,
    "lr_in_momentum": False,
    "nesterov": False,
    "bias_correction": False,
    "rounding": "torch",
    "state_dtype": None,
    "compensation": None,
    "seed": 0,
    "sparse": "exact",
}
_STATE_BUFFERS = quantized_state.STATE_BUFFERS
_EXPONENTS = quantized_state.EXPONENTS_SUFFIX


def _new_state_buffer(p: Tensor, value: float, dtype: torch.dtype, table: bool) -> Tensor:
    """A state buffer of p's shape and layout filled with value; for a table stepped with sparse
    gradients (rows scattered over it) on huge pages, see _huge_pages."""
    empty = torch.empty_like(p, dtype=dtype, memory_format=torch.preserve_format)
    if table:
        return _huge_pages.filled_on_huge_pages(empty, value)
    return empty.fill_(value)


def _state_buffer(state: dict[str, Any], name: str) -> Any:
    """The state buffer `name` as the kernel takes it: a tensor, or (codes, exponents) when it is
    8-bit."""
    if name + _EXPONENTS in state:
        return state[name], state[name + _EXPONENTS]
    return state[name]


def _in_grad_mode(enabled: bool, run: Callable[[], _T]) -> _T:
    """run() with autograd on or off, restored afterwards even across a KeyboardInterrupt.

    `with torch.no_grad()` restores in a Python __exit__, and an interrupt raised as that frame
    starts skips the restore and leaves the whole process with autograd off (seen in CI). Here
    the switch happens inside the try and the restore is a single C call in the finally.
    """
    was_enabled = torch.is_grad_enabled()
    try:
        torch._C._set_grad_enabled(enabled)
        return run()
    finally:
        torch._C._set_grad_enabled(was_enabled)


def _scalar_dtype() -> torch.dtype:
    # torch.optim keeps `step` as float32, or float64 when that is the default dtype.
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class RMSprop(Optimizer):
    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        maximize: bool = False,
        *,
        eps_in_sqrt: bool = False,
        initial_square_avg: float = 0.0,
        decoupled_weight_decay: bool = False,
        lr_in_momentum: bool = False,
        nesterov: bool = False,
        bias_correction: bool = False,
        rounding: str = "torch",
        state_dtype: torch.dtype | str | None = None,
        compensation: str | None = None,
        seed: int = 0,
        sparse: str = "exact",
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        check_optimizer_args(float(lr), alpha, eps, weight_decay, momentum, initial_square_avg)
        check_extension_options(momentum, alpha, nesterov, bias_correction, rounding)
        check_compensation(compensation)
        check_seed(seed)
        _sparse.check_sparse_mode(sparse)
        if capturable:
            raise ValueError("capturable=True is not supported: rmsprop_ext steps on the host")
        if differentiable:
            raise ValueError("differentiable=True is not supported: the native step is in place")

        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "eps_in_sqrt": eps_in_sqrt,
            "initial_square_avg": initial_square_avg,
            "decoupled_weight_decay": decoupled_weight_decay,
            "lr_in_momentum": lr_in_momentum,
            "nesterov": nesterov,
            "bias_correction": bias_correction,
            "rounding": rounding,
            "state_dtype": state_dtype,
            "compensation": compensation,
            "seed": seed,
            "sparse": sparse,
        }
        super().__init__(params, defaults)
        for g, group in enumerate(self.param_groups):
            _check_group_storage(group, g)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Also runs on load_state_dict: groups saved by torch.optim.RMSprop lack our options, and
        # the state tensors are new, so the prepared steps are rebuilt.
        super().__setstate__(state)
        self._plans: list[_GroupPlan | _sharded.ShardedStep] = []
        for group in self.param_groups:
            group.setdefault("momentum", 0)
            group.setdefault("centered", False)
            group.setdefault("foreach", None)
            group.setdefault("maximize", False)
            group.setdefault("differentiable", False)
            group.setdefault("capturable", False)
            for key, value in _EXTENSION_DEFAULTS.items():
                group.setdefault(key, value)
            for p in group["params"]:
                p_state = self.state.get(p, [])
                if len(p_state) != 0 and not torch.is_tensor(p_state["step"]):
                    p_state["step"] = torch.tensor(float(p_state["step"]), dtype=_scalar_dtype())

    def native_coverage(self) -> dict[str, Any]:
        """Which parameters the native kernel updates and which take the pure-torch path.

        Returns {"native": n, "fallback": m, "native_fraction": share of elements updated
        natively, "fallback_params": [(group index, param index, reason), ...], "params":
        [(group index, param index, dtype, state dtype, compensation, "native" or "fallback"),
        ...]}. The native kernel takes contiguous float32/float64/complex/bfloat16/float16 CPU
        tensors, and DTensors (FSDP2's sharded parameters) whose local shard is one; others
        (another device, non-contiguous views, other tensor subclasses) train with the same math
        in plain torch ops. Element counts are global (a DTensor's full shape).
        """
        native = fallback = native_elements = total_elements = 0
        reasons: list[tuple[int, int, str]] = []
        forms: list[tuple[int, int, str, str, str | None, str]] = []
        for g, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                total_elements += p.numel()
                path = "native" if native_ok(p) or _sharded.native_shard_ok(p) else "fallback"
                floating = p.is_floating_point() or p.is_complex()
                state = (
                    state_dtype_name(p.dtype, group["state_dtype"])
                    if floating
                    else dtype_name(p.dtype)
                )
                forms.append((g, i, dtype_name(p.dtype), state, group["compensation"], path))
                if path == "native":
                    native += 1
                    native_elements += p.numel()
                    continue
                fallback += 1
                if not has_plain_data(p) and not isinstance(p, _sharded.dtensor_type() or ()):
                    why = f"tensor subclass {type(p).__name__}"
                elif p.device.type != "cpu":
                    why = f"on {p.device}"
                elif p.dtype not in native_torch_dtypes():
                    why = f"dtype {p.dtype}"
                else:
                    why = "not contiguous"
                reasons.append((g, i, why))
        return {
            "native": native,
            "fallback": fallback,
            "native_fraction": native_elements / total_elements if total_elements else 1.0,
            "fallback_params": reasons,
            "params": forms,
        }

    def state_dict(self) -> dict[str, Any]:
        """torch's state_dict, each parameter's state a plain dict (the optimizer's own ones
        watch for replaced entries, see _track_state), so a checkpoint loads anywhere, also with
        torch.load's weights_only unpickler. The tensors are the live ones, as torch's are.

        The options torch.optim.RMSprop lacks are saved only where they differ from their
        defaults, so that with the defaults the state dict has torch's keys exactly: distributed
        checkpoints (torch.distributed.checkpoint) load only the keys the loading side asks for,
        and fail on any the checkpoint lacks, so a torch checkpoint must be able to fill an
        rmsprop_ext one and the reverse. Loading leaves options the dict lacks as they are.
        """
        self.flush()  # every row of a sparse table as the dense step has it
        saved = super().state_dict()
        saved["state"] = _sparse.without_bookkeeping(saved["state"])
        for group in saved["param_groups"]:
            for key, default in _EXTENSION_DEFAULTS.items():
                if key in group and type(group[key]) is type(default) and group[key] == default:
                    del group[key]
        return saved

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's load_state_dict, after checking that every state entry fits its parameter.

        torch does not check state shapes or missing buffers (a wrong checkpoint would only fail
        at a later step); here anything wrong raises before any state is replaced. A state dict
        has every row of a sparse table up to date (see `state_dict`), so the loaded tables start
        with no rows behind.
        """
        _check_state_dict(self.param_groups, state_dict)
        # Options a saved group lacks (a torch.optim.RMSprop state dict has none of ours) keep
        # this optimizer's values, so that, e.g., its state_dtype converts the loaded state.
        groups = [
            {**{k: group[k] for k in _EXTENSION_DEFAULTS if k not in saved}, **saved}
            for group, saved in zip(self.param_groups, state_dict["param_groups"])
        ]
        for g, group in enumerate(groups):
            params = self.param_groups[g]["params"]
            _check_group_storage({**group, "params": params}, g)
        state = _sparse.without_bookkeeping(state_dict["state"])
        super().load_state_dict({**state_dict, "state": state, "param_groups": groups})
        # torch has cast every floating-point state tensor to its parameter's dtype; the state
        # here has the group's state_dtype, so it is converted again, from the saved tensors.
        saved_ids = [i for group in groups for i in group["params"]]
        for saved_id, (group, p) in zip(saved_ids, self._params_with_groups()):
            entry = state_dict["state"].get(saved_id)
            if entry is None or not (p.is_floating_point() or p.is_complex()):
                continue
            form = state_dtype_name(p.dtype, group["state_dtype"])
            for key in _STATE_BUFFERS:
                value, state = entry.get(key), self.state[p]
                if not isinstance(value, Tensor) or not isinstance(state.get(key), Tensor):
                    continue
                if quantized_state.is_quantized(entry, key):
                    exponents = entry[key + _EXPONENTS]
                    if form == "8bit":  # as saved (torch cast the codes to the param's dtype)
                        state[key] = value.to(device=p.device, copy=True)
                        state[key + _EXPONENTS] = exponents.to(device=p.device, copy=True)
                        continue
                    # torch cast the codes as numbers; the values are the decoded codes
                    value = quantized_state.dequantize(value, exponents, key)
                    del state[key + _EXPONENTS]
                    state[key] = value.to(dtype=getattr(torch, form), device=p.device)
                elif form == "8bit":
                    codes, exponents = quantized_state.quantize(value.to(p.device), key)
                    state[key], state[key + _EXPONENTS] = codes, exponents
                elif state[key].dtype != getattr(torch, form):
                    state[key] = value.to(dtype=getattr(torch, form), device=p.device, copy=True)

    @torch.no_grad()
    def flush(self) -> None:
        """Brings every row of the tables stepped with sparse gradients (``sparse="exact"``) up to
        date: the rows their gradients left out since they were last touched take the steps
        they sat out (their running averages decay; with momentum or decoupled weight decay the
        parameters move), so that parameters and state equal the dense step's. ``state_dict``
        does this first; steps do it for the rows they touch."""
        self._catch_up_tables(None)

    @torch.no_grad()
    def catch_up(self, param: Tensor, rows: Tensor) -> None:
        """Brings these rows (int64 row numbers, any shape, repeats allowed) of a table stepped
        with sparse gradients up to date, as `flush` does for all: what a lookup must read."""
        self._catch_up_tables({param: rows.reshape(-1).to(torch.int64)})

    def watch_embeddings(self, model: torch.nn.Module) -> list[Any]:
        """Registers a forward pre-hook on every ``nn.Embedding`` and ``nn.EmbeddingBag`` of
        `model` whose weight this optimizer steps, which brings the rows a forward looks up up to
        date first (`catch_up`). With momentum or decoupled weight decay an idle row's parameter
        keeps moving in the dense step, and the forward must read it so; without them it is
        unchanged and the hooks have nothing to do. Returns the hooks' handles."""
        mine = {id(p) for _, p in self._params_with_groups()}
        return [
            module.register_forward_pre_hook(self._lookup_hook)
            for module in model.modules()
            if isinstance(module, (torch.nn.Embedding, torch.nn.EmbeddingBag))
            and id(module.weight) in mine
        ]

    def _lookup_hook(self, module: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
        weight = module.weight
        assert isinstance(weight, Tensor)
        self.catch_up(weight, inputs[0])

    def _catch_up_tables(self, rows: dict[Tensor, Tensor] | None) -> None:
        firsts = _group_first_streams(self.param_groups)
        for group, first in zip(self.param_groups, firsts):
            tables = [
                (p, self.state[p], first + index)
                for index, p in enumerate(group["params"])
                if _sparse.ROW_STEP in self.state.get(p, {}) and (rows is None or p in rows)
            ]
            if not tables:
                continue
            params, states, streams = (list(column) for column in zip(*tables))
            options = options_from(group)
            _sparse.catch_up(
                params,
                states,
                streams,
                options,
                native_hyperparams(options),
                threads_for_torch(),
                rows=None if rows is None else [rows[p] for p in params],
            )

    def _params_with_groups(self) -> list[tuple[dict[str, Any], Tensor]]:
        return [(group, p) for group in self.param_groups for p in group["params"]]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._plans = []
        group = self.param_groups[-1]
        try:
            _check_group_storage(group, len(self.param_groups) - 1)
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def _init_group(
        self,
        group: dict[str, Any],
        params_with_grad: list[Tensor],
        grads: list[Tensor],
        square_avgs: list[Any],
        momentum_buffer_list: list[Any],
        grad_avgs: list[Any],
        state_steps: list[Tensor],
        compensations: list[Tensor] | None = None,
        streams: list[int] | None = None,
        first_stream: int = 0,
        tables: _sparse.GroupTables | None = None,
    ) -> None:
        """Gathers the group's parameters with a gradient, making their state where it is new.
        Those with a sparse gradient go to `tables` (when given; SparseGradientError otherwise)."""
        for index, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            sparse = _sparse.is_sparse(p.grad)
            if sparse and tables is None:
                raise SparseGradientError(
                    f"RMSprop does not support sparse gradients (a {p.grad.layout} grad)"
                )
            if not sparse:
                params_with_grad.append(p)
                grads.append(p.grad)

            state = self.state[p]

            # State initialization, built aside and installed by one assignment: a
            # KeyboardInterrupt can then never leave a half-built state behind.
            if len(state) == 0:
                # The state in the group's state_dtype (the parameter's by default, as torch).
                form = state_dtype_name(p.dtype, group["state_dtype"])
                dtype = torch.float32 if form == "8bit" else getattr(torch, form)
                fresh = {
                    "step": torch.zeros((), dtype=_scalar_dtype()),
                    "square_avg": _new_state_buffer(p, group["initial_square_avg"], dtype, sparse),
                }
                if group["momentum"] > 0:
                    fresh["momentum_buffer"] = _new_state_buffer(p, 0.0, dtype, sparse)
                if group["centered"]:
                    fresh["grad_avg"] = _new_state_buffer(p, 0.0, dtype, sparse)
                if form == "8bit":
                    for name in _STATE_BUFFERS:
                        if name in fresh:
                            codes, exponents = quantized_state.quantize(fresh[name], name)
                            fresh[name], fresh[name + _EXPONENTS] = codes, exponents
                self.state[p] = state = fresh
            if group["compensation"] == "kahan" and "compensation" not in state:
                # Kahan summation's buffer, the parameter's dtype, starting at zero (also when
                # Kahan summation is switched on later in training).
                state["compensation"] = _new_state_buffer(p, 0.0, p.dtype, sparse)
            if sparse:
                assert tables is not None
                tables.add(p, state, first_stream + index, index)
                continue
            if tables is not None and _sparse.ROW_STEP in state:
                tables.behind(p, state, first_stream + index)  # sparse until now
            square_avgs.append(_state_buffer(state, "square_avg"))
            state_steps.append(state["step"])

            if group["momentum"] > 0:
                momentum_buffer_list.append(_state_buffer(state, "momentum_buffer"))
            if group["centered"]:
                grad_avgs.append(_state_buffer(state, "grad_avg"))
            if compensations is not None and group["compensation"] == "kahan":
                compensations.append(state["compensation"])
            if streams is not None:
                streams.append(first_stream + index)

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    def step(self, *args: Any, **kwargs: Any) -> Any:
        """Perform a single optimization step: ``step(closure=None)``.

        Args:
            closure (Callable, optional): A closure that reevaluates the model
                and returns the loss.
        """
        if OWN_STEP_CONTRACT and type(self).step is RMSprop.step:
            return run_step(self, RMSprop._step, (self, *args), kwargs)
        # A subclass's own step, which torch.optim has wrapped in its contract, or a torch whose
        # step contract rmsprop_ext does not keep itself.
        return self._step(*args, **kwargs)

    def _step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            loss = _in_grad_mode(True, closure)

        # The prepared step is one native call, which autograd never sees: grad mode only
        # matters to the general step's torch ops.
        if not self._prepared_step():
            _in_grad_mode(False, self._general_then_prepare)
        return loss

    def _general_then_prepare(self) -> None:
        self._general_step()
        self._prepare_next_steps()

    def _prepared_step(self) -> bool:
        """The fast path: one probe-and-update native call per group, no per-tensor Python work.

        Returns False, having written nothing, when any group's prepared step no longer fits (new
        parameters, a missing or non-contiguous gradient, moved storage, other options).
        """
        plans = self.__dict__.get("_plans")
        if not plans or len(plans) != len(self.param_groups):
            return False
        threads = threads_for_torch()
        # plan.step refuses (returning False) a group whose list holds other parameters now.
        work = [
            (
                plan,
                group["params"],
                {
                    "group": group,
                    "hyperparams": native_hyperparams(options_from(group)),
                    "num_threads": threads,
                },
            )
            for plan, group in zip(plans, self.param_groups)
        ]
        if len(work) > 1:
            # All groups are checked before any is written.
            for plan, params, opts in work:
                if not plan.step(params, **opts, check_only=True):
                    return False
        for plan, params, opts in work:
            if not plan.step(params, **opts):
                return False  # only the first group can get here, before anything was written
        for plan, params, _ in work:  # plan.step found its very parameters in each list
            torch.autograd.graph.increment_version(plan.updated(params))
        return True

    def _prepare_next_steps(self) -> None:
        """Builds the prepared steps when every group can have one.

        _prepared_step runs only when all groups have a plan, so nothing is built while any
        group has a parameter without a gradient or state, or one the native kernel cannot take.
        """
        self._plans = []
        plain_groups: list[bool] = []  # plain tensors, else DTensors whose shards are native
        for group in self.param_groups:
            params = group["params"]
            if not all(p.grad is not None for p in params):
                return
            plain = all(map(native_ok, params))
            if not (plain or all(map(_sharded.native_shard_ok, params))):
                return
            if not all(len(self.state[p]) > 0 for p in params):
                return
            # Tables with sparse gradients, or with rows still to bring up to date, take the
            # general step.
            if any(_sparse.is_sparse(p.grad) or _sparse.ROW_STEP in self.state[p] for p in params):
                return
            plain_groups.append(plain)
        firsts = _group_first_streams(self.param_groups)
        built: list[_GroupPlan | _sharded.ShardedStep | None] = [
            _GroupPlan.build(g["params"], self.state, g, first)
            if plain
            else _sharded.ShardedStep.build(
                g["params"], [self.state[p] for p in g["params"]], g, first
            )
            for g, first, plain in zip(self.param_groups, firsts, plain_groups)
        ]
        plans = [plan for plan in built if plan is not None]
        if len(plans) == len(built):
            self._track_state()
            self._plans = plans

    def _track_state(self) -> None:
        """Makes every replacement of a state entry (``state[p][name] = t``) or of a parameter's
        state (``state[p] = {...}``) drop the prepared steps, which hold the tensors they were
        built with, so that the next step takes the new ones as torch's would."""
        if not isinstance(self.state, TrackedStates):
            self.state = TrackedStates(self.state, self._drop_prepared_steps)
        for group in self.param_groups:
            for p in group["params"]:
                entries = self.state[p]
                if not isinstance(entries, TrackedState):
                    # dict's own __setitem__: wrapping is no change of the state
                    dict.__setitem__(
                        self.state, p, TrackedState(entries, self._drop_prepared_steps)
                    )

    def _drop_prepared_steps(self) -> None:
        self._plans = []

    def _general_step(self) -> None:
        # Every group is gathered and checked before any is updated, so an error leaves all
        # parameters and state as they were.
        work: list[Any] = []
        firsts = _group_first_streams(self.param_groups)
        for g, (group, first_stream) in enumerate(zip(self.param_groups, firsts)):
            tables = _sparse.GroupTables(group, g, options_from(group))
            params_with_grad: list[Tensor] = []
            grads: list[Tensor] = []
            square_avgs: list[Any] = []
            grad_avgs: list[Any] = []
            momentum_buffer_list: list[Any] = []
            state_steps: list[Tensor] = []
            compensations: list[Tensor] = []
            streams: list[int] = []

            self._init_group(
                group,
                params_with_grad,
                grads,
                square_avgs,
                momentum_buffer_list,
                grad_avgs,
                state_steps,
                compensations,
                streams,
                first_stream,
                tables,
            )
            work.append(
                (
                    tables,
                    group,
                    params_with_grad,
                    grads,
                    square_avgs,
                    grad_avgs,
                    momentum_buffer_list,
                    state_steps,
                    compensations,
                    streams,
                )
            )

        # A single native call checks everything before it writes: one group whose parameters
        # all have dense gradients, or all sparse ones, needs no separate checks.
        tables, _, dense_params, *_ = work[0] if work else (None, None, [])
        alone = len(work) < 2 and not (
            tables and (tables.dense or (tables.params and dense_params))
        )
        for check_only in (True, False):
            if check_only and alone:
                continue
            for tables, group, p, g, s, a, b, steps, kahan, streams in work:
                if tables.params or tables.dense:
                    # Before the group's dense step: a table turning dense is brought up to date.
                    tables.step(native_hyperparams(tables.options), threads_for_torch(), check_only)
                rmsprop(
                    p,
                    g,
                    s,
                    a,
                    b,
                    steps,
                    kahan,
                    streams,
                    lr=group["lr"],
                    alpha=group["alpha"],
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                    momentum=group["momentum"],
                    centered=group["centered"],
                    maximize=group["maximize"],
                    eps_in_sqrt=group["eps_in_sqrt"],
                    decoupled_weight_decay=group["decoupled_weight_decay"],
                    lr_in_momentum=group["lr_in_momentum"],
                    nesterov=group["nesterov"],
                    bias_correction=group["bias_correction"],
                    rounding=group["rounding"],
                    compensation=group["compensation"],
                    seed=group["seed"],
                    check_only=check_only,
                )


if OWN_STEP_CONTRACT:
    # Optimizer._patch_step_function wraps every step without this mark in torch's own contract.
    RMSprop.step.hooked = True  # type: ignore[attr-defined]

RMSprop.__doc__ = r"""Implements RMSprop with a fused native step; drop-in for torch.optim.RMSprop.

    .. math::
       \begin{aligned}
            &\textbf{input}: \alpha \text{ (alpha)}, \gamma \text{ (lr)}, \theta_0 \text{ (params)},
                \lambda \text{ (weight decay)}, \mu \text{ (momentum)}, \epsilon \text{ (eps)} \\
            &\textbf{initialize}: v_0 \leftarrow v_{init} \text{ (initial\_square\_avg)},
                \textbf{b}_0 \leftarrow 0, g^{ave}_0 \leftarrow 0 \\
            &\textbf{for} \: t=1 \: \textbf{to} \: \ldots \: \textbf{do} \\
            &\hspace{5mm} g_t \leftarrow \pm\nabla_{\theta} f_t (\theta_{t-1})
                \quad (- \text{ if maximize}) \\
            &\hspace{5mm} \textbf{if} \: \lambda \neq 0: \textbf{if} \: decoupled:
                \theta_{t-1} \leftarrow (1 - \gamma\lambda)\theta_{t-1}
                \: \textbf{else} \: g_t \leftarrow g_t + \lambda\theta_{t-1} \\
            &\hspace{5mm} v_t \leftarrow \alpha v_{t-1} + (1 - \alpha) g^2_t \\
            &\hspace{5mm} \tilde{v_t} \leftarrow v_t \\
            &\hspace{5mm} \textbf{if} \: centered: g^{ave}_t \leftarrow \alpha g^{ave}_{t-1}
                + (1-\alpha) g_t, \quad
                \tilde{v_t} \leftarrow \max(0, \tilde{v_t} - (g^{ave}_t)^2) \\
            &\hspace{5mm} d_t \leftarrow \sqrt{\tilde{v_t} + \epsilon}
                \: \textbf{if} \: eps\_in\_sqrt \: \textbf{else} \: \sqrt{\tilde{v_t}} + \epsilon \\
            &\hspace{5mm} \textbf{if} \: \mu > 0: \textbf{b}_t \leftarrow \mu\textbf{b}_{t-1}
                + g_t / d_t, \quad \theta_t \leftarrow \theta_{t-1} - \gamma\textbf{b}_t \\
            &\hspace{5mm} \textbf{else}: \theta_t \leftarrow \theta_{t-1} - \gamma g_t / d_t \\
       \end{aligned}

    With the defaults this is exactly torch.optim.RMSprop's algorithm, with the same defaults,
    validation, param groups and per-parameter state (``step``, ``square_avg``,
    ``momentum_buffer``, ``grad_avg``), so state dicts move between the two, and its results bit
    for bit (float32, float64, complex, and bfloat16/float16 with state of their dtype).

    Contiguous float32/float64/complex/bfloat16/float16 CPU parameters of a group are updated in
    one native call (SIMD, OpenMP, GIL released); any other parameter (another device,
    non-contiguous) is updated by the same math in plain torch ops.

    Args:
        params (iterable): iterable of parameters or dicts defining parameter groups
        lr (float, Tensor, optional): learning rate (default: 1e-2)
        alpha (float, optional): smoothing constant, in [0, 1] (default: 0.99)
        eps (float, optional): term added to the denominator to improve
            numerical stability (default: 1e-8)
        weight_decay (float, optional): weight decay (L2 penalty) (default: 0)
        momentum (float, optional): momentum factor (default: 0)
        centered (bool, optional): if ``True``, compute the centered RMSProp,
            the gradient is normalized by an estimation of its variance
        maximize (bool, optional): maximize the objective instead of minimizing (default: False)
        eps_in_sqrt (bool, optional): use ``sqrt(v + eps)`` (the textbook, TensorFlow, Keras,
            optax) instead of torch's ``sqrt(v) + eps`` (default: False)
        initial_square_avg (float, optional): starting value of ``square_avg``; TF1 used 1.0
            (default: 0.0)
        decoupled_weight_decay (bool, optional): shrink the parameters by ``1 - lr * weight_decay``
            (AdamW style) instead of adding ``weight_decay * param`` to the gradient
            (default: False)
        rounding (str, optional): "torch" (torch's rounding in this process, bit for bit),
            "fused" or "separate" (multiply-adds rounded once or twice, IEEE square roots,
            16-bit buffers rounded once per stored value) (default: "torch")
        state_dtype (torch.dtype or str, optional): dtype of the state; None for the
            parameter's (as torch), torch.float32 for bfloat16/float16 parameters,
            torch.bfloat16 for bfloat16 or float32 ones, or "8bit" for float32, bfloat16 and
            float16 ones: one byte per element plus one exponent byte per block of 32, rounded
            stochastically (state ``name`` holds the uint8 codes, ``name + "_exponents"`` the
            int8 exponents; ``rmsprop_ext.dequantize_state_dict`` turns them into float32)
            (default: None)
        compensation (str, optional): None (round to nearest, as torch), "kahan" (a
            compensation buffer per bfloat16/float16 parameter) or "stochastic" (stochastic
            rounding of bfloat16/float16 parameters) (default: None)
        seed (int, optional): the seed of the stochastic roundings (default: 0)
        foreach (bool, optional): accepted for compatibility with torch.optim.RMSprop; ignored
        capturable, differentiable (bool, optional): accepted for compatibility; must be False
    """


def _check_group_storage(group: dict[str, Any], g: int) -> None:
    """ValueError/TypeError when the group's state_dtype, compensation or seed cannot apply to one
    of its parameters: raised when the group is made, before any step."""
    check_compensation(group.get("compensation"))
    check_seed(group.get("seed", 0))
    for i, p in enumerate(group["params"]):
        where = f"param_groups[{g}]['params'][{i}]"
        if not (p.is_floating_point() or p.is_complex()):
            continue  # torch's own checks speak for these
        form = state_dtype_name(p.dtype, group.get("state_dtype"), f"state_dtype (for {where})")
        check_param_compensation(p.dtype, group.get("compensation"), where)
        if form == "8bit" and not has_plain_data(p):
            # Its blocks of 32 and their exponents belong to one buffer, not to shards of one.
            raise ValueError(
                f"state_dtype='8bit' needs plain tensors; {where} is a {type(p).__name__} "
                "(for sharded parameters choose torch.bfloat16 or None)"
            )


def _group_first_streams(groups: list[dict[str, Any]]) -> list[int]:
    """The stochastic rounding's stream of each group's first parameter: parameters are numbered
    across all groups, in order."""
    firsts, count = [], 0
    for group in groups:
        firsts.append(count)
        count += len(group["params"])
    return firsts


def _check_state_dict(groups: list[dict[str, Any]], state_dict: Any) -> None:
    """ValueError/TypeError naming the entry, for a state dict that cannot fit these groups."""
    if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
        raise ValueError("state_dict must be a dict with 'state' and 'param_groups'")
    saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    if len(saved_groups) != len(groups):
        raise ValueError(
            f"state_dict has {len(saved_groups)} param groups, the optimizer {len(groups)}"
        )
    for g, (group, saved) in enumerate(zip(groups, saved_groups)):
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(
                f"state_dict['param_groups'][{g}] has {len(saved['params'])} params, "
                f"the optimizer's group has {len(group['params'])}"
            )
        options = {**group, **{k: v for k, v in saved.items() if k != "params"}}
        needed = ["step", "square_avg"]
        if options.get("momentum", 0) > 0:
            needed.append("momentum_buffer")
        if options.get("centered", False):
            needed.append("grad_avg")
        for key, p in zip(saved["params"], group["params"]):
            entry = saved_state.get(key)
            if entry is None:
                continue  # a parameter that had no step yet
            where = f"state_dict['state'][{key!r}]"
            for name in needed:
                if name not in entry:
                    raise ValueError(f"{where} is missing '{name}'")
            for name in needed[1:]:
                value = entry[name]
                if quantized_state.is_quantized(entry, name):
                    quantized_state.check_entry(entry, name, p.shape, where)
                    continue
                if not isinstance(value, Tensor):
                    raise TypeError(
                        f"{where}['{name}'] must be a tensor, got {type(value).__name__}"
                    )
                if value.shape != p.shape:
                    raise ValueError(
                        f"{where}['{name}'] has shape {tuple(value.shape)}, "
                        f"its parameter {tuple(p.shape)}"
                    )
                if not (value.is_floating_point() or value.is_complex()):
                    raise TypeError(f"{where}['{name}'] has dtype {value.dtype}, not a float")


class _GroupPlan:
    """A group's prepared native step, valid while the group holds the same parameter objects."""

    def __init__(self, native: _core.PreparedStep):
        self.native = native

    def step(
        self,
        params: list[Tensor],
        group: dict[str, Any],
        hyperparams: _core.Hyperparams,
        num_threads: int,
        check_only: bool = False,
    ) -> bool:
        del group  # the native step checks the options it was built for in `hyperparams`
        return self.native.step(
            params, hyperparams=hyperparams, num_threads=num_threads, check_only=check_only
        )

    @staticmethod
    def updated(params: list[Tensor]) -> list[Tensor]:
        return params

    @staticmethod
    def build(
        params: list[Tensor], state: dict[Tensor, Any], group: dict[str, Any], first_stream: int
    ) -> _GroupPlan | None:
        momentum, centered = group["momentum"] > 0, group["centered"]
        kahan = group["compensation"] == "kahan"
        states = [state[p] for p in params]

        def views(key: str) -> list[Any]:
            return [as_state_array(_state_buffer(s, key), key) for s in states]

        try:
            native = _core.PreparedStep(
                params,
                [as_native_array(p, "param") for p in params],
                views("square_avg"),
                views("momentum_buffer") if momentum else None,
                views("grad_avg") if centered else None,
                views("compensation") if kahan else None,
                views("step"),
                list(range(first_stream, first_stream + len(params))),
                momentum=momentum,
                centered=centered,
                kahan=kahan,
            )
        except (TypeError, ValueError, KeyError, RuntimeError):
            return None  # state the fast path cannot hold (e.g. loaded non-contiguous): no plan
        return _GroupPlan(native)


def rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Any],
    grad_avgs: list[Any],
    momentum_buffer_list: list[Any],
    state_steps: list[Tensor],
    compensations: list[Tensor] | None = None,
    streams: list[int] | None = None,
    *,
    lr: float | Tensor,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    eps_in_sqrt: bool = False,
    decoupled_weight_decay: bool = False,
    lr_in_momentum: bool = False,
    nesterov: bool = False,
    bias_correction: bool = False,
    rounding: str = "torch",
    compensation: str | None = None,
    seed: int = 0,
    check_only: bool = False,
) -> None:
    r"""Functional API that performs the rmsprop_ext algorithm computation (see `RMSprop`).

    Parameters the native kernel takes go through one native call; the rest through plain torch.
    ``compensations`` are Kahan summation's buffers (with ``compensation="kahan"``) and
    ``streams`` each parameter's stream in the stochastic rounding (default: its index).
    A state buffer is a tensor, or a (codes, exponents) pair for 8-bit state.
    With ``check_only`` the native buffers are only checked and nothing is written.
    """
    if not params:
        return
    options = hyperparams(
        lr,
        alpha,
        eps,
        weight_decay,
        momentum,
        centered,
        maximize,
        eps_in_sqrt,
        decoupled_weight_decay,
        lr_in_momentum,
        nesterov,
        bias_correction,
        rounding,
        compensation,
        seed,
    )
    use_momentum = momentum > 0
    kahan = compensation == "kahan"
    stochastic = compensation == "stochastic"
    if kahan and (compensations is None or len(compensations) != len(params)):
        raise ValueError("compensation='kahan' needs one compensation buffer per parameter")
    streams = list(range(len(params))) if streams is None else streams

    # What the kernel updates of each parameter: its own tensors, the local shards of a DTensor
    # parameter whose gradient and state are DTensors like it, or nothing (the torch path).
    native: dict[int, list[Any]] = {}
    fallback: list[int] = []
    for i, p in enumerate(params):
        tensors = [
            p,
            grads[i],
            square_avgs[i],
            momentum_buffer_list[i] if use_momentum else None,
            grad_avgs[i] if centered else None,
            compensations[i] if kahan and compensations else None,
        ]
        local = tensors if native_ok(p) else _sharded.local_shards(p, tensors[1:])
        if local is None:
            fallback.append(i)
        else:
            native[i] = local

    def arrays(position: int, name: str) -> list[Any]:
        # Non-contiguous gradients (possible when set by hand) are read through a contiguous copy.
        return [
            as_state_array(
                local[position] if name != "grads" else local[position].contiguous(),
                f"{name}[{i}]",
            )
            for i, local in native.items()
        ]

    if native:
        _core.rmsprop_step_many(
            arrays(0, "params"),
            arrays(1, "grads"),
            arrays(2, "square_avgs"),
            arrays(3, "momentum_buffers") if use_momentum else None,
            arrays(4, "grad_avgs") if centered else None,
            arrays(5, "compensations") if kahan and compensations else None,
            hyperparams=native_hyperparams(options),
            num_threads=threads_for_torch(),
            check_only=check_only,
            # counted in the same native call as the update: nothing can interrupt in between
            steps=[state_steps[i].numpy() for i in native],
            # (only stochastic rounding reads the streams, and a shard's needs working out)
            streams=[
                _sharded.shard_stream(params[i], streams[i]) if stochastic else streams[i]
                for i in native
            ],
        )
    if check_only:
        return
    if native:
        # The native kernel writes through pointers; tell autograd the parameters (and the local
        # tensors of DTensor ones) changed.
        updated = [local[0] for local in native.values()]
        updated += [params[i] for i, local in native.items() if local[0] is not params[i]]
        torch.autograd.graph.increment_version(updated)
    for i in fallback:
        step = int(state_steps[i].item()) + 1
        buffers = {
            "square_avg": square_avgs[i],
            "momentum_buffer": momentum_buffer_list[i] if use_momentum else None,
            "grad_avg": grad_avgs[i] if centered else None,
        }
        # 8-bit state takes the step in float32 and is stored back as the kernel stores it.
        work = {
            name: quantized_state.dequantize(buffer[0], buffer[1], name)
            if isinstance(buffer, tuple)
            else buffer
            for name, buffer in buffers.items()
        }
        rmsprop_torch_step(
            params[i],
            grads[i],
            work["square_avg"],
            work["momentum_buffer"],
            work["grad_avg"],
            **options,
            step=step,
            compensation_buffer=compensations[i] if kahan and compensations else None,
            stream=streams[i],
        )
        for name, buffer in buffers.items():
            if isinstance(buffer, tuple):
                codes, exponents = buffer
                quantized_state.store(work[name], codes, exponents, name, seed, streams[i], step)
    if fallback:
        torch._foreach_add_([state_steps[i] for i in fallback], 1)
