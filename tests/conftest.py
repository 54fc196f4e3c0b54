"""Every test runs once per instruction set this machine can execute (scalar, avx2, avx512)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest
import rmsprop_ext
from hypothesis import HealthCheck, settings

# Property tests: a bounded run in CI, a long one on request (HYPOTHESIS_PROFILE=long).
_HYPOTHESIS = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}
settings.register_profile("ci", max_examples=200, derandomize=True, **_HYPOTHESIS)
settings.register_profile("long", max_examples=3000, **_HYPOTHESIS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

AVAILABLE_ISAS = rmsprop_ext.build_info()["isa_available"]
# RMSPROP_EXT_TEST_ISAS=avx512 (comma-separated) runs the tests on those instruction sets only.
_CHOSEN = os.environ.get("RMSPROP_EXT_TEST_ISAS")
if _CHOSEN:
    _unknown = [name for name in _CHOSEN.split(",") if name not in AVAILABLE_ISAS]
    if _unknown:
        raise pytest.UsageError(
            f"RMSPROP_EXT_TEST_ISAS names {_unknown}; this machine has {AVAILABLE_ISAS}"
        )
    ISAS_UNDER_TEST = _CHOSEN.split(",")
else:
    ISAS_UNDER_TEST = AVAILABLE_ISAS
HAS_TORCH = importlib.util.find_spec("torch") is not None

needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")


def pytest_report_header() -> str:
    return f"rmsprop_ext ISAs under test: {', '.join(ISAS_UNDER_TEST)}; torch: {HAS_TORCH}"


def pytest_configure(config: pytest.Config) -> None:
    # CI installs torch: a missing torch there is a broken install, not a reason to skip.
    if os.environ.get("CI") and not HAS_TORCH:
        raise pytest.UsageError("CI is set but torch is not importable; the torch tests would skip")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked spread_over_isas run each case on one instruction set: the first case on the
    best, the next on the one below, and so on round the list, so that every kernel still runs
    under them at a third of the cost. They start other processes (two torchrun ranks, a whole
    benchmark) to check what sits around the kernel, which is the same code on every instruction
    set; the kernels' own results are checked on every one by the rest of the suite."""
    turns: dict[tuple[str, str], int] = {}
    kept, left_out = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if item.get_closest_marker("spread_over_isas") is None or callspec is None:
            kept.append(item)
            continue
        case = (
            item.nodeid.split("[")[0],
            repr({k: v for k, v in callspec.params.items() if k != "isa"}),
        )
        turn = turns.setdefault(case, len(turns))
        if callspec.params["isa"] == ISAS_UNDER_TEST[-1 - turn % len(ISAS_UNDER_TEST)]:
            kept.append(item)
        else:
            left_out.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture(autouse=True, params=ISAS_UNDER_TEST)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    previous = rmsprop_ext.get_isa()
    rmsprop_ext.set_isa(request.param)
    yield request.param
    rmsprop_ext.set_isa(previous)
