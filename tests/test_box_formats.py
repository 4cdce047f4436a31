"""Box formats have one owner, acol_eval.data.boxformats: hand-worked conversions of every
format, round trips, the readers' boxes on real CUB files, and the box the gallery
draws equal to the box `score` judged, converted to original pixels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from acol_eval.data.boxformats import BoxFormat, convert, rectangles_to_frame
from acol_eval.data.readers import read_source
from acol_eval.report import gallery
from acol_eval.report.gallerypage import ORIGINAL_BOX_COLUMNS, predicted_box
from acol_eval.scoring.scoring import ScoreConfig, score
from conftest import shared_data

XYXY, FRAME = BoxFormat.XYXY, BoxFormat.WSOLEVAL_224

# (format, written, the same box as XYXY): worked by hand from each format's definition
HAND_WORKED = [
    (BoxFormat.XYXY, [3, 5, 4, 6], [3, 5, 4, 6]),
    (BoxFormat.XYWH, [2, 3, 4, 5], [2, 3, 6, 8]),                   # OpenCV rectangle
    (BoxFormat.CUB_XYWH, [60, 27, 325, 304], [60, 27, 385, 331]),   # CUB image 1
    (BoxFormat.COCO_XYWH, [10.5, 20.25, 30, 40.5], [10.5, 20.25, 40.5, 60.75]),
    (BoxFormat.VOC, [4, 6, 4, 6], [3, 5, 4, 6]),                   # one pixel at (3, 5)
    (BoxFormat.VOC, [1, 1, 500, 335], [0, 0, 500, 335]),           # a whole 500 x 335 image
]


@pytest.mark.parametrize(("fmt", "written", "xyxy"), HAND_WORKED)
def test_each_format_converts_to_and_from_xyxy_as_worked_by_hand(fmt, written, xyxy):
    assert convert(written, fmt, XYXY).tolist() == [xyxy]
    assert convert(xyxy, XYXY, fmt).tolist() == [written]


def test_wsoleval_frame_scales_with_truncation_both_ways():
    # a 500 x 335 image: 60 * 224 / 500 = 26.88 -> 26, 331 * 224 / 335 = 221.3 -> 221
    frame = convert([60, 27, 385, 331], XYXY, FRAME, (500, 335))
    assert frame.dtype == np.int64 and frame.tolist() == [[26, 18, 172, 221]]
    back = convert(frame, FRAME, XYXY, (500, 335))
    assert np.allclose(back, [[26 * 500 / 224, 18 * 335 / 224, 172 * 500 / 224,
                               221 * 335 / 224]])
    assert np.allclose(back, [[58.035714, 26.919643, 383.928571, 330.513393]])
    with pytest.raises(ValueError, match="image size"):
        convert(frame, FRAME, XYXY)


def test_exact_formats_round_trip_through_xyxy():
    rng = np.random.default_rng(0)
    boxes = rng.integers(0, 1000, (200, 4)).astype(np.float64) / 4  # exact in binary
    for fmt in (BoxFormat.XYWH, BoxFormat.CUB_XYWH, BoxFormat.COCO_XYWH, BoxFormat.VOC):
        assert np.array_equal(convert(convert(boxes, XYXY, fmt), fmt, XYXY), boxes), fmt
        assert np.array_equal(convert(convert(boxes, fmt, XYXY), XYXY, fmt), boxes), fmt


def test_the_wsoleval_frame_round_trips_within_one_frame_pixel():
    coordinates = np.arange(0, 225, dtype=np.float64)
    frame_boxes = np.stack([coordinates] * 4, axis=1)
    for width, height in ((500, 335), (96, 96), (121, 457), (2000, 37)):
        size = (width, height)
        back = convert(convert(frame_boxes, FRAME, XYXY, size), XYXY, FRAME, size)
        assert ((back <= frame_boxes) & (back >= frame_boxes - 1)).all()
        assert (back == frame_boxes).mean() > 0.9  # off only by float rounding
        original = frame_boxes * np.array([width, height] * 2) / 224
        again = convert(convert(original, XYXY, FRAME, size), FRAME, XYXY, size)
        assert (np.abs(again - original) <= np.array([width, height] * 2) / 224).all()


def test_rectangles_in_the_frame_clip_to_the_last_pixel_as_the_reference_does():
    rects = [[0, 0, 224, 10], [5, 6, 7, 8]]
    assert rectangles_to_frame(rects, 224, 224).tolist() == [[0, 0, 223, 10], [5, 6, 12, 14]]


# --------------------------------------------------------------------------- real CUB


def _cub_raw(cub):
    raw = pd.read_csv(cub / "bounding_boxes.txt", sep=" ", names=["id", "x", "y", "w", "h"])
    names = pd.read_csv(cub / "images.txt", sep=" ", names=["id", "image"])
    return raw.merge(names, on="id")


def test_the_cub_reader_converts_bounding_boxes_through_the_owner_as_wsolevaluation_did():
    data = shared_data()
    cub = data / "cub10"
    raw = _cub_raw(cub).set_index("image")
    table = read_source(f"cub:{cub}")
    boxes = table.boxes.set_index("image")
    expected = convert(raw.loc[boxes.index, ["x", "y", "w", "h"]].to_numpy(),
                       BoxFormat.CUB_XYWH, XYXY)
    sizes = table.images.set_index("image").loc[boxes.index, ["width", "height"]].to_numpy()
    expected = np.minimum(expected, np.tile(sizes, 2))  # a box past the edge is clipped
    assert table.issues == {"clipped_box": 1}
    assert np.array_equal(boxes[["x0", "y0", "x1", "y1"]].to_numpy(), expected)
    # wsolevaluation's own CUB metadata holds the same boxes as x0,y0,x1,y1
    wsol = pd.read_csv(data / "wsol-metadata" / "CUB" / "test" / "localization.txt",
                       names=["image", "x0", "y0", "x1", "y1"]).set_index("image")
    shared = wsol.index.intersection(boxes.index)
    ours = boxes.loc[shared, ["x0", "y0", "x1", "y1"]].to_numpy()
    theirs = wsol.loc[shared].to_numpy(dtype=float)
    # except where a box reaches the image's right edge: wsolevaluation clips x1 to the
    # last pixel (width - 1), the readers to the edge (width), as x1 is exclusive here
    width = table.images.set_index("image").loc[shared, "width"].to_numpy()
    edge = ours[:, 2] == width
    assert len(shared) == 243 and edge.sum() == 2
    assert np.array_equal(ours[~edge], theirs[~edge])
    assert np.array_equal(theirs[edge, 2], width[edge] - 1)


def _blob(height: int, width: int, cx: float, cy: float, spread: float) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.exp(-(((xs - cx) / spread) ** 2 + ((ys - cy) / spread) ** 2))


def test_the_gallery_draws_the_box_score_judged_on_real_cub_images(tmp_path):
    cub = shared_data() / "cub10"
    split = pd.read_csv(cub / "train_test_split.txt", sep=" ", names=["id", "train"])
    raw = _cub_raw(cub).merge(split, on="id")
    chosen = raw[raw["train"] == 0].head(6).reset_index(drop=True)
    maps = tmp_path / "maps"
    for n, row in chosen.iterrows():
        # a blob off the bird's centre, one at the right edge (a box clipped at 223)
        cx = 27.0 if n == 0 else 6 + 3 * n
        heat = _blob(28, 28, cx, 10 + 2 * n, 4 + n)
        (maps / row["image"]).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / (row["image"][:-4] + ".npy"), heat)
    (tmp_path / "list.txt").write_text("\n".join(chosen["image"]) + "\n")
    score(ScoreConfig(run=str(maps), annotations=f"cub:{cub}", out=str(tmp_path / "r"),
                      split="test", interval=0.01, workers=0,
                      image_list=str(tmp_path / "list.txt")))
    per_image = pd.read_csv(tmp_path / "r" / "per_image.csv")
    assert len(per_image) == 6 and (per_image["x1"] == 223).any()
    frame_only = per_image.drop(columns=[c for cols in ORIGINAL_BOX_COLUMNS for c in cols
                                         if c in per_image])
    for (_, row), (_, bare) in zip(per_image.iterrows(), frame_only.iterrows()):
        with Image.open(cub / "images" / row["image"]) as image:
            size = image.size
        judged = convert(row[["x0", "y0", "x1", "y1"]].to_numpy(float), FRAME, XYXY, size)
        # per_image.csv's original-pixel columns hold that box (to 2 decimals) ...
        assert np.allclose(row[["orig_x0", "orig_y0", "orig_x1", "orig_y1"]].to_numpy(float),
                           judged[0], atol=0.006)
        # ... and the gallery draws it, from those columns or from the frame's alone
        for found in (row, bare):
            drawn = predicted_box(found, "wsoleval", size)
            assert np.allclose(drawn, judged, atol=0.006), (row["image"], drawn, judged)
        thumbs = [gallery.thumbnail(None, None, size, np.zeros((0, 4)),
                                    predicted_box(found, "wsoleval", size))
                  for found in (row, bare)]
        assert np.array_equal(thumbs[0], thumbs[1])
