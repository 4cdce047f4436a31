"""Training curves: metrics.csv holds each epoch's losses, accuracies and (when the run
calibrates on data with boxes) the validation MaxBoxAccV2; curves.png plots them; both
survive a kill and --resume as an uninterrupted run writes them."""

from __future__ import annotations

import csv
import math

import cv2
import numpy as np
import pytest
import torch

from acol_eval.report.curveplot import plot_training, training_series
from acol_eval.training.trainconfig import TrainConfig
from acol_eval.training.trainer import train
from conftest import train_until_killed

TINY = dict(arch="resnet18", weights="none", input_size=32, resize_size=40,
            feature_stride=16, batch_size=4, lr=0.01, epochs=2, seed=2, workers=0,
            cache="off", recipe="p")


def rows_of(run):
    with open(run / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in ("images_per_s", "seconds")}
                for row in csv.DictReader(handle)]


def test_training_series_takes_the_columns_a_run_has():
    rows = [{"epoch": "1", "train_loss": "2.5", "val_loss": ""},
            {"epoch": "2", "train_loss": "1.5", "val_loss": "nan"}]
    found = training_series(rows, ("train_loss", "val_loss", "val_max_box_acc_v2"))
    assert list(found) == ["train_loss"] and found["train_loss"].tolist() == [2.5, 1.5]


def test_the_plot_draws_each_column_in_its_own_colour(tmp_path):
    rows = [{"epoch": e, "train_loss": 3 - e, "val_loss": 2.5 - e, "train_acc_1p": 40 * e,
             "val_acc_1p": 30 * e, "val_max_box_acc_v2": 20 * e} for e in (1, 2)]
    plot_training(tmp_path / "c.png", rows)
    image = cv2.imread(str(tmp_path / "c.png"))
    assert image.shape == (560, 830, 3)
    from acol_eval.report.curveplot import bgr, line_style

    colours = {tuple(int(v) for v in px) for px in image.reshape(-1, 3)}
    for k in range(5):  # every series' colour is drawn somewhere
        assert bgr(line_style(k)[0]) in colours, k
    plot_training(tmp_path / "one.png", rows[:1])  # one epoch: dots, no division by zero
    assert cv2.imread(str(tmp_path / "one.png")) is not None


@pytest.mark.slow
def test_each_epoch_records_its_validation_localisation_and_the_plot(tiny_boxes, tmp_path,
                                                                     monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        common = dict(data=f"cub:{tiny_boxes}", val_fraction=0.4, **TINY)
        straight = tmp_path / "straight"
        lines = []
        train(TrainConfig(out=str(straight), **common), log=lines.append)
        rows = rows_of(straight)
        values = [float(row["val_max_box_acc_v2"]) for row in rows]
        assert len(values) == 2 and all(0.0 <= v <= 100.0 for v in values)
        # the last epoch's figure is score's MaxBoxAccV2 of last.pt on the held-out images
        with open(straight / "validation" / "report" / "summary.csv", newline="") as handle:
            summary = {r["metric"]: r["value"] for r in csv.DictReader(handle)}
        assert math.isclose(values[-1], float(summary["max_box_acc_v2"]), abs_tol=1e-6)
        assert any(f"val MaxBoxAccV2 {values[0]:.1f}%" in line for line in lines)
        assert (straight / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        run = tmp_path / "run"
        train_until_killed(TrainConfig(out=str(run), **common), monkeypatch)
        first = cv2.imread(str(run / "curves.png"))
        train(TrainConfig(out=str(run), resume=True, **common), log=lambda m: None)
        assert rows_of(run) == rows
        again = cv2.imread(str(run / "curves.png"))
        assert not np.array_equal(first, again)  # the second epoch was drawn in
        assert np.array_equal(again, cv2.imread(str(straight / "curves.png")))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_run_without_boxes_or_calibration_has_no_localisation_column(tiny_boxes, tmp_path):
    torch.set_num_threads(1)
    train(TrainConfig(out=str(tmp_path / "r"), data=f"cub:{tiny_boxes}", calibrate=False,
                      **{**TINY, "epochs": 1}), log=lambda m: None)
    assert "val_max_box_acc_v2" not in rows_of(tmp_path / "r")[0]
    assert not (tmp_path / "r" / "validation").exists()
    assert (tmp_path / "r" / "curves.png").is_file()


class KilledInValidation(Exception):
    """Stands for a kill while an epoch's validation localisation runs."""


@pytest.mark.slow
def test_a_kill_during_an_epochs_validation_localisation_resumes_exactly(tiny_boxes, tmp_path,
                                                                        monkeypatch):
    """The validation localisation of an epoch takes a while; a kill there must leave the
    run at the previous epoch (last.pt is written last), so the resume repeats the epoch
    and ends with the straight run's metrics.csv and best.pt."""
    import acol_eval.training.trainer as trainer_module
    from acol_eval.models.checkpoint import load_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        common = dict(data=f"cub:{tiny_boxes}", val_fraction=0.4, **TINY)
        straight = tmp_path / "straight"
        train(TrainConfig(out=str(straight), **common), log=lambda m: None)
        real = trainer_module.validation_localisation
        calls = []

        def killed_in_the_second(trainer, checkpoint):
            calls.append(checkpoint)
            if len(calls) == 2:
                raise KilledInValidation
            return real(trainer, checkpoint)

        run = tmp_path / "run"
        monkeypatch.setattr(trainer_module, "validation_localisation", killed_in_the_second)
        with pytest.raises(KilledInValidation):
            train(TrainConfig(out=str(run), **common), log=lambda m: None)
        monkeypatch.undo()
        assert load_checkpoint(run / "last.pt")["epoch"] == 1  # epoch 2 never committed
        result = train(TrainConfig(out=str(run), resume=True, **common), log=lambda m: None)
        assert result.epochs == 1 and rows_of(run) == rows_of(straight)
        a, b = (load_checkpoint(p / "best.pt")["state_dict"] for p in (run, straight))
        assert all(torch.equal(v, b[k]) for k, v in a.items())
        assert not (run / ".epoch.pt").exists()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_kill_between_last_pt_and_metrics_csv_restores_the_row(tiny_boxes, tmp_path,
                                                                monkeypatch):
    """last.pt commits an epoch and metrics.csv follows it: a kill in between leaves the
    row in last.pt, and the resume (of an unfinished or a finished run) writes it back."""
    import acol_eval.training.trainer as trainer_module

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for epochs in (3, 2):  # killed in epoch 2: one epoch left, or none
            common = dict(data=f"cub:{tiny_boxes}", val_fraction=0.4,
                          **{**TINY, "epochs": epochs})
            straight = tmp_path / f"straight{epochs}"
            train(TrainConfig(out=str(straight), **common), log=lambda m: None)
            real, calls = trainer_module.write_metrics, []

            def killed_in_the_second(path, rows, real=real, calls=calls):
                calls.append(path)
                if len(calls) == 2:
                    raise KilledInValidation
                return real(path, rows)

            run = tmp_path / f"run{epochs}"
            monkeypatch.setattr(trainer_module, "write_metrics", killed_in_the_second)
            with pytest.raises(KilledInValidation):
                train(TrainConfig(out=str(run), **common), log=lambda m: None)
            monkeypatch.undo()
            assert len(rows_of(run)) == 1  # epoch 2 is in last.pt, not in metrics.csv
            train(TrainConfig(out=str(run), resume=True, **common), log=lambda m: None)
            assert rows_of(run) == rows_of(straight)
    finally:
        torch.set_num_threads(threads)
