"""Instruction-set selection, threads, build information, and life without torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import rmsprop_ext
from conftest import HAS_TORCH
from helpers import HIDE_TORCH


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def test_the_fixture_selected_isa_is_active(isa: str) -> None:
    assert rmsprop_ext.get_isa() == isa
    assert rmsprop_ext.build_info()["isa_active"] == isa


@pytest.mark.parametrize("name", ["scalar", "avx2", "avx512"])
def test_set_isa_accepts_available_levels_and_refuses_others(name: str, isa: str) -> None:
    info = rmsprop_ext.build_info()
    if name in info["isa_available"]:
        rmsprop_ext.set_isa(name)
        assert rmsprop_ext.get_isa() == name
    else:
        with pytest.raises(RuntimeError, match=name):
            rmsprop_ext.set_isa(name)
    with pytest.raises(ValueError, match="expected one of"):
        rmsprop_ext.set_isa("sse9")


def test_environment_override(isa: str) -> None:
    result = run_python("import rmsprop_ext; print(rmsprop_ext.get_isa())", RMSPROP_EXT_ISA=isa)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == isa
    bad = run_python("import rmsprop_ext", RMSPROP_EXT_ISA="avx1024")
    assert bad.returncode != 0 and "RMSPROP_EXT_ISA" in bad.stderr and "avx1024" in bad.stderr


def test_thread_count_is_honoured_and_does_not_change_results() -> None:
    default = rmsprop_ext.get_num_threads()
    try:
        rmsprop_ext.set_num_threads(1)
        assert rmsprop_ext.get_num_threads() == 1
        rmsprop_ext.set_num_threads(3)
        assert rmsprop_ext.get_num_threads() == 3
    finally:
        rmsprop_ext.set_num_threads(0)
    assert rmsprop_ext.get_num_threads() == default
    rng = np.random.default_rng(0)
    grad = rng.standard_normal(300_001).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        param, square_avg = np.ones_like(grad), np.zeros_like(grad)
        rmsprop_ext.rmsprop_step(param, grad, square_avg, lr=0.1, num_threads=threads)
        results.append(param)
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_omp_num_threads_sets_the_default() -> None:
    result = run_python(
        "import rmsprop_ext; print(rmsprop_ext.get_num_threads())", OMP_NUM_THREADS="3"
    )
    assert result.stdout.strip() == "3", result.stderr


def test_build_info_and_cli_info() -> None:
    info = rmsprop_ext.build_info()
    assert info["isa_compiled"][0] == "scalar"
    assert set(info["isa_available"]) <= set(info["isa_compiled"]) & set(info["isa_cpu"])
    assert info["openmp"] > 0 and info["num_threads"] >= 1
    result = subprocess.run(
        [sys.executable, "-m", "rmsprop_ext", "info"], capture_output=True, text=True, check=True
    )
    assert "isa_active" in result.stdout


@pytest.mark.parametrize("hide_torch", sorted(HIDE_TORCH))
def test_import_and_numpy_api_work_without_torch(hide_torch: str) -> None:
    code = (
        "import sys\n"
        + HIDE_TORCH[hide_torch]
        + """
import numpy as np, rmsprop_ext
p, s = np.ones(5), np.zeros(5)
rmsprop_ext.rmsprop_step(p, np.ones(5), s, lr=0.1)
assert (p < 1).all() and sys.modules.get("torch") is None
try:
    rmsprop_ext.RMSprop
except ImportError as e:
    print("ImportError:", e)
"""
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "ImportError: rmsprop_ext.RMSprop needs PyTorch" in result.stdout


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch")
@pytest.mark.parametrize("release", ["2.6.0+cpu", "2.7.0", "2.15.0+cu132"])
def test_a_torch_older_than_the_oldest_tested_is_named_in_a_warning(release: str) -> None:
    """In a fresh process, whose torch reports `release`: a warning when the optimizer is first
    taken from the package, naming both releases, only where torch is older than the tested."""
    result = run_python(
        f"""
import warnings, torch
torch.__version__ = "{release}"
import rmsprop_ext
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    rmsprop_ext.RMSprop
    rmsprop_ext.RMSprop
for warning in caught:
    print(warning.category.__name__, warning.message)
"""
    )
    assert result.returncode == 0, result.stderr
    oldest = ".".join(map(str, rmsprop_ext.OLDEST_TORCH))
    if release.startswith("2.6"):
        assert result.stdout.count("RuntimeWarning") == 1, result.stdout  # once per process
        assert f"tested with torch {oldest} and newer, and torch {release}" in result.stdout
    else:
        assert result.stdout == "", result.stdout


def test_oldest_torch_is_the_one_pyproject_claims() -> None:
    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml")) as file:
        claims = re.findall(r'"torch>=([0-9.]+)"', file.read())
    assert len(claims) >= 4  # the torch, test, bench and dev extras
    assert set(claims) == {".".join(map(str, rmsprop_ext.OLDEST_TORCH))}


def test_stub_lists_every_public_function_of_the_extension() -> None:
    import pathlib

    from rmsprop_ext import _core

    stub = (pathlib.Path(rmsprop_ext.__file__).parent / "_core.pyi").read_text()
    public = sorted(n for n in dir(_core) if not n.startswith("__"))
    declared = sorted(
        line.split("(")[0].split(":")[0].split()[1]
        for line in stub.splitlines()
        if line.startswith(("def ", "class "))
    )
    assert public == declared
