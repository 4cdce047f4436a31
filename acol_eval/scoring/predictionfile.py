"""A classifier's predictions for maps from other tools (`score MAPS --predictions FILE`).

A folder of `.npy` maps carries no classification, so Top-1 and Top-5 Loc cannot be
told from it. FILE gives it in the layout `localize` writes predictions.csv:

    image,pred_1,pred_2,...,pred_k      (more columns are ignored)

`image` names an annotated image as the annotations write it, with or without its
extension (as the maps may); pred_1 is the top-1 class. Classes are written as the
annotations write their labels (a class name for cub/csv/folder sources, the class id
of class_labels.txt for wsol metadata) and compared as text. Only pred_1..pred_5 are
read; with fewer than five (and more classes than that) Top-5 is not reported.

Refused in one line: a file that is not a CSV with `image` and `pred_1`, larger than
MAX_BYTES or MAX_ROWS, an image named twice, an image the annotations do not know, a
scored image without a row, classes none of which is an annotation label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from acol_eval.data.readers import Annotations
from acol_eval.util.csvtext import unescape_frame
from acol_eval.util.errors import AcolError
from acol_eval.util.safeio import check_input_file

MAX_BYTES = 1 << 30
MAX_ROWS = 5_000_000  # ten ImageNet validation sets: a larger file is not predictions
TOP_K = 5  # Top-5 needs five; a localize predictions.csv may have more


def read_predictions(path: str | Path) -> pd.DataFrame:
    """FILE as text columns image, pred_1..pred_k (k <= 5), one row per image."""
    flag = f"--predictions {path}"
    try:
        file = check_input_file(path, flag, MAX_BYTES)
        header = list(pd.read_csv(file, nrows=0).columns)
        preds = [f"pred_{k}" for k in range(1, TOP_K + 1) if f"pred_{k}" in header]
        if "image" not in header or "pred_1" not in header:
            raise AcolError(f"{flag}: needs the columns image and pred_1 (image,pred_1,"
                            f"...,pred_k as localize writes predictions.csv)")
        table = unescape_frame(pd.read_csv(file, usecols=["image", *preds], dtype=str,
                                           keep_default_na=False, nrows=MAX_ROWS + 1))
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise AcolError(f"{flag}: not a readable CSV "
                        f"({getattr(exc, 'strerror', None) or exc})") from None
    if len(table) > MAX_ROWS:
        raise AcolError(f"{flag}: more than {MAX_ROWS} rows")
    table = table[["image", *_leading(preds)]]
    table = table.apply(lambda column: column.str.strip())
    twice = table["image"][table["image"].duplicated()]
    if len(twice):
        raise AcolError(f"{flag}: image {twice.iloc[0]!r} has two rows; keep one per image")
    return table.reset_index(drop=True)


def _leading(preds: list[str]) -> list[str]:
    """pred_1, pred_2, ... up to the first gap: a pred_4 without pred_3 is not a rank."""
    kept = []
    for k, name in enumerate(preds, start=1):
        if name != f"pred_{k}":
            break
        kept.append(name)
    return kept


def predictions_for(table: pd.DataFrame, predictions: pd.DataFrame, known: pd.Series,
                    labels: pd.Series, path: str) -> np.ndarray:
    """(n, k) text predictions for the scored images `table['image']` (annotation names),
    read from FILE rows named like the annotations (`known`: every image name of the
    source) with or without the extension. `labels`: the source's labels."""
    flag = f"--predictions {path}"
    by_name = dict(zip(known, known))
    by_stem = dict(zip(known.map(_strip_ext), known))
    named = predictions["image"].map(lambda n: by_name.get(n) or by_stem.get(n))
    unknown = predictions["image"][named.isna()]
    if len(unknown):
        raise AcolError(f"{flag}: {len(unknown)} image{'s' if len(unknown) > 1 else ''} the "
                        f"annotations do not know (e.g. {unknown.iloc[0]!r}; they write "
                        f"names like {known.iloc[0] if len(known) else None!r})")
    twice = named[named.duplicated()]
    if len(twice):
        raise AcolError(f"{flag}: image {twice.iloc[0]!r} has two rows (with and without "
                        f"its extension); keep one")
    rows = predictions.drop(columns="image").set_axis(named.to_numpy(), axis=0)
    lacking = table["image"][~table["image"].isin(rows.index)]
    if len(lacking):
        raise AcolError(f"{flag}: no row for {len(lacking)} of the {len(table)} scored "
                        f"images (e.g. {lacking.iloc[0]!r})")
    chosen = rows.loc[table["image"]].to_numpy(dtype=str)
    classes = set(labels.astype(str))
    if chosen.size and not np.isin(chosen, list(classes)).any():
        raise AcolError(f"{flag}: no predicted class is an annotation label (predictions "
                        f"name classes like {chosen[0, 0]!r}, the annotations like "
                        f"{sorted(classes)[0] if classes else None!r}); write classes as "
                        f"the annotations do")
    return chosen


def with_predictions(table: pd.DataFrame, annotations: Annotations, known: pd.Series,
                     path: str) -> pd.DataFrame:
    """`table` (scoring's image table of .npy maps: image, top1, top5) with top1/top5
    from the --predictions file at `path`."""
    ours = table[table["image"].isin(annotations.images["image"])]
    preds = predictions_for(ours, read_predictions(path), known, annotations.images["label"],
                            path)
    labels = ours["image"].map(annotations.images.drop_duplicates("image")
                               .set_index("image")["label"]).astype(str)
    correct = class_correctness(preds, labels.reset_index(drop=True),
                                sorted(set(annotations.images["label"].astype(str))))
    table = table.copy()
    for column in ("top1", "top5"):
        table.loc[ours.index, column] = correct[column]
    return table


def class_correctness(preds: np.ndarray, labels: pd.Series, classes: list[str]
                      ) -> dict[str, np.ndarray]:
    """top1/top5: whether the label is the top-1 / among the top-5 predictions; NaN
    (unknown) where the label is not a class of the model (class-agnostic scoring: no
    class can be right or wrong), and top5 NaN for all when the run kept fewer than
    five predictions of a model with more classes (a top-5 cannot be told from them)."""
    n = len(labels)
    if preds.shape[1] == 0:
        return {"top1": np.full(n, np.nan), "top5": np.full(n, np.nan)}
    truth = labels.to_numpy()[:, None]
    known = labels.isin(classes).to_numpy()
    top1 = np.where(known, preds[:, 0] == truth[:, 0], np.nan)
    top5 = np.where(known, (preds[:, :5] == truth).any(axis=1), np.nan)
    if preds.shape[1] < min(5, len(classes)):
        top5 = np.full(n, np.nan)
    return {"top1": top1, "top5": top5}


def _strip_ext(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name
