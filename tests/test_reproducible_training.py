"""One command and --seed train one model, whatever --workers, the decoded-image cache or
a kill and --resume in between: metrics.csv and the checkpoints' weights are equal bit
for bit. (Loader workers have RNGs of their own, seeded by worker; an augmentation that
drew from them trained another model with every other --workers.)"""

import csv

import pytest
import torch

from acol_eval.data.datasets import (
    SAMPLE_DRAWS,
    KeyedSampler,
    TrainAugment,
    batch_generator,
    draw_seed,
    sample_generator,
)
from acol_eval.models.checkpoint import load_checkpoint
from acol_eval.training.trainconfig import TrainConfig
from acol_eval.training.trainer import Trainer, train
from conftest import write_texture_folder

# Timing columns differ from run to run; every other column must not.
TIMING = {"images_per_s", "seconds"}
TINY = dict(arch="resnet18", weights="none", recipe="pn", input_size=32, resize_size=40,
            feature_stride=16, batch_size=4, lr=0.01, epochs=2, calibrate=False, seed=3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a busy 2-core machine two threads per process spin against
    the loader workers and a 2-second run takes 20 (the thread count is the same for every
    run compared here, so the comparison is unchanged)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_texture_folder(tmp_path_factory.mktemp("d"), train_per_class=5,
                                val_per_class=1, size=48)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """The same run with 0, 1 and 2 loader workers, each with another cache mode."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for workers, cache in ((0, "off"), (1, "memory"), (2, "disk")):
        out[workers] = root / f"w{workers}"
        train(TrainConfig(data=str(data), out=str(out[workers]), workers=workers,
                          cache=cache, **TINY), log=lambda message: None)
    return out


def metrics(run):
    with open(run / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING}
                for row in csv.DictReader(handle)]


def assert_same_run(a, b):
    rows_a, rows_b = metrics(a), metrics(b)
    assert [row["epoch"] for row in rows_a] == ["1", "2"]
    assert rows_a == rows_b
    for name in ("last.pt", "best.pt"):
        state_a = load_checkpoint(a / name)["state_dict"]
        state_b = load_checkpoint(b / name)["state_dict"]
        assert state_a.keys() == state_b.keys() and len(state_a) > 100
        for key, value in state_a.items():
            assert torch.equal(value, state_b[key]), (name, key)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_any_worker_count_and_cache_trains_the_same_model(runs, workers):
    assert_same_run(runs[0], runs[workers])
    # and the run really learnt something that a changed draw would move
    assert float(metrics(runs[0])[1]["train_loss"]) != float(metrics(runs[0])[0]["train_loss"])


class Killed(Exception):
    """Stands for a SIGKILL right after an epoch's files were written."""


@pytest.mark.slow
def test_a_killed_run_resumed_with_other_workers_is_the_uninterrupted_run(
        runs, data, tmp_path, monkeypatch):
    record = Trainer._record

    def record_then_die(self, epoch, metrics, has_val):
        record(self, epoch, metrics, has_val)
        raise Killed

    run = tmp_path / "killed"
    monkeypatch.setattr(Trainer, "_record", record_then_die)
    with pytest.raises(Killed):
        train(TrainConfig(data=str(data), out=str(run), workers=2, cache="memory", **TINY),
              log=lambda message: None)
    monkeypatch.undo()
    assert load_checkpoint(run / "last.pt")["epoch"] == 1 and len(metrics(run)) == 1
    said = []
    result = train(TrainConfig(data=str(data), out=str(run), workers=0, cache="off",
                               resume=True, **TINY), log=said.append)
    assert result.epochs == 1 and any("resuming" in line for line in said)
    assert not any(line.startswith("note: last.pt") for line in said), said
    assert_same_run(runs[1], run)


def test_the_checkpoint_records_what_decides_the_numbers(runs):
    found = load_checkpoint(runs[1] / "last.pt")
    assert found["args"]["seed"] == 3 and found["versions"]["torch"] == torch.__version__
    assert found["determinism"] == {
        "draws": "seed-epoch-index/1", "deterministic_algorithms": False,
        "deterministic_warn_only": False, "cudnn_deterministic": False,
        "cudnn_benchmark": False, "intra_op_threads": 1, "device": "cpu"}


# ---------------------------------------------------------------- the draws themselves


def test_draw_seeds_depend_on_seed_epoch_and_index_only():
    seeds = {draw_seed(s, e, SAMPLE_DRAWS, i) for s in range(3) for e in range(3)
             for i in range(50)}
    assert len(seeds) == 450 and all(0 <= s < 2**63 for s in seeds)
    assert draw_seed(1, 2, SAMPLE_DRAWS, 3) == draw_seed(1, 2, SAMPLE_DRAWS, 3)
    a = sample_generator(1, 2, 3)
    b = sample_generator(1, 2, 3)
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    # a method's own tag is another stream than the crop's and flip's
    assert not torch.equal(torch.rand(5, generator=sample_generator(1, 2, 3, tag=7)),
                           torch.rand(5, generator=sample_generator(1, 2, 3)))
    # the batch stream is another stream: batch 3's draws are not sample 3's
    assert not torch.equal(torch.rand(5, generator=batch_generator(1, 2, 3)),
                           torch.rand(5, generator=sample_generator(1, 2, 3)))


def test_keyed_sampler_hands_each_index_its_own_seed_in_any_order():
    forward = dict(KeyedSampler([0, 1, 2, 3], seed=5, epoch=1))
    backward = dict(KeyedSampler([3, 2, 1, 0], seed=5, epoch=1))
    assert forward == backward == {i: draw_seed(5, 1, SAMPLE_DRAWS, i) for i in range(4)}
    assert dict(KeyedSampler([0, 1], seed=5, epoch=2)) != {i: forward[i] for i in (0, 1)}


def test_augment_crops_and_flips_as_its_generator_says():
    from PIL import Image

    ramp = torch.arange(6 * 6 * 3, dtype=torch.uint8).reshape(6, 6, 3)
    image = Image.fromarray(ramp.numpy())
    augment = TrainAugment(4, 6, mean=(0, 0, 0), std=(1, 1, 1))
    seen = set()
    for seed in range(40):
        top, left, flip = augment.draws(torch.Generator().manual_seed(seed))
        got = augment(image, torch.Generator().manual_seed(seed))
        want = ramp[top:top + 4, left:left + 4].permute(2, 0, 1).float() / 255
        assert torch.equal(got, want.flip(2) if flip else want), seed
        seen.add((top, left, flip))
    # every offset in 0..2 and both flips occur: the draws cover the recipe's range
    assert {t for t, _, _ in seen} == {0, 1, 2} == {x for _, x, _ in seen}
    assert {f for _, _, f in seen} == {False, True}


def test_under_torchrun_ranks_load_the_same_images_with_any_worker_count(data, tmp_path):
    """Each rank's loader (DistributedSampler's share, keyed draws) gives the same tensors
    with 0 or 2 workers; an image's crop and flip are the same at world size 1 and 2."""
    from dataclasses import replace
    from types import SimpleNamespace

    from acol_eval.util.runtime import Distributed

    config = TrainConfig(data=str(data), out=str(tmp_path / "r"), workers=0, **TINY)
    trainer = Trainer(config, Distributed("cpu"), log=lambda message: None)
    dataset = trainer.data.train_set
    per_image = {}
    for world, rank in ((1, 0), (2, 0), (2, 1)):
        loaded = []
        for workers in (0, 2):
            trainer.dist = SimpleNamespace(active=world > 1, world=world, rank=rank)
            trainer.config = replace(config, workers=workers)
            loader = trainer._loader(dataset, True, epoch=1)
            order = [index for index, _ in loader.sampler]
            images = torch.cat([batch[0] for batch in loader])
            loaded.append((order, images))
        (order, images), (order_2, images_2) = loaded
        assert order == order_2 and torch.equal(images, images_2)
        if world == 2:
            assert len(order) == len(dataset) // 2
        for index, image in zip(order, images):
            per_image.setdefault(index, []).append(image)
    assert sorted(per_image) == list(range(len(dataset)))
    for index, seen in per_image.items():  # once at world 1, once on one of the ranks
        assert len(seen) == 2 and torch.equal(seen[0], seen[1]), index


def test_a_resume_in_another_kind_of_process_says_it_may_round_otherwise():
    from acol_eval.training.trainlog import determinism, determinism_notes

    now = determinism(torch.device("cpu"))
    assert determinism_notes(now, now) == []
    assert determinism_notes({}, now) == [  # a run from before draws were keyed
        "note: last.pt was trained under random-draw scheme of a version before "
        "seed-epoch-index/1: the resumed epochs crop and flip otherwise than that run "
        "would have"]
    other = {**now, "intra_op_threads": now["intra_op_threads"] + 3}
    (note,) = determinism_notes(other, now)
    assert note.startswith(f"note: last.pt was trained with thread count "
                           f"{now['intra_op_threads'] + 3}, this process has "
                           f"{now['intra_op_threads']}: ")
