from pathlib import Path

import pytest
import torch

from acol_eval.backbones import imagenet_categories
from acol_eval.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from acol_eval.data import decode_image, eval_transform
from acol_eval.errors import AcolError
from acol_eval.model import build_model, plain_cam_model
from acol_eval.weights import find_imagenet_file, read_state_dict, resolve_weights
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
