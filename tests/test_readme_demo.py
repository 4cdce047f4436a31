"""The README's demo block against the demo's output (benchmarks/check_readme_demo.py):
which fields are compared, what a difference says, and what --write rewrites. The demo
itself trains for minutes; `make demo` runs the check on its real output."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "check_readme_demo", ROOT / "benchmarks" / "check_readme_demo.py")
check_readme_demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_readme_demo)

ROW = "ACoL pn, MobileNetV2 (ImageNet), stride 16"
OUTPUT = f"""\
validation split of the synthetic set (cub:demo-out/data), wsoleval protocol, percent:
| model | Top-1 cls | Top-1 Loc* | MaxBoxAccV2 | GT-known Loc @0.760\u2020 | time |
| --- | --- | --- | --- | --- | --- |
| {ROW} | 98.0 | 57.0 | 58.0 | 58.0 | 2.8 min |
| centre Gaussian baseline | 98.0 | 11.0 | 21.3 | - | 0.0 min |

* at the CAM threshold best for GT-known Loc (IoU 50)

CAM threshold 0.760, calibrated by train: best GT-known Loc 58.0% on 100 validation images \
with boxes (native protocol) of best.pt; how it was chosen: demo-out/train/calibration/report.html
overlays:     demo-out/overlays (boxes at 0.760); at the fixed 0.2: demo-out/overlays-0.2 \
(`acol-eval boxes`, from the map store, no model: 4.8 s)
demo took 2.9 min
"""


def readme_with(block: str) -> str:
    return (f"# tool\n\nintro\n\n{check_readme_demo.START}\n```\n{block.strip()}\n```\n"
            f"{check_readme_demo.END}\n\nafter the block\n")


def test_fields_are_the_threshold_and_table_cells_by_row_and_column_not_timings():
    fields = check_readme_demo.deterministic_fields(OUTPUT)
    assert fields["CAM threshold"] == "0.760"
    assert fields["CAM threshold line, figures"] == "58.0% 100"
    assert fields[f"{ROW} / MaxBoxAccV2"] == "58.0"
    assert fields[f"{ROW} / GT-known Loc @0.760\u2020"] == "58.0"
    assert fields["centre Gaussian baseline / MaxBoxAccV2"] == "21.3"
    assert fields["centre Gaussian baseline / GT-known Loc @0.760\u2020"] == "-"
    assert not [name for name in fields if "time" in name or "min" in fields[name]]
    assert len(fields) == 2 + 2 * 4


def test_timings_and_paths_may_change_metrics_may_not():
    readme = check_readme_demo.deterministic_fields(OUTPUT)
    rerun = (OUTPUT.replace("2.8 min", "6.1 min").replace("4.8 s", "9.9 s")
             .replace("demo-out", "/tmp/elsewhere").replace("2.9 min", "7.0 min"))
    assert check_readme_demo.differences(readme, check_readme_demo.deterministic_fields(rerun)) \
        == []
    changed = OUTPUT.replace("| 21.3 |", "| 21.4 |")
    assert check_readme_demo.differences(
        readme, check_readme_demo.deterministic_fields(changed)) == [
        "centre Gaussian baseline / MaxBoxAccV2: README 21.3, demo 21.4"]


def test_columns_are_matched_by_name_so_a_reordered_or_added_column_is_not_misread():
    reordered = OUTPUT.replace("| Top-1 Loc* | MaxBoxAccV2 |", "| MaxBoxAccV2 | Top-1 Loc* |") \
        .replace("| 57.0 | 58.0 |", "| 58.0 | 57.0 |").replace("| 11.0 | 21.3 |", "| 21.3 | 11.0 |")
    readme = check_readme_demo.deterministic_fields(OUTPUT)
    assert check_readme_demo.differences(
        readme, check_readme_demo.deterministic_fields(reordered)) == []
    added = (OUTPUT.replace("| time |", "| coverage | time |")
             .replace("| --- |\n", "| --- | --- |\n")
             .replace("| 2.8 min |", "| 100 of 100 | 2.8 min |")
             .replace("| 0.0 min |", "| 100 of 100 | 0.0 min |"))
    found = check_readme_demo.differences(readme, check_readme_demo.deterministic_fields(added))
    assert found == [f"{ROW} / coverage: README -, demo 100 of 100",
                     "centre Gaussian baseline / coverage: README -, demo 100 of 100"]


def test_a_whole_log_is_read_from_the_summary_on():
    log = ("$ acol-eval train ...\n| epoch | loss |\n| --- | --- |\n| 1 | 0.93 |\n\n"
           "CAM threshold 0.5 (checkpoint)\n" + OUTPUT)
    assert check_readme_demo.deterministic_fields(log) == \
        check_readme_demo.deterministic_fields(OUTPUT)


def test_check_exits_1_with_one_line_naming_the_field_and_2_without_a_block(tmp_path, capsys):
    readme, output = tmp_path / "README.md", tmp_path / "demo-output.txt"
    output.write_text(OUTPUT)
    readme.write_text(readme_with(OUTPUT))
    assert check_readme_demo.main([str(output), "--readme", str(readme)]) == 0
    readme.write_text(readme_with(OUTPUT.replace("0.760", "0.728")))
    capsys.readouterr()
    assert check_readme_demo.main([str(output), "--readme", str(readme)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "CAM threshold: README 0.728, demo 0.760" in err
    readme.write_text("# tool\n\nno block here\n")
    assert check_readme_demo.main([str(output), "--readme", str(readme)]) == 2
    assert "demo-output:start" in capsys.readouterr().err


def test_write_replaces_only_the_block_and_then_the_check_passes(tmp_path):
    readme, output = tmp_path / "README.md", tmp_path / "demo-output.txt"
    readme.write_text(readme_with("| model | MaxBoxAccV2 |\n| --- | --- |\n| old | 1.0 |"))
    output.write_text("$ acol-eval localize ...\nlocalized 100 images\n\n" + OUTPUT)
    assert check_readme_demo.main([str(output), "--readme", str(readme), "--write"]) == 0
    text = readme.read_text()
    assert text.startswith("# tool\n\nintro\n\n") and text.endswith("\nafter the block\n")
    assert "localized 100 images" not in text and "| old |" not in text
    assert check_readme_demo.main([str(output), "--readme", str(readme)]) == 0


def test_the_readme_holds_a_demo_block_the_check_can_read():
    block = check_readme_demo.readme_block((ROOT / "README.md").read_text(encoding="utf-8"))
    fields = check_readme_demo.deterministic_fields(block)
    assert float(fields["CAM threshold"]) > 0
    assert any(name.endswith(" / MaxBoxAccV2") for name in fields)


def test_an_output_without_a_table_is_refused():
    with pytest.raises(check_readme_demo.DemoBlockError):
        check_readme_demo.deterministic_fields("demo took 2.9 min\n")
