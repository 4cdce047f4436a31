"""The region metrics (score --region-metrics) equal Quantus 0.6.0's own classes image by
image, to 1e-6, on real masks (OpenImages) and real boxes (CUB) with the frames score's
protocols make: the native frame (a float map at the image's size: no ties) and the
wsoleval frame (a 224x224 uint8 map: ties everywhere).

Quantus is installed beside acol-eval without its dependencies (the Makefile's install
step: it would pull the GUI opencv-python over our opencv-python-headless); without it
this file is skipped. Nothing is installed here.

Quantus 0.6.0 on NumPy 2 (what this test works around, here only):
- PointingGame writes NaN into a bool array for an empty region, which NumPy casts to
  True (a hit); its weighted variant raises TypeError. Only non-empty regions are given
  to it (our NaN for an empty region is tested in test_region_metrics.py).
- Top-K Intersection and Relevance Rank Accuracy sort with numpy's unstable argsort,
  which breaks ties at the cut in an order of its own; score takes the tied pixels in
  the proportion the region holds. Where a tie straddles the cut the test checks both
  lie between the fewest and the most region pixels any order of the ties gives.
- The energy-based pointing game (Score-CAM) is Quantus's RelevanceMassAccuracy of the
  min-max normalised map.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from acol_eval.maps.boxes import upsample_map, wsoleval_uint8
from acol_eval.scoring.protocols import get_protocol
from acol_eval.scoring.scoring import ScoreConfig, score
from conftest import make_checkpoint, run_cli, shared_data

quantus = pytest.importorskip(
    "quantus", reason="quantus is not installed (make install adds it without its "
                      "dependencies)")

NAMES = ["pointing_game", "attribution_localisation", "top_k_intersection",
         "relevance_rank_accuracy", "relevance_mass_accuracy", "region_auc",
         "energy_pointing_game"]
RANKED = {"top_k_intersection", "relevance_rank_accuracy"}  # cut at a count: ties matter
TOP_K = 1000


def quantus_values(frames: list[np.ndarray], regions: list[np.ndarray]) -> dict:
    """Quantus 0.6.0's value of every metric on each (map, non-empty region)."""
    found = [_quantus_batch(frame[None, None], region[None, None])
             for frame, region in zip(frames, regions)]  # one a batch: sizes differ
    return {name: np.concatenate([f[name] for f in found]) for name in found[0]}


def _quantus_batch(a: np.ndarray, s: np.ndarray) -> dict:
    a, s = a.astype(np.float64), s.astype(np.float64)
    x, y = np.zeros_like(a), np.zeros(len(a), int)
    low, high = a.min(axis=(1, 2, 3), keepdims=True), a.max(axis=(1, 2, 3), keepdims=True)

    def run(metric, maps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(metric(model=None, x_batch=x, y_batch=y, a_batch=maps,
                                     s_batch=s), dtype=np.float64)

    return {
        "pointing_game": run(quantus.PointingGame(disable_warnings=True), a),
        "attribution_localisation": run(
            quantus.AttributionLocalisation(disable_warnings=True), a),
        "top_k_intersection": run(quantus.TopKIntersection(k=TOP_K, disable_warnings=True),
                                  a),
        "relevance_rank_accuracy": run(quantus.RelevanceRankAccuracy(disable_warnings=True),
                                       a),
        "relevance_mass_accuracy": run(quantus.RelevanceMassAccuracy(disable_warnings=True),
                                       a),
        "region_auc": run(quantus.AUC(disable_warnings=True), a),
        "energy_pointing_game": run(quantus.RelevanceMassAccuracy(disable_warnings=True),
                                    (a - low) / (high - low)),
    }


def tie_bounds(frame: np.ndarray, region: np.ndarray, count: int) -> tuple[int, int] | None:
    """(fewest, most) region pixels among the `count` highest pixels over every order of
    tied values; None when no tie straddles the cut (every order gives the same)."""
    values, inside = frame.reshape(-1), region.reshape(-1)
    order = np.argsort(-values.astype(np.float64), kind="stable")
    if count >= values.size or values[order[count - 1]] != values[order[count]]:
        return None
    cut = values[order[count - 1]]
    above, tied = values > cut, values == cut
    take = count - int(above.sum())
    sure, tied_in = int(inside[above].sum()), int(inside[tied].sum())
    tied_out = int(tied.sum()) - tied_in
    return sure + max(0, take - tied_out), sure + min(take, tied_in)


def pointing_game(frame: np.ndarray, region: np.ndarray) -> float:
    """Zhang et al.'s pointing game without tolerance: a maximum of the map in the region."""
    ys, xs = np.nonzero(frame == frame.max())
    return float(any(region[y, x] for y, x in zip(ys, xs)))


def check_equal(per_image: pd.DataFrame, frames: dict, regions: dict) -> int:
    """Every metric of every image equals Quantus's (and the pointing game the short
    implementation above); returns how many ranked values were compared exactly."""
    images = [i for i in per_image["image"] if regions[i].any()]
    assert images, "no image with a region"
    theirs = quantus_values([frames[i] for i in images], [regions[i] for i in images])
    ours = per_image.set_index("image")
    exact = 0
    for n, image in enumerate(images):
        frame, region = frames[image], regions[image]
        assert ours.at[image, "pointing_game"] == pointing_game(frame, region), image
        for name in NAMES:
            mine, reference = float(ours.at[image, name]), float(theirs[name][n])
            count = {"top_k_intersection": TOP_K,
                     "relevance_rank_accuracy": int(region.sum())}.get(name)
            bounds = tie_bounds(frame, region, count) if name in RANKED else None
            if bounds is None:
                assert mine == pytest.approx(reference, abs=1e-6, nan_ok=True), (image, name)
                exact += name in RANKED
            else:
                low, high = (b / count for b in bounds)
                assert low - 1e-9 <= mine <= high + 1e-9, (image, name, bounds)
                assert low - 1e-9 <= reference <= high + 1e-9, (image, name, bounds)
    return exact


def smooth_map(rng: np.random.Generator) -> np.ndarray:
    """A CAM-like 14x14 map: squared noise, so a few peaks stand out."""
    return rng.random((14, 14)) ** 2


def mask_files(meta, mask_root) -> dict[str, tuple[list[str], str]]:
    """localization.txt's masks of the sampled images: image -> (mask files, ignore)."""
    found: dict[str, tuple[list[str], str]] = {}
    for line in (meta / "localization.txt").read_text().splitlines():
        image, mask, ignore = line.split(",")[:3]
        if (mask_root / mask).is_file():
            files, _ = found.setdefault(image, ([], str(mask_root / ignore)))
            files.append(str(mask_root / mask))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["wsoleval", "native"])
def test_equal_to_quantus_on_real_openimages_masks(tmp_path, protocol):
    source = shared_data() / "wsol-metadata" / "OpenImages" / "val"
    mask_root = shared_data() / "wsol-metadata" / "OpenImages-test-masks-sample"
    meta = tmp_path / "meta"
    shutil.copytree(source, meta)
    masks = mask_files(meta, mask_root)
    lines = [line for line in (meta / "localization.txt").read_text().splitlines()
             if line.split(",")[0] in masks]
    (meta / "localization.txt").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(7)
    maps = {image: smooth_map(rng) for image in masks}
    for image, values in maps.items():
        (tmp_path / "maps" / f"{image}.npy").parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "maps" / f"{image}.npy", values)
    score(ScoreConfig(run=str(tmp_path / "maps"), annotations=f"wsol:{meta}",
                      out=str(tmp_path / "rep"), mask_root=str(mask_root), workers=0,
                      allow_missing=True, interval=0.01, protocol=protocol,
                      region_metrics="all"))
    per_image = pd.read_csv(tmp_path / "rep" / "per_image.csv")
    assert len(per_image) == len(masks) >= 4
    scorer = get_protocol(protocol)
    regions = {i: scorer.read_mask(*masks[i]) == 1 for i in masks}
    frames = {i: wsoleval_uint8(maps[i]) if protocol == "wsoleval" else
              upsample_map(maps[i], regions[i].shape[1], regions[i].shape[0]) for i in masks}
    exact = check_equal(per_image, frames, regions)
    empty = [i for i in masks if not regions[i].any()]  # all of its mask ignored
    assert per_image.set_index("image").loc[empty, NAMES].isna().all().all()
    if protocol == "native":  # float maps: no ties, every ranked value compared exactly
        assert exact == 2 * (len(masks) - len(empty))


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["wsoleval", "native"])
def test_equal_to_quantus_on_cub_boxes_with_a_localize_run(tmp_path_factory, protocol):
    run = cub_run(tmp_path_factory)
    out = run.parent / f"rep-{protocol}"
    score(ScoreConfig(run=str(run), annotations=f"cub:{shared_data() / 'cub10'}",
                      split="test", out=str(out), workers=0, interval=0.01,
                      protocol=protocol, region_metrics="all", map_choice="top1"))
    per_image = pd.read_csv(out / "per_image.csv").head(25)  # 25 images: Quantus is slow
    frames, regions = cub_frames(run, per_image, protocol)
    exact = check_equal(per_image, frames, regions)
    if protocol == "native":  # float maps: no ties, every ranked value compared exactly
        assert exact == 2 * len(per_image)


_RUN = {}


def cub_run(tmp_path_factory):
    """cub10's test split localised by a tiny untrained resnet18 (once per session)."""
    if "run" not in _RUN:
        folder = tmp_path_factory.mktemp("cub-run")
        make_checkpoint(folder / "m.pt", classes=[f"c{k}" for k in range(10)], seed=1)
        result = run_cli("localize", f"cub:{shared_data() / 'cub10'}", "--split", "test",
                         "--out", str(folder / "run"), "--checkpoint", str(folder / "m.pt"),
                         "--workers", "0", "--device", "cpu")
        assert result.returncode == 0, result.stderr[-2000:]
        _RUN["run"] = folder / "run"
    return _RUN["run"]


def cub_frames(run, per_image: pd.DataFrame, protocol: str) -> tuple[dict, dict]:
    """Each image's map in the protocol's frame and its boxes as a region, made here from
    the run's map store and cub10's boxes (pixel by pixel, not by score's slicing)."""
    from acol_eval.data.readers import read_source
    from acol_eval.maps.runfolder import LocalizeRun
    from acol_eval.scoring.scoreinputs import MapChoice, store_table

    annotations = read_source(f"cub:{shared_data() / 'cub10'}").split("test")
    source, table = store_table(LocalizeRun(run), annotations, MapChoice.TOP1, {})
    keys = table.set_index("image")["key"]
    sizes = annotations.images.set_index("image")
    boxes = annotations.boxes.groupby("image")
    scorer = get_protocol(protocol)
    frames, regions = {}, {}
    for image in per_image["image"]:
        width, height = float(sizes.at[image, "width"]), float(sizes.at[image, "height"])
        values = source.load(keys[image])[0]
        frames[image] = scorer.prepare(values, width, height)
        region = np.zeros(frames[image].shape, bool)
        gt = boxes.get_group(image)[["x0", "y0", "x1", "y1"]].to_numpy(np.float64)
        ys, xs = np.mgrid[0:region.shape[0], 0:region.shape[1]]
        for x0, y0, x1, y1 in scorer.scale_gt(gt, width, height):
            if protocol == "wsoleval":  # inclusive pixels, as its IoU counts them
                region |= (x0 <= xs) & (xs <= x1) & (y0 <= ys) & (ys <= y1)
            else:  # the pixel's centre inside [x0, x1) x [y0, y1)
                region |= (x0 <= xs + 0.5) & (xs + 0.5 < x1) & (y0 <= ys + 0.5) & (ys + 0.5 < y1)
        regions[image] = region
    return frames, regions
