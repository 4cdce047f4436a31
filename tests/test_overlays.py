"""Overlays of `localize --overlays` and `boxes --overlays`: the map over
the image, ground truth magenta and the prediction green (report.html's gallery colours),
and the class name and score on a filled band sized to the image."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from acol_eval.maps.maps import (
    BOX_COLOUR,
    CAPTION_FILL,
    GT_COLOUR,
    caption_layout,
    overlay,
    overlay_caption,
)
from acol_eval.report import gallery
from conftest import make_checkpoint, read_rows, run_localize


def edge_pixels(picture: np.ndarray, box) -> np.ndarray:
    """The RGB pixels on the outermost line of a box (x0, y0, x1, y1; x1/y1 exclusive)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return np.concatenate([picture[y0, x0:x1], picture[y1 - 1, x0:x1], picture[y0:y1, x0],
                           picture[y0:y1, x1 - 1]]).astype(int)


def share_of(pixels: np.ndarray, colour) -> float:
    """Share of pixels within 70 per channel of `colour` (JPEG moves colours a little)."""
    return float((np.abs(pixels - np.array(colour)).max(axis=1) < 70).mean())


def band_of(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The caption band's pixels (the dark rows of the top left corner) and the rest."""
    height, width = picture.shape[:2]
    _, _, _, band = caption_layout("x", width, height)
    return picture[:band, : width // 4], picture[band + 4:, : width // 4]


def test_overlay_draws_ground_truth_prediction_and_caption():
    image = np.full((240, 320, 3), 128, np.uint8)
    cam = np.zeros((240, 320), np.float32)  # constant: the heatmap is JET's dark blue
    predicted, truth = [150, 100, 300, 220], [60, 70, 200, 200]
    drawn = overlay(image, cam, np.array([predicted]), gt_boxes=np.array([truth]),
                    caption="Black_footed_Albatross 0.87")
    assert share_of(edge_pixels(drawn, predicted), BOX_COLOUR) == 1.0
    # the ground-truth box is drawn first: only where the prediction crosses it is it green
    assert share_of(edge_pixels(drawn, truth), GT_COLOUR) > 0.85
    assert GT_COLOUR == gallery.GT_COLOUR and BOX_COLOUR == gallery.PREDICTED_COLOUR
    band, below = band_of(drawn)
    ink = (band.min(axis=2) > 200).mean()  # white text
    fill = (np.abs(band.astype(int) - CAPTION_FILL).max(axis=2) < 10).mean()
    assert 0.05 < ink < 0.6 and fill > 0.5
    # the band hides the heatmap (blue here): only black, white and their anti-aliasing
    assert np.ptp(band.astype(int), axis=2).max() < 12
    assert (below.min(axis=2) > 200).mean() == 0  # no text outside the band
    plain = overlay(image, cam, np.array([predicted]))
    assert np.array_equal(plain[band.shape[0]:], overlay(
        image, cam, np.array([predicted]), caption="x")[band.shape[0]:])
    assert not np.array_equal(plain, drawn)


def test_caption_is_sized_to_the_image_and_fits_its_width():
    small = caption_layout("tabby 0.51", 64, 64)
    large = caption_layout("tabby 0.51", 2000, 1500)
    assert small[3] < 20 and large[3] > 60  # band height grows with the image
    long_name = "a very long class name, longer than the image is wide 0.99"
    scale, thickness, pad, _ = caption_layout(long_name, 400, 300)
    (width, _), _ = cv2.getTextSize(long_name, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    assert width <= 400 - 2 * pad + 2
    assert overlay_caption("tabby", 0.5123) == "tabby 0.51"
    assert overlay_caption("tabby", None) == "tabby"


def test_localize_overlays_show_ground_truth_of_an_annotation_source(tmp_path):
    """IMAGES is a CUB-layout source with boxes: every overlay shows its boxes in magenta,
    the predicted box in green and the top-1 class with its score on the band."""
    from acol_eval.data.synth import SynthConfig, class_names, write_synth

    write_synth(tmp_path / "s", SynthConfig(classes=2, train_per_class=1, val_per_class=1,
                                            size=160, seed=4))
    make_checkpoint(tmp_path / "m.pt", recipe="p", classes=class_names(2))
    run_localize(f"cub:{tmp_path / 's'}", tmp_path / "run", checkpoint=str(tmp_path / "m.pt"),
                 split="test", overlays=str(tmp_path / "ov"), cam_threshold=0.5)
    truth = pd.read_csv(tmp_path / "s" / "annotations.csv")
    rows = read_rows(tmp_path / "run" / "predictions.csv")
    assert len(rows) == 2
    for row in rows:
        picture = cv2.cvtColor(cv2.imread(str(tmp_path / "ov" / f"{row['image']}.jpg")),
                               cv2.COLOR_BGR2RGB)
        box = truth[truth["image"] == row["image"]][["x0", "y0", "x1", "y1"]].iloc[0]
        assert share_of(edge_pixels(picture, box), GT_COLOUR) > 0.5
        if row["x0"]:
            predicted = [int(row[k]) for k in ("x0", "y0", "x1", "y1")]
            assert share_of(edge_pixels(picture, predicted), BOX_COLOUR) > 0.5
        band, _ = band_of(picture)
        assert (band.min(axis=2) > 180).mean() > 0.03  # text
        assert (band.max(axis=2) < 60).mean() > 0.3  # its dark band


def test_localize_overlays_of_a_plain_folder_have_no_ground_truth(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((150, 210, 3), 128, np.uint8))
    make_checkpoint(tmp_path / "m.pt")
    run_localize(folder, tmp_path / "run", checkpoint=str(tmp_path / "m.pt"),
                 overlays=str(tmp_path / "ov"))
    picture = cv2.cvtColor(cv2.imread(str(tmp_path / "ov" / "a.png.jpg")), cv2.COLOR_BGR2RGB)
    assert share_of(picture.reshape(-1, 3), GT_COLOUR) == 0
    band, _ = band_of(picture)
    assert (band.min(axis=2) > 180).mean() > 0.03


def test_overlay_names_keep_a_jpegs_name_and_stay_distinct(tmp_path):
    """x.jpg -> x.jpg (not x.jpg.jpg), x.png -> x.png.jpg; the names that would then meet
    another image's overlay get more: every input name has its own overlay file."""
    from acol_eval.maps.overlays import overlay_path

    names = {"x.jpg": "x.jpg", "x.JPEG": "x.JPEG", "sub/y.jpeg": "sub/y.jpeg",
             "x.png": "x.png.jpg", "x.png.jpg": "x.png.jpg.jpg", "x": "x.jpg.jpg",
             "x.jpg.jpg": "x.jpg.jpg.jpg", "../up.jpg": "_up/up.jpg",
             "/abs/z.tif": "_abs/abs/z.tif.jpg", "notes.txt": "notes.txt.jpg.jpg"}
    found = {name: overlay_path(tmp_path, name).relative_to(tmp_path).as_posix()
             for name in names}
    assert found == names
    assert len(set(found.values())) == len(found)


def test_overlay_caption_shows_the_true_label_beside_the_prediction(tmp_path):
    assert overlay_caption("tabby", 0.5123, "tiger") == "tabby 0.51 | true: tiger"
    assert overlay_caption("tabby", 0.5123, None) == "tabby 0.51"
    assert overlay_caption("tabby", 0.5123, "") == "tabby 0.51"
    image = np.full((120, 400, 3), 128, np.uint8)
    cam = np.zeros((120, 400), np.float32)
    plain = overlay(image, cam, np.zeros((0, 4)), caption="tabby 0.51")
    labelled = overlay(image, cam, np.zeros((0, 4)), caption="tabby 0.51 | true: tiger")

    def ink_right_edge(picture):  # the rightmost column of white text
        return int(np.nonzero((picture.min(axis=2) > 200).any(axis=0))[0].max())

    # the label's text follows the prediction's on the same band: ink further right
    assert ink_right_edge(labelled) > ink_right_edge(plain) + 20
    assert np.array_equal(labelled[:, : ink_right_edge(plain) - 8],
                          plain[:, : ink_right_edge(plain) - 8])


def test_localize_overlays_caption_the_annotated_label(tmp_path, monkeypatch):
    """An annotation source's label is drawn beside the prediction (as class name, also
    for wsolevaluation's class ids); a plain folder's overlay has none."""
    from acol_eval.data.synth import SynthConfig, class_names, write_synth
    from acol_eval.maps import localization

    captions = []
    real = localization.write_overlay

    def spy(root, name, image_file, cam, boxes, gt_boxes=None, caption=None):
        captions.append((name, caption))
        return real(root, name, image_file, cam, boxes, gt_boxes, caption)

    monkeypatch.setattr(localization, "write_overlay", spy)
    write_synth(tmp_path / "s", SynthConfig(classes=2, train_per_class=1, val_per_class=1,
                                            size=64, seed=4))
    make_checkpoint(tmp_path / "m.pt", recipe="p", classes=class_names(2))
    run_localize(f"cub:{tmp_path / 's'}", tmp_path / "run", checkpoint=str(tmp_path / "m.pt"),
                 split="test", overlays=str(tmp_path / "ov"))
    truth = dict(pd.read_csv(tmp_path / "s" / "annotations.csv")[["image", "label"]].values)
    rows = {r["image"]: r for r in read_rows(tmp_path / "run" / "predictions.csv")}
    assert len(captions) == 2
    for name, caption in captions:
        assert caption == (f"{rows[name]['pred_1']} {float(rows[name]['score_1']):.2f} | "
                           f"true: {truth[name]}")
        assert (tmp_path / "ov" / f"{name}.jpg").is_file()  # synth's images are PNG
