"""CSV text a spreadsheet does not evaluate, read back unchanged by acol-eval.

A spreadsheet opening a CSV file evaluates a cell that begins with `=`, `+`, `-` or `@`
(some also after a tab or a carriage return) as a formula, so an image or a class
named `=HYPERLINK(...)` would run when someone opens predictions.csv. Every CSV file
acol-eval writes goes through here, with one rule each way:

- writing (`cell`): a text cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage
  return and is not a plain number (`-0.5` stays a number), or that begins with a
  single quote `'`, is written with a `'` in front (the OWASP advice: a spreadsheet then
  shows the text and hides the quote);
- reading (`text`): a text cell that begins with `'` followed by one of those
  characters (or another `'`) loses that one quote; a quote before anything else is the
  name's own, never one `cell` added, so a `--predictions` file from another tool with
  an image named `'x.jpg` reads as it was written.

So every text reads back as it was written, a name that itself begins with a quote
included (`'x` is written `''x` and read `'x`). Numbers are written and read as they
are. The readers of what acol-eval wrote (run and report folders, the map store,
metrics.csv) read through `text` / `unescape_frame`; annotation files are the user's
and are read as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import IO, Any

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_STARTS = "^[=+\\-@\t\r']"
_ESCAPED = "^'[=+\\-@\t\r']"  # what `cell` wrote: a quote before a trigger


def cell(value: Any) -> Any:
    """A value as written to a CSV file: text that a spreadsheet would evaluate (or that
    begins with a quote) gets a leading `'`; anything else is left as it is."""
    if isinstance(value, str) and value.startswith(TRIGGERS) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


def text(value: Any) -> Any:
    """A value as read from a CSV file acol-eval wrote: the `'` that `cell` added, gone.
    `cell` adds one only before a trigger, so `'x` (no trigger after the quote) is text
    that began with a quote in its own right and is left alone."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(TRIGGERS):
        return value[1:]
    return value


def _has_cr(values: Iterable[Any]) -> bool:
    return any(isinstance(v, str) and "\r" in v for v in values)


class CsvWriter:
    """csv.writer(handle, **kwargs) whose every row goes through `cell`. A row with a
    carriage return in a cell is written with every field quoted: the csv module (and
    pandas) leave a lone CR unquoted with a '\n' line end, and a reader ends the line
    there."""

    def __init__(self, handle: IO[str], **kwargs) -> None:
        import csv

        self._writer = csv.writer(handle, **kwargs)
        self._quoted = csv.writer(handle, **{**kwargs, "quoting": csv.QUOTE_ALL})

    def writerow(self, row: Iterable[Any]):
        row = [cell(v) for v in row]
        return (self._quoted if _has_cr(row) else self._writer).writerow(row)

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(handle: IO[str], **kwargs) -> CsvWriter:
    """csv.writer(handle, **kwargs), every cell through `cell`."""
    return CsvWriter(handle, **kwargs)


def dict_writer(handle: IO[str], fieldnames: list[str], **kwargs):
    """csv.DictWriter(handle, fieldnames, **kwargs), every cell through `cell`."""
    import csv

    writer = csv.DictWriter(handle, fieldnames=fieldnames, **kwargs)
    writer.writer = CsvWriter(handle, **{k: v for k, v in kwargs.items()
                                         if k not in ("restval", "extrasaction")})
    return writer


def _text_columns(frame) -> list:
    return [c for c in frame.columns if frame[c].dtype == object
            or str(frame[c].dtype) in ("string", "str")]


def frame_to_csv(frame, handle: IO[str] | None = None, **kwargs) -> str | None:
    """frame.to_csv(handle, **kwargs) with every text cell through `cell` (the header's
    names too); returns the text when `handle` is None, as to_csv does."""
    import csv

    changed = {}
    for column in _text_columns(frame):
        values = frame[column].astype(str)
        if values.str.contains(_STARTS, regex=True).any():
            changed[column] = frame[column].map(cell)
        if values.str.contains("\r", regex=False).any():  # see CsvWriter
            kwargs.setdefault("quoting", csv.QUOTE_NONNUMERIC)
    if changed or any(isinstance(c, str) and cell(c) != c for c in frame.columns):
        frame = frame.assign(**changed) if changed else frame.copy()
        frame.columns = [cell(c) for c in frame.columns]
    return frame.to_csv(handle, **kwargs)


def unescape_frame(frame):
    """A table read with pandas from a CSV file acol-eval wrote, its text cells (and
    column names) through `text`; the same frame when none begins with a quote."""
    for column in _text_columns(frame):
        values = frame[column]
        if values.astype(str).str.contains(_ESCAPED, regex=True).any():
            frame[column] = values.map(text)
    if any(isinstance(c, str) and text(c) != c for c in frame.columns):
        frame.columns = [text(c) for c in frame.columns]
    return frame
