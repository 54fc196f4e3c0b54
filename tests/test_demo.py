"""`python -m rmsprop_ext demo` draws the chapter's pictures and runs the training comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
from rmsprop_ext.__main__ import main


def test_demo_writes_every_picture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("torch")
    assert (
        main(["demo", "--out", str(tmp_path), "--steps", "5", "--width", "32", "--no-progress"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "epoch 20, x1: -0.010599, x2: 0.000000 (native kernel)" in printed
    for name in ("weights", "trajectory_2d", "trajectory_rotated", "training"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        "rmsprop_ext.RMSprop: final loss" in printed
        and "torch.optim.RMSprop: final loss" in printed
    )
