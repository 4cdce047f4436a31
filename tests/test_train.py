"""`acol-eval train` end to end: real (tiny) training through the command line."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from acol_eval.checkpoint import load_checkpoint
from acol_eval.safeio import LOCK_NAME
from conftest import ROOT, assert_one_line_error, run_cli, write_texture_folder

FAST = ["--arch", "resnet18", "--weights", "none", "--input-size", "64", "--resize-size", "72",
        "--batch-size", "16", "--lr", "0.01", "--workers", "0"]


def read_metrics(run):
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_pn_reaches_90_percent_on_textures(texture_folder, tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", "--data", str(texture_folder), "--out", str(run),
                     "--recipe", "pn", "--epochs", "5", *FAST)
    assert result.returncode == 0, result.stderr
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    for column in ("train_loss_1p", "train_acc_1p", "train_loss_2n", "train_acc_2n",
                   "val_loss_1p", "val_acc_1p", "val_loss_2n", "val_acc_2n", "lr",
                   "images_per_s"):
        assert column in rows[0]
    assert float(rows[-1]["val_acc_1p"]) >= 90.0
    best = load_checkpoint(run / "best.pt")
    assert best["classes"] == ["checker", "stripes"] and best["recipe"] == "pn"
    assert best["metrics"]["val_acc_1p"] == max(float(r["val_acc_1p"]) for r in rows)
    assert "epoch 5/5" in result.stderr


def test_resume_after_sigkill_is_bitwise_equal(texture_folder, tmp_path):
    args = ["train", "--data", str(texture_folder), "--recipe", "pp", "--epochs", "3", *FAST]
    straight = tmp_path / "straight"
    assert run_cli(*args, "--out", str(straight)).returncode == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "ACOL_EVAL_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args, "--out", str(killed)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "metrics.csv").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(killed / "last.pt")["epoch"] < 3  # really cut short

    resumed = run_cli(*args, "--out", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    rows_a, rows_b = read_metrics(straight), read_metrics(killed)
    assert [r["train_loss"] for r in rows_a] == [r["train_loss"] for r in rows_b]


def test_two_gloo_processes_train_one_epoch(texture_folder, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "ACOL_EVAL_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "cli.py"), "train", "--data", str(texture_folder), "--out", str(run),
         "--recipe", "pn", "--epochs", "1", "--device", "cpu", *FAST],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    visible = sorted(p.name for p in run.iterdir() if not p.name.startswith("."))
    assert visible == ["best.pt", "last.pt", "metrics.csv"]  # no disk cache under torchrun
    assert (run / LOCK_NAME).is_file()  # rank 0 held the lock (a second rank would be refused)
    payload = load_checkpoint(run / "last.pt")
    assert payload["world_size"] == 2 and payload["epoch"] == 1
    rows = read_metrics(run)
    assert len(rows) == 1
    assert result.stderr.count("epoch 1/1:") == 1  # only rank 0 reports
    # both ranks' samples are counted: 80 training images in all
    assert float(rows[0]["images_per_s"]) * float(rows[0]["seconds"]) == pytest.approx(80)


def test_corrupt_training_image_is_skipped_and_counted(tmp_path):
    data = write_texture_folder(tmp_path / "data", train_per_class=12, val_per_class=4)
    (data / "train" / "checker" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    run = tmp_path / "run"
    result = run_cli("train", "--data", str(data), "--out", str(run), "--epochs", "1", *FAST)
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable image(s)" in result.stderr
    assert float(read_metrics(run)[0]["skipped_images"]) == 1


# ---------------------------------------------------------------- bad input, through the CLI


def test_empty_data_folder(tmp_path):
    (tmp_path / "data").mkdir()
    result = run_cli("train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "r"),
                     *FAST)
    assert_one_line_error(result, 2, "no images found")


def test_class_folder_without_images(tmp_path):
    data = write_texture_folder(tmp_path / "data", train_per_class=2, val_per_class=1)
    (data / "train" / "dots").mkdir()
    result = run_cli("train", "--data", str(data), "--out", str(tmp_path / "r"), *FAST)
    assert_one_line_error(result, 2, "dots has no images")


def test_unknown_architecture(texture_folder, tmp_path):
    result = run_cli("train", "--data", str(texture_folder), "--out", str(tmp_path / "r"),
                     *FAST, "--arch", "resnet9000")
    assert_one_line_error(result, 2, "unknown architecture 'resnet9000'", "mobilenet_v2")


def test_stride_the_backbone_cannot_give(texture_folder, tmp_path):
    result = run_cli("train", "--data", str(texture_folder), "--out", str(tmp_path / "r"),
                     *FAST, "--feature-stride", "4")
    assert_one_line_error(result, 2, "cannot give feature stride 4", "8, 16, 32")


def test_imagenet_weights_missing_offline(texture_folder, tmp_path):
    result = run_cli("train", "--data", str(texture_folder), "--out", str(tmp_path / "r"),
                     *FAST, "--weights", "imagenet", env={"TORCH_HOME": str(tmp_path / "th")})
    assert_one_line_error(result, 2, "resnet18-f37072fd.pth", str(tmp_path / "th"))
    assert not (tmp_path / "r" / "last.pt").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    data = write_texture_folder(tmp_path_factory.mktemp("d"), train_per_class=4, val_per_class=2)
    run = tmp_path_factory.mktemp("run")
    result = run_cli("train", "--data", str(data), "--out", str(run), "--epochs", "1", *FAST)
    assert result.returncode == 0, result.stderr
    return data, run


@pytest.mark.parametrize("damage", ["truncate", "text"])
def test_resume_from_a_damaged_checkpoint(finished_run, tmp_path, damage):
    data, source = finished_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    last = run / "last.pt"
    content = last.read_bytes()
    last.write_bytes(content[: len(content) // 3] if damage == "truncate" else b"epoch=1\n")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = run_cli("train", "--data", str(data), "--out", str(run), "--epochs", "2", *FAST,
                     "--resume")
    assert_one_line_error(result, 2, "not a readable acol-eval checkpoint")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing lost


def test_weights_file_that_is_not_a_checkpoint(finished_run, tmp_path):
    data, _ = finished_run
    junk = tmp_path / "weights.pth"
    junk.write_text("definitely not weights")
    result = run_cli("train", "--data", str(data), "--out", str(tmp_path / "r"), *FAST,
                     "--weights", str(junk))
    assert_one_line_error(result, 2, "cannot read weights")


def test_ddp_survives_a_rank_with_only_unreadable_images_in_a_batch(tmp_path):
    data = write_texture_folder(tmp_path / "data", train_per_class=3, val_per_class=1)
    # with seed 0 the sampler gives rank 0 one broken image and rank 1 two, so the
    # ranks run 4 and 3 steps: uneven (checked by hand against DistributedSampler)
    for i in range(3):
        (data / "train" / "checker" / f"broken{i}.png").write_bytes(b"not a png")
    run = tmp_path / "ddp"
    env = {**os.environ, "ACOL_EVAL_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [a if a != "16" else "1" for a in FAST]  # batch size 1: a broken image is a batch
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "cli.py"), "train", "--data", str(data), "--out", str(run),
         "--epochs", "1", "--device", "cpu", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert float(read_metrics(run)[0]["skipped_images"]) == 3
