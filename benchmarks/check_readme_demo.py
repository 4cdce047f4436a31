"""Check that the README's demo block is what the demo prints (its deterministic part).

    .venv/bin/python benchmarks/check_readme_demo.py demo-out/demo-output.txt
    .venv/bin/python benchmarks/check_readme_demo.py demo-out/demo-output.txt --write

OUTPUT is what `benchmarks/demo.py` printed: the file it writes beside its run
(`OUT/demo-output.txt`) or a whole log of the command (`-` reads stdin). The
README holds the demo's output between the lines `<!-- demo-output:start -->`
and `<!-- demo-output:end -->`. The deterministic fields of both are compared:
the CAM threshold localize boxed with, the figures of its calibration line, and
every cell of the headline table, found by row name and column title (so new
columns or renamed metrics are compared, not misread). Timings (the `time`
column, seconds, minutes) and paths are left out: they change from run to run.

Exit status 0 when the fields agree; 1 with one line naming the fields that
differ; 2 when the README has no demo block or OUTPUT holds no demo table.
`--write` replaces the README's block with OUTPUT's summary instead.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = "<!-- demo-output:start -->"
END = "<!-- demo-output:end -->"
# demo.py's summary begins with this line; anything before it (the commands'
# own output in a whole log) is not part of the README's block
SUMMARY_START = "validation split of the synthetic set"
THRESHOLD_LINE = "CAM threshold "
TIME_COLUMNS = {"time"}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?%?")
DURATION = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*(?:s|min|h)\s*$")


class DemoBlockError(Exception):
    """The README or the demo's output holds nothing to compare."""


def summary_part(output: str) -> str:
    """The demo's summary: from the last line that starts it to the end."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(SUMMARY_START)]
    return "\n".join(lines[starts[-1]:] if starts else lines).strip()


def readme_block(readme: str) -> str:
    """The text between the README's markers, without the code fence."""
    if readme.count(START) != 1 or readme.count(END) != 1:
        raise DemoBlockError(f"the README needs exactly one {START} and one {END} line")
    inside = readme.split(START, 1)[1].split(END, 1)[0]
    return "\n".join(line for line in inside.strip().splitlines()
                     if not line.startswith("```"))


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_fields(lines: list[str]) -> dict[str, str]:
    """'row / column' -> cell of every Markdown table, time columns and durations left out."""
    fields: dict[str, str] = {}
    header: list[str] | None = None
    for line in lines:
        if not line.startswith("|"):
            header = None
            continue
        row = cells(line)
        if header is None:
            header = row
        elif not all(set(cell) <= set("-: ") for cell in row):
            for title, cell in zip(header[1:], row[1:]):
                if title.lower() not in TIME_COLUMNS and not DURATION.match(cell):
                    fields[f"{row[0]} / {title}"] = cell
    return fields


def threshold_fields(lines: list[str]) -> dict[str, str]:
    """The CAM threshold, and the figures of the line that says where it came from
    (paths dropped: the output folder is the user's choice)."""
    for line in lines:
        if line.startswith(THRESHOLD_LINE):
            words = [word for word in line[len(THRESHOLD_LINE):].split() if "/" not in word]
            numbers = NUMBER.findall(" ".join(words))
            if numbers:
                return {"CAM threshold": numbers[0],
                        "CAM threshold line, figures": " ".join(numbers[1:])}
    return {}


def deterministic_fields(text: str) -> dict[str, str]:
    """Field name -> value of what a rerun of the demo on any machine must repeat."""
    lines = summary_part(text).splitlines()
    fields = {**threshold_fields(lines), **table_fields(lines)}
    if not any(" / " in name for name in fields):
        raise DemoBlockError("no headline table (a line starting with '|') found")
    return fields


def differences(readme: dict[str, str], demo: dict[str, str]) -> list[str]:
    """'name: README x, demo y' for every field that is not the same in both."""
    found = []
    for name in [*readme, *(n for n in demo if n not in readme)]:
        mine, theirs = readme.get(name, "-"), demo.get(name, "-")
        if mine != theirs:
            found.append(f"{name}: README {mine}, demo {theirs}")
    return found


def replace_block(readme: str, summary: str) -> str:
    readme_block(readme)  # the markers must be there, once each
    head, rest = readme.split(START, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{START}\n```\n{summary}\n```\n{END}{tail}"


def check(output: str, readme_path: Path, write: bool, source: str = "OUTPUT"
          ) -> tuple[int, str]:
    """(exit status, the one line to print)."""
    readme = readme_path.read_text(encoding="utf-8")
    demo = deterministic_fields(output)
    if write:
        readme_path.write_text(replace_block(readme, summary_part(output)), encoding="utf-8")
        return 0, f"{readme_path}: demo block rewritten ({len(demo)} fields)"
    found = differences(deterministic_fields(readme_block(readme)), demo)
    if not found:
        return 0, f"{readme_path}: demo block agrees with the demo's output ({len(demo)} fields)"
    return 1, (f"{readme_path}: demo block differs from the demo's output in {len(found)} "
               f"field(s): {'; '.join(found)} (to regenerate the block: python "
               f"benchmarks/check_readme_demo.py {source} --write)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the demo's printed output (a file, or - for stdin)")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--write", action="store_true",
                        help="rewrite the README's demo block from OUTPUT instead of checking")
    args = parser.parse_args(argv)
    try:
        output = (sys.stdin.read() if args.output == "-"
                  else Path(args.output).read_text(encoding="utf-8"))
        status, line = check(output, args.readme, args.write, args.output)
    except (OSError, DemoBlockError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(line, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
