"""report.html: the page of a real score report, parsed and opened in Chromium,
and the gallery's pure functions."""

import base64
import json
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import pandas as pd
import pytest

from acol_eval.data.readers import read_source
from acol_eval.maps.mapstore import maps_meta
from acol_eval.maps.reportfolder import ReportMeta
from acol_eval.report import gallery
from acol_eval.report.comparepage import write_compare_html
from acol_eval.report.gallerypage import (
    GallerySource,
    gallery_source,
    load_image,
    load_maps,
    predicted_box,
)
from acol_eval.report.htmlparts import read_report
from acol_eval.report.htmlreport import write_score_html
from acol_eval.scoring.scoring import ScoreConfig, score
from conftest import shared_data

RACCOON_IMAGES = 16
MAP_SIDE = 28


# --------------------------------------------------------------------------- a real report


def blob_map(box, width, height, kind: int) -> np.ndarray:
    """A 28x28 map with a Gaussian blob: on the box (0), a small part of it (1), far
    from it (2), or much larger than it (3): a spread of IoUs and error types."""
    cx = (box[0] + box[2]) / 2 / width * MAP_SIDE
    cy = (box[1] + box[3]) / 2 / height * MAP_SIDE
    sx = max((box[2] - box[0]) / width * MAP_SIDE / 3, 0.8)
    sy = max((box[3] - box[1]) / height * MAP_SIDE / 3, 0.8)
    if kind == 1:
        sx, sy = sx / 4, sy / 4
    elif kind == 2:
        cx, cy, sx, sy = MAP_SIDE - 1 - cx, MAP_SIDE - 1 - cy, 1.5, 1.5
    elif kind == 3:
        sx, sy = 40.0, 40.0
    ys, xs = np.mgrid[0:MAP_SIDE, 0:MAP_SIDE]
    return np.exp(-((xs - cx) ** 2 / (2 * sx**2) + (ys - cy) ** 2 / (2 * sy**2)))


def make_raccoon_report(root: Path, count: int = RACCOON_IMAGES, threshold_from=None) -> Path:
    """A report folder made by the real `score` from real raccoon photos and their VOC
    boxes, with hand-made .npy maps (a .npy run, images under report.json's root)."""
    data = shared_data() / "raccoon"
    voc = root / "voc"
    voc.mkdir(parents=True, exist_ok=True)
    for xml in sorted((data / "annotations").glob("*.xml"))[:count]:
        shutil.copy(xml, voc / xml.name)
    annotations = read_source(f"voc:{voc}")
    maps = root / "maps"
    maps.mkdir(exist_ok=True)
    for i, row in enumerate(annotations.images.itertuples()):
        box = annotations.boxes[annotations.boxes["image"] == row.image].iloc[0]
        values = blob_map(box[["x0", "y0", "x1", "y1"]].to_numpy(float), row.width,
                          row.height, i % 4)
        np.save(maps / f"{Path(row.image).stem}.npy", values.astype(np.float32))
    report = root / "report"
    score(ScoreConfig(run=str(maps), annotations=f"voc:{voc}", out=str(report), workers=1,
                      bootstrap=1000, threshold_from=threshold_from))
    ReportMeta(protocol="wsoleval", annotations=f"voc:{voc}", annotations_digest="-",
               run=str(maps), images_root=str(data / "images"), images=count,
               threshold_source=f"from:{threshold_from}" if threshold_from else "oracle"
               ).write(report)
    return report


@pytest.fixture(scope="module")
def raccoon_report(tmp_path_factory) -> Path:
    report = make_raccoon_report(tmp_path_factory.mktemp("raccoon"))
    write_score_html(report)
    return report


class PageParser(HTMLParser):
    """Every tag's attributes, the data-threshold marks, and the gallery's images."""

    def __init__(self):
        super().__init__()
        self.attributes: list[tuple[str, str, str]] = []
        self.marks: list[tuple[str, float]] = []
        self.gallery_images: list[dict] = []
        self.section = None
        self.styles: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.attributes += [(tag, k, v or "") for k, v in attrs.items()]
        if tag == "section":
            self.section = attrs.get("id")
        if "data-metric" in attrs:
            self.marks.append((attrs["data-metric"], float(attrs["data-threshold"])))
        if tag == "img" and self.section == "gallery":
            self.gallery_images.append(attrs)
        self.in_style = tag == "style"

    def handle_data(self, data):
        if self.in_style:
            self.styles.append(data)


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def decode_data_uri(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/jpeg;base64,")
    raw = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(raw, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def colour_pixels(image: np.ndarray, colour, tolerance: int = 60) -> int:
    return int((np.abs(image.astype(int) - np.array(colour)).max(axis=2) <= tolerance).sum())


# --------------------------------------------------------------------------- structure


def test_page_is_self_contained_and_marks_summary_thresholds(raccoon_report):
    page = raccoon_report / "report.html"
    parsed = parse(page)
    for tag, name, value in parsed.attributes:
        if name == "xmlns" or value.startswith("data:image/jpeg;base64,"):
            continue  # a namespace name, not a resource; inline pictures
        assert not re.search(r"https?:|^//|^file:", value), (tag, name, value[:80])
        if name in ("src", "href") and not value.startswith(("data:", "#")):
            target = (raccoon_report / value).resolve()
            assert target.is_file() and raccoon_report.resolve() in target.parents, value
    assert not re.search(r"url\(|@import|https?:", "".join(parsed.styles))
    summary = pd.read_csv(raccoon_report / "summary.csv").set_index("metric")
    marked = dict(parsed.marks)
    assert set(marked) == {"best_gt_known_loc", "gt_known_loc", "max_box_acc_v2@30",
                           "max_box_acc_v2@50", "max_box_acc_v2@70"}
    for metric, threshold in marked.items():
        assert threshold == pytest.approx(summary.loc[metric, "threshold"], abs=1e-12), metric
    # the marks are not all the same number: the test can tell them apart
    assert len({round(t, 6) for t in marked.values()}) >= 2


def test_gallery_shows_each_picked_image_with_both_box_colours(raccoon_report):
    per_image = pd.read_csv(raccoon_report / "per_image.csv", dtype={"image": str})
    picked = gallery.pick_gallery(per_image)
    images = parse(raccoon_report / "report.html").gallery_images
    assert 12 <= len(images) == len(picked) <= RACCOON_IMAGES
    assert [i["alt"] for i in images] == picked["image"].tolist()
    for attrs in images:
        thumb = decode_data_uri(attrs["src"])
        assert max(thumb.shape[:2]) == gallery.THUMB_SIDE
        assert colour_pixels(thumb, gallery.GT_COLOUR) > 40, attrs["alt"]
        assert colour_pixels(thumb, gallery.PREDICTED_COLOUR) > 20, attrs["alt"]
        # the photo is under the map: not just the heatmap's colours
        assert thumb.std() > 30
    assert (raccoon_report / "report.html").stat().st_size < 2_000_000


class TableParser(HTMLParser):
    """The cells of every table row of the #metrics section."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.section = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.section = dict(attrs).get("id")
        if self.section == "metrics" and tag == "tr":
            self.rows.append([])
        if self.section == "metrics" and tag == "td":
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.rows[-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def test_metrics_table_holds_every_summary_row_with_threshold_and_interval(raccoon_report):
    parser = TableParser()
    parser.feed((raccoon_report / "report.html").read_text())
    rows = {r[0]: r for r in parser.rows if r}
    summary = pd.read_csv(raccoon_report / "summary.csv")
    for row in summary.itertuples():
        if row.metric.startswith("issue:"):
            continue
        metric, value, low, high, threshold, iou, count, source = rows[row.metric]
        assert value == f"{row.value:.2f}"
        assert (low, high) == ((f"{row.ci_low:.2f}", f"{row.ci_high:.2f}")
                               if pd.notna(row.ci_low) else ("", ""))
        assert threshold == ("" if pd.isna(row.threshold) else f"{row.threshold:.3f}")
        assert count == str(row.count) and iou == ("" if pd.isna(row.iou) else f"{row.iou:.0f}")
        assert source == ("oracle: the best on this split, each IoU at its own"
                          if row.metric == "max_box_acc_v2" else
                          "" if pd.isna(row.threshold) else
                          "fixed" if row.metric == "gt_known_loc" else
                          "oracle: the best on this split")


def test_page_says_where_thresholds_came_from(raccoon_report, tmp_path):
    text = (raccoon_report / "report.html").read_text()
    assert "oracle: the best on this split" in text and ">fixed<" in text
    other = make_raccoon_report(tmp_path, count=8, threshold_from=str(raccoon_report))
    page = write_score_html(other).read_text()
    assert f"from another report ({raccoon_report})" in page
    assert "oracle: the best on this split" not in page


def test_predicted_box_in_the_wsoleval_frame_is_drawn_in_original_pixels():
    row = pd.Series({"x0": 0, "y0": 0, "x1": 111, "y1": 223})
    # x * side / 224, as score writes orig_x0..orig_y1: 111 * 448 / 224, 223 * 224 / 224
    assert predicted_box(row, "wsoleval", (448, 224)).tolist() == [[0, 0, 222, 223]]
    assert predicted_box(row, "native", (448, 224)).tolist() == [[0, 0, 111, 223]]
    framed = pd.Series({**row, "frame": "original"})
    assert predicted_box(framed, "wsoleval", (448, 224)).tolist() == [[0, 0, 111, 223]]
    both = pd.Series({**row, "orig_x0": 1, "orig_y0": 2, "orig_x1": 3, "orig_y1": 4})
    assert predicted_box(both, "wsoleval", (448, 224)).tolist() == [[1, 2, 3, 4]]
    assert predicted_box(pd.Series({"x0": "", "y0": 1, "x1": 2, "y1": 3}), "native",
                         (9, 9)).shape == (0, 4)


def test_missing_files_and_new_columns_still_give_a_page(tmp_path, raccoon_report):
    folder = tmp_path / "r"
    folder.mkdir()
    summary = pd.read_csv(raccoon_report / "summary.csv")
    summary["threshold_source"] = np.where(summary["threshold"].notna(), "from:val", "")
    summary.to_csv(folder / "summary.csv", index=False)
    per_image = pd.read_csv(raccoon_report / "per_image.csv")
    per_image["frame"] = "224"
    per_image.loc[0, "label"] = "<script>alert(1)</script>"
    per_image.to_csv(folder / "per_image.csv", index=False)
    (folder / "curve.csv").write_text("threshold,gt_known_loc\n0,1\n0.5,oops,extra\n")
    text = write_score_html(folder).read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "from another report (val)" in text
    assert "curve.csv could not be read" in text
    assert "Shown without maps" in text
    assert len(parse(folder / "report.html").gallery_images) == len(
        gallery.pick_gallery(per_image))


def write_store(run: Path, images: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A localize map store with two maps an image: top-1 (rank 1, not the label) and
    the label's (rank 2); returns both stacks."""
    run.mkdir(parents=True)
    rng = np.random.default_rng(3)
    top1, label = rng.random((2, len(images), 7, 7)).astype(np.float16)
    maps = np.stack([top1, label], axis=1).reshape(-1, 7, 7)
    maps.astype("<f2").tofile(run / "maps.f16")
    (run / "maps.json").write_text(json.dumps(maps_meta(7, 7, len(maps), ["a", "b"])))
    index = pd.DataFrame({"row": np.arange(len(maps)), "image": np.repeat(images, 2),
                          "class_id": np.tile([0, 1], len(images)),
                          "class_name": np.tile(["a", "b"], len(images)),
                          "pred_rank": np.tile([1, 2], len(images)),
                          "is_label": np.tile([0, 1], len(images))})
    index.to_csv(run / "maps_index.csv", index=False)
    return top1, label


def test_store_maps_follow_the_map_choice_and_read_only_the_gallerys(tmp_path):
    names = [f"d/{k}.jpg" for k in range(5)]
    top1, label = write_store(tmp_path / "run", names)
    source = GallerySource(tmp_path / "run", "auto", None, [], {}, {}, {})
    found = load_maps(source, names[1:3])
    assert sorted(found) == names[1:3]
    assert np.array_equal(found["d/2.jpg"], label[2].astype(np.float32))
    top = load_maps(GallerySource(tmp_path / "run", "top1", None, [], {}, {}, {}), names)
    assert np.array_equal(top["d/4.jpg"], top1[4].astype(np.float32))
    centre = load_maps(GallerySource(tmp_path / "run", "auto", "centre", [], {}, {}, {}),
                       names[:1])
    assert centre["d/0.jpg"].shape == (28, 28) and centre["d/0.jpg"][14, 14] > 0.9


def test_images_are_found_through_run_json_and_never_outside_their_root(tmp_path):
    photos = tmp_path / "photos"
    (photos / "d").mkdir(parents=True)
    cv2.imwrite(str(photos / "d" / "0.jpg"), np.full((30, 60, 3), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "secret.png"), np.zeros((5, 5, 3), np.uint8))
    run = tmp_path / "run"
    write_store(run, ["d/0.jpg"])
    (run / "run.json").write_text(json.dumps({"arguments": {"images": f"folder:{photos}"}}))
    report = tmp_path / "report"
    report.mkdir()
    ReportMeta(protocol="native", annotations="", annotations_digest="-", run=str(run)
               ).write(report)
    source = gallery_source(read_report(report), {"d/0.jpg"})
    assert source.roots == [photos]
    image, frame = load_image(source.roots, "d/0.jpg", 200)
    assert frame == (60.0, 30.0) and image.shape == (30, 60, 3)
    assert load_image(source.roots, "../secret.png", 200) is None


def test_pxap_precision_recall_curve_is_drawn_when_the_report_holds_it(raccoon_report,
                                                                        tmp_path):
    folder = tmp_path / "masks"
    shutil.copytree(raccoon_report, folder)
    with open(folder / "summary.csv", "a") as handle:
        handle.write("pxap,61.5,,,wsoleval,16,,\n")
    text = write_score_html(folder).read_text()
    assert "PxAP 61.50" in text and "no pxap_curve.csv" in text
    pd.DataFrame({"threshold": [0.0, 0.5, 1.0], "precision": [0.2, 0.6, 1.0],
                  "recall": [1.0, 0.5, 0.0]}).to_csv(folder / "pxap_curve.csv", index=False)
    text = write_score_html(folder).read_text()
    assert "precision against recall" in text and "no pxap_curve.csv" not in text


def test_renamed_calibrated_rows_are_still_marked(raccoon_report, tmp_path):
    folder = tmp_path / "renamed"
    shutil.copytree(raccoon_report, folder)
    summary = pd.read_csv(folder / "summary.csv")
    summary["metric"] = summary["metric"].str.replace("best_", "calibrated_")
    summary.to_csv(folder / "summary.csv", index=False)
    marks = dict(parse(write_score_html(folder)).marks)
    assert "calibrated_gt_known_loc" in marks and "max_box_acc_v2@50" in marks


def test_broken_maps_and_images_leave_the_picture_without_them(raccoon_report, tmp_path):
    maps, photos, folder = tmp_path / "maps", tmp_path / "photos", tmp_path / "report"
    shutil.copytree(ReportMeta.read(raccoon_report).run, maps)
    shutil.copytree(ReportMeta.read(raccoon_report).images_root, photos)
    shutil.copytree(raccoon_report, folder)
    picked = gallery.pick_gallery(pd.read_csv(folder / "per_image.csv", dtype={"image": str}))
    first, second = picked["image"].iloc[0], picked["image"].iloc[1]
    (maps / f"{Path(first).stem}.npy").write_bytes(b"not a numpy file")
    np.save(maps / f"{Path(second).stem}.npy", np.zeros((3, 4, 5)))
    (photos / second).write_bytes(b"\xff\xd8 truncated jpeg")
    meta = ReportMeta.read(folder)
    ReportMeta(**{**meta.__dict__, "run": str(maps), "images_root": str(photos)}).write(folder)
    images = {i["alt"]: decode_data_uri(i["src"])
              for i in parse(write_score_html(folder)).gallery_images}
    assert len(images) == len(picked)
    before = {i["alt"]: decode_data_uri(i["src"])
              for i in parse(raccoon_report / "report.html").gallery_images}
    # an unreadable map: the photo alone (no heatmap over it), its boxes still drawn
    assert np.abs(images[first].astype(int) - before[first]).mean() > 20
    assert colour_pixels(images[first], gallery.GT_COLOUR) > 40
    assert colour_pixels(images[second], gallery.GT_COLOUR) > 40
    assert (images[second] == 128).all(axis=2).mean() > 0.5  # neither map nor photo: grey


# --------------------------------------------------------------------------- compare


def test_compare_page_puts_each_methods_map_side_by_side(raccoon_report, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(raccoon_report, other)
    per_image = pd.read_csv(other / "per_image.csv", dtype={"image": str})
    per_image["iou"] = per_image["iou"].to_numpy()[::-1]  # disagree on purpose
    per_image.to_csv(other / "per_image.csv", index=False)
    leaderboard = pd.DataFrame({"report": ["report", "other"], "max_box_acc_v2": [51.5, 40.0]})
    pairs = pd.DataFrame({"report": ["other"], "diff": [-11.5], "p_mcnemar": [0.03125]})
    path = write_compare_html(tmp_path / "cmp", [raccoon_report, other], leaderboard, pairs)
    parsed = parse(path)
    assert len(parsed.gallery_images) == 2 * 8
    text = path.read_text()
    assert "51.50" in text and "0.031" in text
    # every method's own chosen threshold marked on the shared curves
    assert sum(metric == "max_box_acc_v2@50" for metric, _ in parsed.marks) == 2
    mine = pd.read_csv(raccoon_report / "per_image.csv", dtype={"image": str})
    spread = (per_image.set_index("image")["iou"] - mine.set_index("image")["iou"]).abs()
    assert spread[parsed.gallery_images[0]["alt"]] == spread.max() > 0.3
    assert spread[parsed.gallery_images[-1]["alt"]] <= spread.sort_values().iloc[-8]


# --------------------------------------------------------------------------- gallery functions


def test_pick_gallery_is_bounded_and_covers_worst_best_and_error_types():
    rng = np.random.default_rng(0)
    n = 50_000
    table = pd.DataFrame({"image": [f"i{k:05d}.jpg" for k in range(n)],
                          "iou": rng.uniform(0, 1, n).round(4),
                          "error": rng.choice(["correct"] + gallery.ERROR_TYPES, n)})
    picked = gallery.pick_gallery(table)
    assert len(picked) <= 36 and picked["image"].is_unique
    assert picked["iou"].iloc[0] == table["iou"].min()
    assert picked[picked["reason"] == "best IoU"]["iou"].iloc[0] == table["iou"].max()
    for kind in gallery.ERROR_TYPES:
        assert (picked["reason"] == f"error: {kind}").sum() == 3
        assert (picked.loc[picked["reason"] == f"error: {kind}", "error"] == kind).all()
    shuffled = gallery.pick_gallery(table.sample(frac=1, random_state=1))
    assert shuffled["image"].tolist() == picked["image"].tolist()


def test_thumbnail_draws_boxes_where_they_are_in_original_pixels():
    thumb = gallery.thumbnail(None, None, (400, 200), np.array([[0, 0, 200, 100]]),
                              np.array([[200, 100, 400, 200]]), side=200)
    assert thumb.shape == (100, 200, 3)
    assert (thumb[0, 0:100] == gallery.GT_COLOUR).all()
    assert (thumb[0:50, 1] == gallery.GT_COLOUR).all()
    assert (thumb[99, 100:200] == gallery.PREDICTED_COLOUR).all()
    assert (thumb[60, 60] == 128).all()  # inside: untouched grey
    cam = np.zeros((7, 7))
    cam[3, 3] = 1
    heat = gallery.thumbnail(None, cam, (70, 70), np.zeros((0, 4)), np.zeros((0, 4)), side=70)
    assert heat[35, 35, 0] > 100 and heat[2, 2, 2] > 100  # red centre, blue corner


def test_pick_disagreements_orders_by_spread():
    ious = pd.DataFrame({"a": [0.1, 0.9, 0.5, np.nan], "b": [0.8, 0.85, 0.5, 0.0]},
                        index=["x", "y", "z", "w"])
    assert gallery.pick_disagreements(ious, 2) == ["x", "y"]
    assert gallery.pick_disagreements(ious[["a"]]) == []


def test_wsoleval_frame_round_trip():
    box = gallery.wsoleval_to_original(np.array([0, 0, 224, 112]), 500, 300)
    assert box.tolist() == [[0, 0, 500, 150]]  # as score's orig_x1 = x1 * 500 / 224


# --------------------------------------------------------------------------- Chromium


class DevTools:
    """The smallest client of Chromium's DevTools protocol over a local websocket
    (stdlib only): send commands, collect events."""

    def __init__(self, url: str):
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.events: list[dict] = []
        self.next_id = 0

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            assert chunk, "DevTools closed the connection"
            data += chunk
        return data

    def _message(self) -> dict:
        payload = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(self._read(2), "big")
            elif length == 127:
                length = int.from_bytes(self._read(8), "big")
            payload += self._read(length)
            if first & 0x80:  # FIN
                return json.loads(payload)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        body = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        size = len(body)
        header = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else
                                  bytes([0x80 | 126]) + size.to_bytes(2, "big"))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
        self.sock.sendall(header + mask + masked)
        while True:
            message = self._message()
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, seconds: float = 30) -> None:
        deadline = time.time() + seconds
        while not any(e.get("method") == method for e in self.events):
            assert time.time() < deadline, f"no {method}"
            self.events.append(self._message())


def start_chromium(profile: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--hide-scrollbars", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "about:blank"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.time() + 180  # a loaded machine starts Chromium slowly
    while time.time() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stderr], [], [], 1.0)
        found = re.search(r"DevTools listening on (ws://[^\s]+)",
                          process.stderr.readline() if ready else "")
        if found:  # keep reading its log so that a full pipe never stalls it
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, found.group(1)
    code = process.poll()
    process.kill()
    pytest.fail(f"chromium did not start its DevTools server (exit status {code})")


def open_in_chromium(page: Path, scratch: Path) -> tuple[list[dict], list, np.ndarray]:
    """Load `page` in headless Chromium: the problems it reported (failed requests,
    exceptions, console and log errors or warnings), each gallery image's [loaded, left,
    top, width, height], and a full-page RGB screenshot (also saved as scratch/page.png)."""
    process, browser_url = start_chromium(Path(tempfile.mkdtemp(dir=scratch)))
    try:
        port = urlparse(browser_url).port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as answer:
            target = next(t for t in json.load(answer) if t["type"] == "page")
        tab = DevTools(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Network", "Runtime", "Log"):
            tab.call(f"{domain}.enable")
        tab.call("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                 deviceScaleFactor=1, mobile=False)
        tab.call("Page.navigate", url=page.resolve().as_uri())
        tab.wait_for("Page.loadEventFired")
        loaded = tab.call("Runtime.evaluate", returnByValue=True, expression=(
            "JSON.stringify([...document.querySelectorAll('#gallery img')].map(i => {"
            "const r = i.getBoundingClientRect(); return [i.complete && i.naturalWidth > 0,"
            " r.left + scrollX, r.top + scrollY, r.width, r.height]; }))"))
        size = tab.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = tab.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": size["width"],
                              "height": size["height"], "scale": 1})
    finally:
        process.kill()
        process.wait()
    png = base64.b64decode(shot["data"])
    (scratch / "page.png").write_bytes(png)
    screenshot = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR),
                              cv2.COLOR_BGR2RGB)
    problems = [e for e in tab.events
                if e.get("method") in ("Network.loadingFailed", "Runtime.exceptionThrown")
                or (e.get("method") == "Runtime.consoleAPICalled"
                    and e["params"]["type"] in ("error", "warning", "assert"))
                or (e.get("method") == "Log.entryAdded"
                    and e["params"]["entry"]["level"] in ("error", "warning"))]
    return problems, json.loads(loaded["result"]["value"]), screenshot


needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Chromium is not installed (Debian: apt-get install chromium)")


@needs_chromium
def test_chromium_check_sees_a_broken_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><section id="gallery">'
                    '<img src="missing.png"></section>'
                    '<script>console.error("boom")</script></body></html>')
    problems, images, _ = open_in_chromium(page, tmp_path)
    methods = {e["method"] for e in problems}
    assert {"Network.loadingFailed", "Runtime.consoleAPICalled"} <= methods, problems
    assert images[0][0] is False


@needs_chromium
def test_page_loads_in_chromium_with_every_thumbnail_and_its_boxes(raccoon_report, tmp_path):
    problems, images, screenshot = open_in_chromium(raccoon_report / "report.html", tmp_path)
    assert not problems, problems
    expected = len(gallery.pick_gallery(pd.read_csv(raccoon_report / "per_image.csv")))
    assert len(images) == expected and all(ok for ok, *_ in images)
    for _, left, top, width, height in images:
        assert max(width, height) >= 190
        crop = screenshot[int(top):int(top + height), int(left):int(left + width)]
        assert colour_pixels(crop, gallery.GT_COLOUR) > 40
        assert colour_pixels(crop, gallery.PREDICTED_COLOUR) > 20
