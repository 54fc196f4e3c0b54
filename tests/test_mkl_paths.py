"""torch's square root on each of MKL's code paths, in a process whose environment sends MKL down
it (MKL reads the variables when it loads): the probe picks the form the kernels compute in their
single pass (float32 and float64), that form gives MKL's bits (float32 on whole binades, float64
on samples of every binade), and the native step is then bitwise
torch.optim.RMSprop's on every instruction set (the avx2 and avx512 kernels computing the root,
the scalar one calling MKL's function), while the IEEE square root is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rmsprop_ext
from conftest import HAS_TORCH
from helpers import cpu_vendor

pytestmark = [
    pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch"),
    pytest.mark.needs_torch,
]

CHILD = Path(__file__).with_name("mkl_path_child.py")

# The environment that sends MKL down each path, and the form torch.sqrt then is, with whether it
# holds on every vendor's CPU. MKL_ENABLE_INSTRUCTIONS only lowers what MKL would pick for the CPU
# (an AMD CPU gets the SSE4.2 path whatever it says); MKL_VML_DEBUG_CPU_TYPE names a column of
# MKL's vector-math dispatch table directly, on any vendor's CPU that can run its instructions.
PATHS = {
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2": ("mkl_sse42", False),
    "MKL_VML_DEBUG_CPU_TYPE=3": ("mkl_avx2", True),
    # the column whose estimate comes from IEEE operations
    "MKL_VML_DEBUG_CPU_TYPE=1": ("mkl_portable", True),
}
if "avx512" in rmsprop_ext.build_info()["isa_cpu"]:
    PATHS["MKL_VML_DEBUG_CPU_TYPE=5"] = ("mkl_avx512", True)


def run_child(setting: str, isa: str) -> dict:
    name, value = setting.split("=", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MKL_")}
    env.update({name: value, "RMSPROP_EXT_ISA": isa, "OMP_NUM_THREADS": "2"})
    result = subprocess.run(
        [sys.executable, str(CHILD)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    not {"avx2", "avx512"} & set(rmsprop_ext.build_info()["isa_available"]),
    reason="MKL's square roots are computed by the avx2 and avx512 kernels only",
)
@pytest.mark.parametrize("setting", list(PATHS))
def test_each_mkl_path_is_followed_bit_for_bit(setting: str, isa: str) -> None:
    import torch

    if not torch.backends.mkl.is_available():
        pytest.skip("this torch has no MKL: torch.sqrt is the IEEE one")
    report = run_child(setting, isa)
    assert report["isa"] == isa
    # Where MKL_ENABLE_INSTRUCTIONS is concerned, which path MKL takes is its own decision (on
    # other vendors' CPUs it ignores the variable), but whichever it is, it must be one the
    # kernels compute in their pass, for both dtypes.
    expected, on_every_vendor = PATHS[setting]
    for dtype in ("float32", "float64"):
        form = report["forms"][dtype]
        assert form in ("mkl_avx512", "mkl_avx2", "mkl_sse42", "mkl_portable"), report
        if on_every_vendor or cpu_vendor() == "GenuineIntel":
            assert form == expected, report
        assert report["differing_roots"][dtype] == 0, report
        assert report["torch_rounding"][dtype] == [0, 0, 0], report
        # The comparison can fail: IEEE square roots give other bits on these inputs.
        assert sum(report["ieee_rounding"][dtype]) > 0, report
