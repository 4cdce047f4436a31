"""What a new user meets first: a wsol: root one level too high, an annotation folder
without its images, a run in which every image failed, a post-hoc method that is the
model's own CAM, and messages that count in words ('1 image')."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from acol_eval.data.imagelist import list_images
from acol_eval.data.readers import read_source
from acol_eval.models.methods import MapMethod, method_maps
from acol_eval.models.model import build_model, normalize_maps
from acol_eval.training.trainconfig import TrainConfig
from acol_eval.util.errors import AcolError
from cli import main
from conftest import (
    make_checkpoint,
    read_rows,
    run_localize,
    shared_data,
    write_images,
    write_wsol_metadata,
)

# --------------------------------------------------------------------------- wsol: root


def wsol_root(tmp_path):
    """wsolevaluation's metadata/CUB layout: train/, val/, test/ each a metadata folder."""
    root = tmp_path / "metadata" / "CUB"
    for split in ("train", "val", "test"):
        write_wsol_metadata(root / split, [(f"{split}/a.jpg", "0", 50, 50)],
                            [f"{split}/a.jpg,1,1,20,20"])
    return root


def test_a_wsol_root_of_split_folders_names_them_and_the_one_meant(tmp_path):
    root = wsol_root(tmp_path)
    with pytest.raises(AcolError) as caught:
        read_source(f"wsol:{root}")
    message = str(caught.value)
    assert "split folders (test, train, val)" in message
    assert f"did you mean wsol:{root / 'test'}?" in message
    assert "image_ids.txt" not in message.replace("missing", "")  # not the missing file
    # the folder meant reads; without a test/ the hint names the next split
    assert len(read_source(f"wsol:{root / 'test'}").images) == 1
    (root / "test" / "image_ids.txt").unlink()
    with pytest.raises(AcolError, match=r"did you mean wsol:\S+/val\?"):
        read_source(f"wsol:{root}")


def test_a_bare_wsol_root_and_localize_of_it_give_the_hint_too(tmp_path):
    root = wsol_root(tmp_path)
    with pytest.raises(AcolError, match="did you mean wsol:"):
        read_source(str(root))  # format detection
    with pytest.raises(AcolError, match="did you mean wsol:"):
        list_images(str(root))  # localize's IMAGES: no images in it, metadata below it
    with pytest.raises(AcolError, match="did you mean wsol:"):
        list_images(f"wsol:{root}")


def test_wsolevaluation_metadata_as_shipped_through_the_cli(tmp_path):
    cub = shared_data() / "wsol-metadata" / "CUB"
    maps = tmp_path / "maps"
    maps.mkdir()
    result = CliRunner().invoke(main, ["score", str(maps), "--annotations", f"wsol:{cub}",
                                       "--out", str(tmp_path / "rep")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [f"acol-eval: error: wsol:{cub} holds split folders (test, train, val), "
                     f"not the metadata itself: did you mean wsol:{cub / 'test'}?"]
    assert not (tmp_path / "rep").exists()


# --------------------------------------------------------------------------- images elsewhere


def voc_folder(tmp_path, names):
    """VOC XML files for `names` in tmp_path/ann (no images there)."""
    folder = tmp_path / "ann"
    folder.mkdir()
    for name in names:
        (folder / f"{name.rsplit('.', 1)[0]}.xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>72</width>"
            f"<height>56</height></size><object><name>checker</name><bndbox><xmin>5</xmin>"
            f"<ymin>5</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object></annotation>")
    return folder


def test_images_not_under_the_annotations_are_refused_before_out_is_made(tmp_path):
    names = ["a.jpg", "b.jpg", "c.jpg"]
    annotations = voc_folder(tmp_path, names)
    photos = write_images(tmp_path / "photos", names)
    make_checkpoint(tmp_path / "m.pt")
    with pytest.raises(AcolError) as caught:
        run_localize(f"voc:{annotations}", tmp_path / "run", checkpoint=str(tmp_path / "m.pt"))
    assert str(caught.value) == (
        f"3 of 3 images of voc:{annotations} are not under {annotations} "
        "(first: a.jpg): pass --image-root FOLDER (where the images are)")
    assert not (tmp_path / "run").exists()
    # the command the message asks for, into the same --out
    result = run_localize(f"voc:{annotations}", tmp_path / "run",
                          checkpoint=str(tmp_path / "m.pt"), image_root=str(photos))
    assert (result.images, result.failed) == (3, 0)


def test_some_images_missing_are_a_warning_and_the_run_goes_on(tmp_path):
    annotations = voc_folder(tmp_path, ["a.jpg", "b.jpg"])
    photos = write_images(tmp_path / "photos", ["b.jpg"])
    make_checkpoint(tmp_path / "m.pt")
    lines: list[str] = []
    result = run_localize(f"voc:{annotations}", tmp_path / "run", log=lines.append,
                          checkpoint=str(tmp_path / "m.pt"), image_root=str(photos))
    assert (result.images, result.failed) == (1, 1)
    assert lines[0] == (f"acol-eval: warning: 1 of 2 images of voc:{annotations} is not "
                        f"under {photos} (first: a.jpg); they go to errors.csv (check "
                        "--image-root if they are elsewhere)")


def test_raccoon_annotations_without_image_root_name_the_option(tmp_path):
    annotations = shared_data() / "raccoon" / "annotations"
    make_checkpoint(tmp_path / "m.pt")
    result = CliRunner().invoke(main, ["localize", f"voc:{annotations}", "--out",
                                       str(tmp_path / "run"), "--checkpoint",
                                       str(tmp_path / "m.pt"), "--workers", "0"])
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"acol-eval: error: 200 of 200 images of voc:{annotations} are "
                           "not under ")
    assert line.endswith("pass --image-root FOLDER (where the images are)")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- all failed


def test_a_run_where_every_image_failed_keeps_nothing_and_the_rerun_is_accepted(tmp_path):
    from acol_eval.maps.localization import NothingLocalised

    photos = write_images(tmp_path / "photos", ["a.png", "b.png"])
    (photos / "list.txt").write_text("A.png\nB.png\n")  # wrong names: every image fails
    make_checkpoint(tmp_path / "m.pt")
    out, overlays = tmp_path / "run", tmp_path / "ov"
    with pytest.raises(NothingLocalised) as caught:
        run_localize(photos / "list.txt", out, checkpoint=str(tmp_path / "m.pt"),
                     overlays=str(overlays))
    assert caught.value.exit_code == 1
    message = str(caught.value)
    assert message.startswith("no image could be read or decoded (2 failures; first: A.png: ")
    assert message.endswith(f"nothing was kept in {out}: correct the input and rerun the "
                            "same command")
    assert not out.exists() and not overlays.exists()
    (photos / "list.txt").write_text("a.png\nb.png\n")
    result = run_localize(photos / "list.txt", out, checkpoint=str(tmp_path / "m.pt"),
                          overlays=str(overlays))
    assert (result.images, result.failed) == (2, 0)
    assert [r["image"] for r in read_rows(out / "predictions.csv")] == ["a.png", "b.png"]
    assert not (out / "errors.csv").exists()


def test_an_out_folder_given_empty_stays_and_the_cli_exits_1_with_one_line(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.png").write_bytes(b"not a picture")
    make_checkpoint(tmp_path / "m.pt")
    out = tmp_path / "run"
    out.mkdir()
    result = CliRunner().invoke(main, ["localize", str(photos), "--out", str(out),
                                       "--checkpoint", str(tmp_path / "m.pt"),
                                       "--workers", "0"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(
        "acol-eval: error: no image could be read or decoded (1 failure; first: broken.png: ")
    assert out.is_dir() and not [p for p in out.iterdir() if p.name != ".acol-eval.lock"]
    assert "localising 1 image with resnet18 (3 classes) on cpu, 1 process;" in result.output


# --------------------------------------------------------------------------- Grad-CAM is CAM


def small_model(head: str, recipe: str = "p") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", 4, recipe, [0.5], head, 32).eval()


def test_the_note_comes_only_where_the_method_is_the_models_cam():
    from acol_eval.models.methods import cam_note

    linear, conv = small_model("linear"), small_model("conv")
    note = cam_note(linear, MapMethod.GRADCAM, None)
    assert note == ("note: gradcam at backbone (the input of a linear head) equals the "
                    "model's own CAM (--method model) up to normalisation (ReLU, then "
                    "min-max); --target-layer backbone.6 (an earlier layer) gives a "
                    "different map")
    for method in (MapMethod.HIRESCAM, MapMethod.XGRADCAM):
        assert cam_note(linear, method, "backbone") is not None
    # layers whose output is the head's input, and the class maps of any head
    for layer in ("backbone.7", "backbone.7.1", "heads.0"):
        assert cam_note(linear, MapMethod.GRADCAM, layer) is not None
    assert "class maps" in cam_note(conv, MapMethod.GRADCAM, "heads.0.classifier")
    # not for a conv head at its input, another layer, or other methods
    assert cam_note(conv, MapMethod.GRADCAM, None) is None
    assert cam_note(linear, MapMethod.GRADCAM, "backbone.6") is None
    assert cam_note(linear, MapMethod.GRADCAM, "backbone.7.0") is None
    for method in (MapMethod.MODEL, MapMethod.GRADCAM_PLUSPLUS, MapMethod.LAYERCAM,
                   MapMethod.EIGENCAM, MapMethod.SCORECAM, MapMethod.GRADCAM_ELEMENTWISE):
        assert cam_note(linear, method, None) is None
    assert "first classifier's CAM" in cam_note(small_model("linear", "pp"),
                                                MapMethod.GRADCAM, None)
    # a baseline whose own maps are not its classifier's CAM (DDT's projection, FSL's
    # foreground head) is never said to equal them
    for name, extra in (("ddt", {}), ("fsl", {"boxes_per_class": 1})):
        config = TrainConfig(data="d", out="o", method=name, arch="resnet18", **extra)
        baseline = config.training_method().model("resnet18", 4, 32).eval()
        note = cam_note(baseline, MapMethod.GRADCAM, None)
        assert "its classifier's CAM, not the model's own maps" in note
        assert "equals the model's own CAM" not in note


def test_gradcam_of_a_linear_head_is_its_cam_relud_and_min_max_scaled():
    """The note's claim, checked: Grad-CAM, HiResCAM and XGrad-CAM maps at the backbone of
    a linear head equal the head's class map (bias left out), ReLU'd and min-max scaled;
    with a conv head they do not."""
    model = small_model("linear")
    torch.manual_seed(1)
    images = torch.randn(3, 3, 96, 96)
    classes = torch.tensor([[0, 1], [2, 3], [1, 0]])
    with torch.no_grad():
        features = model.backbone(images)
        head = model.heads[0]
        raw = head.selected_maps(features, classes) - head.classifier.bias[classes][..., None,
                                                                                       None]
        expected = normalize_maps(raw.clamp(min=0))
        own = model.class_maps(images, classes)
    assert expected.shape == (3, 2, 3, 3) and float(expected.std()) > 0.1
    for method in ("gradcam", "hirescam", "xgradcam"):
        maps = method_maps(model, images, classes, method)
        assert torch.allclose(maps, expected, atol=1e-4), method
    # the model's own map is the same CAM min-max scaled without the ReLU: equal above
    # the CAM's zero, one increasing function of the other everywhere
    positive = raw > 0
    ranks_agree = [torch.equal(torch.argsort(own[i, k][positive[i, k]]),
                               torch.argsort(expected[i, k][positive[i, k]]))
                   for i in range(3) for k in range(2)]
    assert all(ranks_agree)
    conv = small_model("conv")
    with torch.no_grad():
        cfeatures = conv.backbone(images)
        craw = conv.heads[0].selected_maps(cfeatures, classes)
    cexpected = normalize_maps((craw - conv.heads[0].classifier.bias[classes][..., None, None])
                               .clamp(min=0))
    assert (method_maps(conv, images, classes, "gradcam") - cexpected).abs().max() > 0.05


def test_localize_says_at_start_when_gradcam_is_the_cam(tmp_path):
    folder = write_images(tmp_path / "img", ["a.png"])
    make_checkpoint(tmp_path / "m.pt", recipe="p")
    lines: list[str] = []
    run_localize(folder, tmp_path / "run", log=lines.append, checkpoint=str(tmp_path / "m.pt"),
                 method="gradcam")
    assert [line for line in lines if line.startswith("note:")] == [
        "note: gradcam at backbone (the input of a linear head) equals the model's own CAM "
        "(--method model) up to normalisation (ReLU, then min-max); --target-layer "
        "backbone.6 (an earlier layer) gives a different map"]
    lines.clear()
    run_localize(folder, tmp_path / "run2", log=lines.append,
                 checkpoint=str(tmp_path / "m.pt"), method="gradcam", target_layer="backbone.6")
    assert not [line for line in lines if line.startswith("note:")]


# --------------------------------------------------------------------------- plurals


def test_localize_counts_one_image_one_map_in_the_singular(tmp_path):
    folder = write_images(tmp_path / "img", ["a.png"])
    make_checkpoint(tmp_path / "m.pt")
    result = CliRunner().invoke(main, ["localize", str(folder), "--out", str(tmp_path / "run"),
                                       "--checkpoint", str(tmp_path / "m.pt"), "--workers",
                                       "0", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    assert "localising 1 image with resnet18 (3 classes) on cpu, 1 process;" in result.output
    assert f"), 1 map -> {tmp_path / 'run'}" in result.output
    assert "localised 1 image (" in result.output
