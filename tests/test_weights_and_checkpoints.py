import contextlib
import warnings
from pathlib import Path

import pytest
import torch

from acol_eval.data.datasets import decode_image, eval_transform
from acol_eval.models.backbones import imagenet_categories
from acol_eval.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from acol_eval.models.model import build_model, plain_cam_model
from acol_eval.models.weights import find_imagenet_file, read_state_dict, resolve_weights
from acol_eval.util.errors import AcolError
from conftest import shared_data


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """No torch hub cache and downloads forbidden, as on a machine without network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("ACOL_EVAL_OFFLINE", "1")


def test_offline_mobilenet_file_is_found_without_the_hub(empty_hub):
    path = find_imagenet_file("mobilenet_v2")
    assert path is not None and path.name == "mobilenet_v2-b0353104.pth"


def test_imagenet_mobilenet_classifies_real_photos(empty_hub):
    data = shared_data()
    model = plain_cam_model("mobilenet_v2", resolve_weights("imagenet", "mobilenet_v2")).eval()
    categories = imagenet_categories("mobilenet_v2")
    photos = {
        "albatross": sorted((data / "cub10/images/001.Black_footed_Albatross").glob("*.jpg"))[:3],
        "banana": [data / f"fruits/test/banana_{n}.jpg" for n in (79, 80, 81)],
    }
    transform = eval_transform(224)
    for expected, paths in photos.items():
        batch = torch.stack([transform(decode_image(p)) for p in paths])
        with torch.no_grad():
            top1 = model.logits(model.backbone(batch)).argmax(1)
        assert [categories[i] for i in top1] == [expected] * len(paths)


def test_imagenet_without_a_local_file_and_offline_is_a_clear_error(empty_hub):
    with pytest.raises(AcolError) as info:
        resolve_weights("imagenet", "resnet18")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and "torch-home" in message


def test_weights_path_must_be_a_state_dict(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(AcolError, match="cannot read weights"):
        read_state_dict(junk)
    torch.save({"a": 1}, tmp_path / "dict.pth")
    with pytest.raises(AcolError, match="not a state dict"):
        read_state_dict(tmp_path / "dict.pth")


def small_payload() -> dict:
    torch.manual_seed(0)
    model = build_model("resnet18", 3, "pn", [0.7], "linear", 16)
    return {
        "arch": "resnet18", "recipe": "pn", "deltas": [0.7], "head": "linear",
        "feature_stride": 16, "classes": ["a", "b", "c"], "input_size": 64,
        "mean": [0.5] * 3, "std": [0.2] * 3, "state_dict": model.state_dict(), "epoch": 1,
    }


def test_checkpoint_round_trip(tmp_path):
    payload = small_payload()
    save_checkpoint(tmp_path / "last.pt", payload)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left
    loaded = load_checkpoint(tmp_path / "last.pt")
    model = model_from_checkpoint(loaded)
    for key, value in payload["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value)
    assert model.deltas == (0.7,) and model.recipe == "pn"


def test_truncated_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, small_payload())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AcolError, match="truncated") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


class Arbitrary:
    pass


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"hello, I am text", "not a readable acol-eval checkpoint"),
        ({"state_dict": {}}, "no 'acol-eval-checkpoint' format tag"),
        (Arbitrary(), "not a readable acol-eval checkpoint"),  # refused by weights_only
    ],
)
def test_files_that_are_not_checkpoints(tmp_path, content, phrase):
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(AcolError) as info:
        load_checkpoint(path)
    assert phrase in str(info.value) and "\n" not in str(info.value)


def test_class_count_mismatch_is_refused(tmp_path):
    payload = small_payload()
    payload["classes"] = ["a", "b"]
    save_checkpoint(tmp_path / "c.pt", payload)
    with pytest.raises(AcolError, match="3 outputs but the checkpoint names 2 classes"):
        load_checkpoint(tmp_path / "c.pt")


def test_newer_checkpoint_version_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.pt", small_payload())
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(AcolError, match="upgrade"):
        load_checkpoint(Path(tmp_path / "c.pt"))


# ---------------------------------------------------------------- the Checkpoint dataclass

from acol_eval.models.checkpoint import FORMAT, Checkpoint  # noqa: E402

OLD_KEYS = {"format", "version", "arch", "recipe", "deltas", "head", "feature_stride",
            "classes", "input_size", "mean", "std", "state_dict", "epoch", "metrics",
            "best_accuracy", "args", "versions", "optimizer", "scheduler", "scaler", "rng",
            "world_size"}


def test_a_checkpoint_written_by_hand_before_the_dataclass_still_loads(tmp_path):
    """The dict the trainer wrote by hand (format 1), saved with plain torch.save."""
    payload = {"format": FORMAT, "version": 1, **small_payload(), "metrics": {"val_acc_1p": 50.0},
               "best_accuracy": 50.0, "args": {"lr": 0.01, "delta": [0.7]},
               "versions": {"torch": "2.0"}, "optimizer": {"state": {}, "param_groups": []},
               "scheduler": {"last_epoch": 1}, "scaler": {},
               "rng": {"torch": torch.get_rng_state(), "seed": 0}, "world_size": 1}
    torch.save(payload, tmp_path / "old.pt")
    loaded = Checkpoint.load(tmp_path / "old.pt")
    assert loaded.classes == ("a", "b", "c") and loaded.input_size == 64
    assert loaded.best_accuracy == 50.0 and loaded.scheduler == {"last_epoch": 1}
    assert set(loaded.payload()) == OLD_KEYS  # the same fields are written back
    model = loaded.model()
    assert torch.equal(model.heads[1].classifier.weight,
                       payload["state_dict"]["heads.1.classifier.weight"])
    as_dict = load_checkpoint(tmp_path / "old.pt")
    assert as_dict["deltas"] == [0.7] and as_dict["classes"] == ["a", "b", "c"]


def test_saved_checkpoint_holds_only_plain_data(tmp_path):
    from acol_eval.models.model import Head

    values = {**small_payload(), "head": Head.LINEAR, "deltas": (0.7,), "classes": ("a", "b", "c"),
              "mean": (0.5,) * 3, "std": (0.2,) * 3, "args": {"head": Head.LINEAR, "p": Path("x")}}
    Checkpoint(**values).save(tmp_path / "c.pt")
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # would fail on an Enum or a Path
    assert set(raw) == OLD_KEYS
    assert raw["head"] == "linear" and type(raw["head"]) is str
    assert raw["args"] == {"head": "linear", "p": "x"} and raw["deltas"] == [0.7]


BAD_FIELDS = [
    ("input_size", 0, "input_size 0"), ("input_size", -5, "input_size -5"),
    ("input_size", 10**9, "input_size 1000000000"), ("input_size", True, "input_size True"),
    ("input_size", "224", "input_size '224'"), ("input_size", 2.5, "input_size 2.5"),
    ("std", [0.0, 0.2, 0.2], "std"), ("std", [float("nan")] * 3, "std"),
    ("mean", [0.5, 0.5], "mean"), ("mean", "abc", "mean"),
    ("classes", [], "classes"), ("classes", ["a", "a", "b"], "one class twice"),
    ("classes", [1, 2, 3], "classes"), ("version", "abc", "version 'abc'"),
    ("epoch", -1, "epoch -1"), ("head", "mlp", "head 'mlp'"), ("recipe", "xp", "recipe 'xp'"),
    ("deltas", [2.0], "delta 2.0"), ("deltas", "0.7", "deltas"),
    ("feature_stride", 4, "feature stride 4"), ("arch", "nope", "unknown architecture"),
    ("arch", 7, "arch 7"), ("state_dict", [1, 2], "state_dict"),
]


@pytest.mark.parametrize(("key", "value", "phrase"), BAD_FIELDS,
                         ids=[f"{k}={v!r}" for k, v, _ in BAD_FIELDS])
def test_checkpoint_with_impossible_values_is_refused_in_one_line(tmp_path, key, value, phrase):
    payload = {"format": FORMAT, "version": 1, **small_payload(), key: value}
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(AcolError) as info:
        load_checkpoint(tmp_path / "c.pt")
    assert phrase in str(info.value) and "\n" not in str(info.value)


class RunsOnLoad:
    """Unpickling this would create a folder: proof that a payload ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def pickles(marker):
    import pickle

    import numpy as np

    yield "raw pickle", pickle.dumps(RunsOnLoad(marker), protocol=4)
    for name, value in (("torch.save of a payload", {"state_dict": RunsOnLoad(marker)}),
                        ("a class instance", Arbitrary()),
                        ("a numpy array", {"x": np.zeros(3)})):
        buffer = __import__("io").BytesIO()
        torch.save(value, buffer)
        yield name, buffer.getvalue()


ADVICE = ("weights_only", "weights only", "safe_globals", "trust", "Re-running")


@pytest.mark.parametrize("index", range(4))
def test_pickles_never_run_and_the_message_never_advises_unsafe_loading(tmp_path, index):
    marker = tmp_path / "ran"
    name, data = list(pickles(marker))[index]
    path = tmp_path / "x.pt"
    path.write_bytes(data)
    for load in (load_checkpoint, read_state_dict):
        with no_warning(), pytest.raises(AcolError) as info:
            load(path)
        message = str(info.value)
        assert "\n" not in message, name
        assert "objects other than tensors" in message, (name, message)
        assert not any(advice in message for advice in ADVICE), (name, message)
    assert not marker.exists()


@contextlib.contextmanager
def no_warning():
    """Any warning fails (torch's "Detected pickle protocol 4" would be a second line)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
