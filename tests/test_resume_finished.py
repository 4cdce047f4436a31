"""`train --resume` of a run that has all its epochs: it says so, trains nothing, and
keeps best.pt's calibration unless --recalibrate asks for it again."""

from __future__ import annotations

import pytest

import acol_eval as ae
from acol_eval.util.errors import AcolError


def tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_resume_of_a_finished_run_keeps_its_calibration_unless_asked(tmp_path):
    ae.synth(tmp_path / "data", classes=2, train_per_class=3, val_per_class=2, size=64)
    options = dict(data=f"cub:{tmp_path / 'data'}", out=str(tmp_path / "run"),
                   arch="resnet18", weights="none", epochs=1, batch_size=4, input_size=64,
                   workers=0, device="cpu", cache="off")
    first = ae.train(**options)
    assert first.epochs == 1
    before = tree(tmp_path / "run")
    assert any(name.startswith("calibration/report/") for name in before)
    lines = []
    from acol_eval.training.trainconfig import TrainConfig
    from acol_eval.training.trainer import train

    again = train(TrainConfig(**options, resume=True), log=lines.append)
    assert again.epochs == 0 and again.calibration is None
    assert f"{tmp_path / 'run'} is finished: all 1 epochs are trained, nothing to resume; " \
           f"best.pt keeps its calibration (--recalibrate redoes it)" in lines
    assert not any("calibrat" in line for line in lines if "is finished" not in line)
    after = tree(tmp_path / "run")
    assert after == before  # best.pt, metrics.csv and calibration/ untouched
    lines.clear()
    train(TrainConfig(**options, resume=True, recalibrate=True), log=lines.append)
    assert any(line.endswith("calibrating best.pt again (--recalibrate)") for line in lines)
    assert any(line.startswith("calibrating the CAM threshold on 4 validation images")
               for line in lines)


def test_recalibrate_needs_resume_and_calibration():
    from acol_eval.training.trainconfig import TrainConfig

    for extra in ({}, {"resume": True, "calibrate": False}):
        with pytest.raises(AcolError, match="--recalibrate redoes the calibration of a "
                                            "finished run: give it with --resume"):
            TrainConfig(data="folder:x", out="o", recalibrate=True, **extra)
