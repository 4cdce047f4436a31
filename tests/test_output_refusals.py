"""One owner for "this output folder already holds what I would write": every
command's refusal goes through safeio.refuse_existing, with the command's own message,
and a path that is a file where a folder is wanted is refused the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from acol_eval.util import safeio
from acol_eval.util.errors import AcolError


def _compare(out: Path) -> None:
    from acol_eval.comparison.compare import _refuse_overwrite

    _refuse_overwrite(out, False)


def _synth(out: Path) -> None:
    from acol_eval.data.synth import check_out

    check_out(out, False)


def _train(out: Path) -> None:
    from acol_eval.training.trainconfig import TrainConfig, check_out_folder

    check_out_folder(TrainConfig(data="folder:x", out=str(out)))


def _score(out: Path) -> None:
    from acol_eval.scoring.scoring import check_report_folder

    check_report_folder(out, False)


def _boxes(out: Path) -> None:
    from acol_eval.maps.boxesconfig import check_new_folder

    check_new_folder(out, out.parent / "run", "--out")


CASES = {  # check, a file that makes the folder taken, its message (OUT: the folder)
    "compare": (_compare, "pairs.csv", "OUT already holds pairs.csv; pass --overwrite to "
                                       "replace them or choose another --out", "--out OUT"),
    "synth": (_synth, "x.png", "OUT is not empty; choose an empty or new folder, or add "
                               "--overwrite to replace the data set's files in it", "OUT"),
    "train": (_train, "last.pt", "OUT already holds a training run (last.pt); add --resume "
                                 "to continue it or choose another --out", "--out OUT"),
    "score": (_score, "summary.csv", "--out OUT already holds a score report (summary.csv); "
                                     "add --overwrite to replace it, or choose another --out",
              "--out OUT"),
    "boxes": (_boxes, "predictions.csv", "--out OUT exists and is not empty; choose a new "
                                         "folder", "--out OUT"),
}


@pytest.fixture
def calls(monkeypatch) -> list:
    seen = []
    real = safeio.refuse_existing

    def spy(folder, names, allowed, message, label=None):
        seen.append(Path(folder))
        return real(folder, names, allowed, message, label)

    monkeypatch.setattr(safeio, "refuse_existing", spy)
    return seen


@pytest.mark.parametrize("command", sorted(CASES))
def test_every_refusal_of_an_existing_output_has_one_owner(tmp_path, calls, command):
    check, name, message, _ = CASES[command]
    out = tmp_path / "out"
    out.mkdir()
    (out / safeio.LOCK_NAME).write_text("")  # our lock file is no output
    check(out)
    (out / name).write_text("x")
    with pytest.raises(AcolError) as refused:
        check(out)
    assert str(refused.value) == message.replace("OUT", str(out))
    assert calls == [out, out]


@pytest.mark.parametrize("command", sorted(CASES))
def test_a_file_where_the_output_folder_goes_is_refused_alike(tmp_path, calls, command):
    check, _, _, label = CASES[command]
    out = tmp_path / "out"
    out.write_text("a file")
    with pytest.raises(AcolError) as refused:
        check(out)
    assert str(refused.value) == f"{label.replace('OUT', str(out))} exists and is not a folder"
    assert calls == [out]
