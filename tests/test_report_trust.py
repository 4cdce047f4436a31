"""What report.html and compare say about a report must be what the numbers are: the
coverage ("N of M annotated images"), the CAM threshold of every threshold-dependent
figure and where it came from, the photo under each gallery map, IoUs that do not round
across 0.5, and a compare page a reader can take in."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from test_compare import GRID, method_bits, write_report
from test_report_html import decode_data_uri, make_raccoon_report, parse

from acol_eval.comparison.compare import CompareConfig, run
from acol_eval.maps.reportfolder import Outcomes, ReportMeta
from acol_eval.report import gallery
from acol_eval.report.htmlreport import write_score_html
from conftest import assert_one_line_error, run_cli


class Tables(HTMLParser):
    """Per section id: every table's header cells (text, <br> as ' | ') and row cells."""

    def __init__(self):
        super().__init__()
        self.section = None
        self.tables: dict[str, list[dict]] = {}
        self.cell: list[str] | None = None
        self.cards: dict[str, str] = {}
        self.card: str | None = None
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
        if tag == "table":
            self.tables.setdefault(self.section, []).append({"head": [], "rows": []})
        if tag == "tr" and self.section in self.tables:
            self.tables[self.section][-1]["rows"].append([])
        if tag in ("td", "th"):
            self.cell = []
        if tag == "br" and self.cell is not None:
            self.cell.append(" | ")
        if tag == "small" and self.cell is not None:
            self.cell.append(" ")
        if "data-card" in attrs:
            self.card, self.depth = attrs["data-card"], 0
            self.cards[self.card] = ""
        if self.card is not None and tag == "div":
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            table = self.tables[self.section][-1]
            text = " ".join("".join(self.cell).split())
            (table["head"] if tag == "th" else table["rows"][-1]).append(text)
            self.cell = None
        if self.card is not None and tag == "div":
            self.depth -= 1
            if self.depth == 0:
                self.card = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        if self.card is not None:
            self.cards[self.card] += data + " "


def tables_of(page: Path) -> Tables:
    parser = Tables()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def section_text(page: Path, anchor: str) -> str:
    text = page.read_text(encoding="utf-8")
    found = re.search(rf'<section id="{anchor}">(.*?)</section>', text, re.S)
    assert found, anchor
    return found.group(1)


# --------------------------------------------------------------------------- coverage


def partial_pair(tmp_path: Path, scored: int = 40, annotated: int = 100, other=None):
    """Two reports of one annotation source, `scored` of `annotated` images each (the
    second: `other` images, default the same)."""
    rng = np.random.default_rng(0)
    names = [f"img{i:03d}.jpg" for i in range(annotated)]
    a = write_report(tmp_path / "cam", names[:scored], digest="a" * 64, annotated=annotated,
                     subset="allow-missing", **method_bits(rng, scored, 0.35))
    theirs = names[:other] if other else names[:scored]
    b = write_report(tmp_path / "acol", theirs, digest=("b" if other else "a") * 64,
                     annotated=annotated,
                     subset="allow-missing", **method_bits(rng, len(theirs), 0.5))
    return a, b


def test_compare_refuses_reports_of_different_coverage_in_one_line(tmp_path):
    part, whole = partial_pair(tmp_path, scored=40, annotated=50, other=50)
    out = tmp_path / "cmp"
    result = run_cli("compare", str(part), str(whole), "--out", str(out), "--bootstrap", "1000")
    assert_one_line_error(result, 2, f"{part} (40 of 50 annotated images)",
                          f"{whole} (50 of 50 annotated images)")
    assert not out.exists()  # refused before --out is touched


def test_same_images_of_annotated_splits_of_other_sizes_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    names = [f"i{k}" for k in range(30)]
    a = write_report(tmp_path / "a", names, annotated=30, **method_bits(rng, 30, 0.4))
    b = write_report(tmp_path / "b", names, annotated=300, subset="image-list",
                     **method_bits(rng, 30, 0.4))
    with pytest.raises(Exception, match=r"30 of 30 annotated images.*30 of 300 annotated"):
        run(CompareConfig(reports=(str(a), str(b)), out=str(tmp_path / "cmp"), bootstrap=0),
            log=lambda line: None)


def test_partial_reports_of_equal_coverage_say_n_of_m_everywhere(tmp_path):
    a, b = partial_pair(tmp_path, scored=40, annotated=100)
    out = tmp_path / "cmp"
    result = run_cli("compare", str(a), str(b), "--out", str(out), "--bootstrap", "1000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("40 of 100 annotated images (partial")
    assert result.stdout.strip().splitlines()[-1].startswith(
        f"wrote {out}/leaderboard.csv, pairs.csv and report.html")
    board = pd.read_csv(out / "leaderboard.csv")
    assert board["coverage"].tolist() == ["40 of 100 annotated images"] * 2
    assert board["annotated"].tolist() == [100, 100] and board["images"].tolist() == [40, 40]
    # where each row's thresholds came from, beside the figures
    assert board["threshold"].tolist() == [0.2, 0.2]
    assert board["threshold_source"].tolist() == ["fixed"] * 2
    assert board["best_threshold_source"].tolist() == ["oracle"] * 2
    page = (out / "report.html").read_text()
    assert 'id="partial"' in page and "Partial: 40 of 100 annotated images" in page


def test_compare_help_names_report_html():
    result = run_cli("compare", "--help")
    assert result.returncode == 0
    assert "report.html" in result.stdout and "95%%" not in result.stdout


def small_report(folder: Path, images: int = 12, annotated: int = 100, **meta) -> Path:
    rng = np.random.default_rng(2)
    names = [f"p{k:02d}.jpg" for k in range(images)]
    write_report(folder, names, annotated=annotated, subset="allow-missing",
                 **method_bits(rng, images, 0.4))
    if meta:
        old = ReportMeta.read(folder)
        ReportMeta(**{**old.__dict__, **meta}).write(folder)
    return folder


def test_score_page_headline_says_n_of_m_with_a_banner(tmp_path):
    page = write_score_html(small_report(tmp_path / "r", images=12, annotated=100))
    assert "12 of 100 annotated images" in section_text(page, "metrics")
    text = page.read_text()
    banner = re.search(r'<div class="banner" id="partial">(.*?)</div>', text, re.S)
    assert banner and "12 of 100 annotated images" in banner.group(1)
    assert "--allow-missing" in banner.group(1)
    assert text.index('id="partial"') < text.index('<section id="metrics">')
    whole = write_score_html(small_report(tmp_path / "w", images=12, annotated=12))
    assert 'id="partial"' not in whole.read_text()
    assert "12 of 12 annotated images" in section_text(whole, "metrics")


# --------------------------------------------------------------------------- thresholds


def test_cards_show_every_metric_row_with_its_threshold_and_source(tmp_path):
    folder = small_report(tmp_path / "r", images=12, annotated=12)
    summary = pd.read_csv(folder / "summary.csv")
    summary["metric"] = summary["metric"].replace({"gt_known_loc": "agnostic_loc"})
    summary["threshold_source"] = np.where(summary["threshold"].notna(), "oracle", "")
    summary.loc[summary["metric"] == "agnostic_loc", "threshold_source"] = "calibrated"
    best = summary[summary["metric"] == "agnostic_loc"].assign(
        metric="best_agnostic_loc", value=77.5, threshold=0.61, threshold_source="oracle")
    extra = best.assign(metric="new_metric", value=12.25, threshold=np.nan)
    pd.concat([summary, best, extra]).to_csv(folder / "summary.csv", index=False)
    cards = tables_of(write_score_html(folder)).cards
    assert "Class-agnostic Loc (top-1 map)" in cards["agnostic_loc"]
    assert "at CAM threshold 0.200 (calibrated on validation images)" in " ".join(
        cards["agnostic_loc"].split())
    assert "Class-agnostic Loc (top-1 map) at the oracle threshold" in cards[
        "best_agnostic_loc"]
    assert "77.50" in cards["best_agnostic_loc"] and "0.610" in cards["best_agnostic_loc"]
    assert "12.25" in cards["new_metric"]
    assert "gt_known_loc" not in cards


def class_report(folder: Path, per_class_format: str) -> tuple[Path, dict]:
    """A report of two classes whose GT-known Loc differs between the fixed (0.2) and the
    oracle threshold; per_class.csv written as score writes it: 'headline' (at the
    headline threshold, with threshold_source and a best_ column) or 'oracle' (at the
    oracle threshold under the headline's name, as reports used to be)."""
    n = 40
    labels = ["cat"] * 20 + ["dog"] * 20
    v1 = np.zeros((n, len(GRID)), bool)
    fixed, oracle = 20, 50  # GRID[20] = 0.2, GRID[50] = 0.5
    v1[:5, fixed] = True          # cat: 5 of 20 at 0.2
    v1[20:35, fixed] = True       # dog: 15 of 20 at 0.2
    v1[:18, oracle] = True        # cat: 18 of 20 at 0.5
    v1[20:34, oracle] = True      # dog: 14 of 20 at 0.5
    v2 = np.stack([v1, v1, v1])
    write_report(folder, [f"x{k}.jpg" for k in range(n)], v1, v2, labels=labels,
                 annotated=n)
    truth = {"fixed": {"cat": 25.0, "dog": 75.0}, "oracle": {"cat": 90.0, "dog": 70.0}}
    summary = pd.read_csv(folder / "summary.csv").set_index("metric")
    assert summary.at["gt_known_loc", "threshold"] == pytest.approx(0.2)
    assert summary.at["max_box_acc", "threshold"] == pytest.approx(0.5)
    rows = pd.DataFrame({"class": ["cat", "dog"], "count": [20, 20]})
    if per_class_format == "headline":
        rows["gt_known_loc"] = [truth["fixed"][c] for c in rows["class"]]
        rows["best_gt_known_loc"] = [truth["oracle"][c] for c in rows["class"]]
        rows["threshold"], rows["threshold_source"] = 0.2, "fixed"
    else:
        rows["gt_known_loc"] = [truth["oracle"][c] for c in rows["class"]]
        rows["threshold"] = 0.5
    rows.to_csv(folder / "per_class.csv", index=False)
    return folder, truth


def per_class_columns(page: Path) -> dict[str, dict[str, str]]:
    """header text -> {class: cell} of the per-class table."""
    table = tables_of(page).tables["classes"][0]
    head = table["head"]
    return {h: {row[0]: row[i] for row in table["rows"] if row} for i, h in enumerate(head)}


def test_per_class_table_is_at_the_headline_threshold_and_says_so(tmp_path):
    folder, truth = class_report(tmp_path / "r", "headline")
    columns = per_class_columns(write_score_html(folder))
    fixed = [h for h in columns if h.startswith("gt_known_loc")]
    assert fixed == ["gt_known_loc | at 0.200, fixed"]
    assert {c: float(v) for c, v in columns[fixed[0]].items()} == truth["fixed"]
    oracle = [h for h in columns if h.startswith("best_gt_known_loc")]
    assert len(oracle) == 1 and "oracle" in oracle[0]
    assert {c: float(v) for c, v in columns[oracle[0]].items()} == truth["oracle"]
    assert "Figures at CAM threshold 0.200 (the headline's), fixed" in section_text(
        folder / "report.html", "classes")


def test_per_class_figures_at_the_oracle_threshold_are_never_shown_as_the_headlines(
        tmp_path):
    folder, truth = class_report(tmp_path / "r", "oracle")
    page = write_score_html(folder)
    columns = per_class_columns(page)
    assert not [h for h in columns if h.startswith("gt_known_loc")]
    oracle = [h for h in columns if h.startswith("best_gt_known_loc")]
    assert oracle == ["best_gt_known_loc | oracle threshold 0.500"]
    assert {c: float(v) for c, v in columns[oracle[0]].items()} == truth["oracle"]
    assert "not at the headline's 0.200" in section_text(page, "classes")


def test_per_class_table_of_a_real_score_report_names_its_threshold(tmp_path):
    """Whatever threshold score writes per_class.csv at, the page's plain gt_known_loc
    column holds the headline threshold's figure and an oracle figure is named so."""
    report = make_raccoon_report(tmp_path, count=24)
    page = write_score_html(report)
    outcomes = Outcomes.read(report)
    summary = pd.read_csv(report / "summary.csv").set_index("metric")
    at = {name: int(np.argmin(np.abs(outcomes.thresholds - summary.at[name, "threshold"])))
          for name in ("gt_known_loc", "best_gt_known_loc")}
    figure = {name: outcomes.v1[:, index].mean() * 100 for name, index in at.items()}
    assert abs(figure["gt_known_loc"] - figure["best_gt_known_loc"]) > 1  # tells apart
    columns = per_class_columns(page)
    for header, cells in columns.items():
        name = header.split(" | ")[0]
        if name in ("gt_known_loc", "best_gt_known_loc"):
            assert float(cells["raccoon"]) == pytest.approx(figure[name], abs=0.006), header
            assert (f"{summary.at[name, 'threshold']:.3f}" in header) or name.startswith(
                "best_") and "oracle" in header
    assert any(h.split(" | ")[0] in figure for h in columns)


# --------------------------------------------------------------------------- gallery


def gallery_report(tmp_path: Path, iou: float = 0.4969, link: bool = True) -> Path:
    """A one-image report whose photo is reached through a link to a folder outside
    the image root, and whose map is a constant (a heatmap alone is one colour)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    photo = np.zeros((100, 200, 3), np.uint8)
    photo[:, 100:] = 255  # dark left half, white right half
    cv2.imwrite(str(elsewhere / "real.png"), photo)
    root = tmp_path / "photos" / "d"
    root.mkdir(parents=True)
    if link:
        (root / "0.png").symlink_to(elsewhere / "real.png")
    else:
        cv2.imwrite(str(root / "0.png"), photo)
    run_folder = tmp_path / "run" / "d"
    run_folder.mkdir(parents=True)
    np.save(run_folder / "0.npy", np.ones((7, 7), np.float32))
    report = tmp_path / "report"
    report.mkdir()
    pd.DataFrame({"image": ["d/0.png"], "label": ["cat"], "threshold": [0.5],
                  "iou": [iou], "correct": [int(iou >= 0.5)], "error": ["mislocated"],
                  "x0": [0], "y0": [0], "x1": [50], "y1": [50], "frame": ["original"]}
                 ).to_csv(report / "per_image.csv", index=False)
    ReportMeta(protocol="native", annotations="", annotations_digest="-",
               run=str(tmp_path / "run"), images_root=str(tmp_path / "photos"),
               images=1).write(report)
    return report


def test_gallery_shows_the_photo_of_an_image_folder_of_links(tmp_path):
    from acol_eval.report.gallerypage import load_image

    report = gallery_report(tmp_path)
    images = parse(write_score_html(report)).gallery_images
    assert len(images) == 1
    thumb = decode_data_uri(images[0]["src"]).astype(float)
    left, right = thumb[:, 60:90].mean(), thumb[:, 110:190].mean()
    assert right - left > 60  # the white half of the photo shows through the map
    # the name is what is checked: one that leaves its root is still refused
    (tmp_path / "photos" / "secret.png").write_bytes((tmp_path / "elsewhere" /
                                                     "real.png").read_bytes())
    assert load_image([tmp_path / "photos" / "d"], "../secret.png", 50) is None
    assert load_image([tmp_path / "photos"], str(tmp_path / "photos" / "secret.png"),
                      50) is None
    assert load_image([tmp_path / "photos"], "d/0.png", 50)[1] == (200.0, 100.0)


def test_an_iou_under_half_never_reads_as_half():
    from acol_eval.report.htmlparts import fmt_iou

    assert fmt_iou(0.4969) == "0.496" and fmt_iou(0.49996) == "0.499"
    assert fmt_iou(0.7) == "0.700" and fmt_iou(1.0) == "1.000" and fmt_iou(0.5) == "0.500"
    assert fmt_iou(float("nan")) == ""


def test_gallery_caption_of_an_iou_under_half(tmp_path):
    text = section_text(write_score_html(gallery_report(tmp_path, link=False)), "gallery")
    caption = re.search(r"<figcaption>(.*?)</figcaption>", text, re.S).group(1)
    assert "IoU <b>0.496</b> &middot; mislocated" in caption
    assert "0.50" not in caption
    # one image, said in the singular
    assert "Gallery (1 image)" in text


def test_worst_iou_strip_shows_only_missed_images():
    table = pd.DataFrame({"image": [f"i{k}" for k in range(10)],
                          "iou": [1.0] * 8 + [0.3, 0.6], "correct": [1] * 8 + [0, 0]})
    picked = gallery.pick_gallery(table, worst=6, best=6)
    worst = picked[picked["reason"] == "worst IoU"]
    assert worst["image"].tolist() == ["i8", "i9"]  # 0.6 but not found: still a miss
    assert (picked.loc[picked["reason"] == "best IoU", "correct"] == 1).all()
    found = table.assign(correct=1)
    assert "worst IoU" not in gallery.pick_gallery(found)["reason"].tolist()
    no_column = table.drop(columns="correct")
    assert gallery.pick_gallery(no_column, worst=6)["reason"].tolist().count(
        "worst IoU") == 1


def test_one_class_is_said_in_the_singular(tmp_path):
    folder, _ = class_report(tmp_path / "r", "headline")
    per_class = pd.read_csv(folder / "per_class.csv").iloc[:1]
    per_class.to_csv(folder / "per_class.csv", index=False)
    text = section_text(write_score_html(folder), "classes")
    assert "1 class," in text and "1 classes" not in text


# --------------------------------------------------------------------------- compare page


def test_compare_page_leads_with_a_pivot_and_explains_every_column(tmp_path):
    from acol_eval.report.comparepage import explain

    a, b = partial_pair(tmp_path, scored=120, annotated=120)
    result = run(CompareConfig(reports=(str(a), str(b)), out=str(tmp_path / "cmp"),
                               bootstrap=1000), log=lambda line: None)
    page = tmp_path / "cmp" / "report.html"
    text = page.read_text()
    assert text.index('<section id="summary">') < text.index('<section id="columns">') \
        < text.index('<section id="tables">')
    pivot = tables_of(page).tables["summary"][0]
    head = [h.split(" | ")[0] for h in pivot["head"]]
    assert head == ["method", "MaxBoxAccV2", "MaxBoxAcc", "McNemar", "Top-1 Loc",
                    "Top-1 Loc at the oracle threshold", "GT-known Loc", "Top-1 cls"]
    rows = {r[0].split(" ")[0]: r for r in pivot["rows"] if r}
    board = result.leaderboard.set_index("method")
    pairs = result.pairs.iloc[0]
    cell = rows["acol"][head.index("MaxBoxAccV2")]
    value = board.at["acol", "max_box_acc_v2"]
    assert cell.startswith(f"{value:.2f} 95% CI [{board.at['acol', 'max_box_acc_v2_ci_low']:.2f}")
    assert (f"Δ {pairs['max_box_acc_v2_diff']:+.2f} [{pairs['max_box_acc_v2_diff_ci_low']:.2f}"
            in cell)
    assert "each IoU at its own, oracle" in cell
    assert "at 0.200, fixed" in rows["acol"][head.index("GT-known Loc")]
    mcnemar = rows["acol"][head.index("McNemar")]
    assert mcnemar.startswith(f"p = {pairs['mcnemar_p']:.3g}")
    assert f"{int(pairs['mcnemar_method_only'])} only here" in mcnemar
    assert rows["cam"][head.index("McNemar")] == "reference"
    legend = section_text(page, "columns")
    assert "<dt>*_optimism</dt>" in legend and "inflates an oracle metric" in legend
    for column in [*pd.read_csv(tmp_path / "cmp" / "leaderboard.csv").columns,
                   *pd.read_csv(tmp_path / "cmp" / "pairs.csv").columns]:
        shown, _ = explain(column)
        assert f"<dt>{shown}</dt>" in legend, column
    assert "<details><summary>leaderboard.csv" in section_text(page, "tables")
