"""Progress (issue 12.4): a bar on a terminal, plain periodic lines otherwise, quiet for
short work; score's first pass reports it from the parent as chunks come back."""

from __future__ import annotations

import io

from acol_eval import progress as progress_module
from acol_eval import scoring
from acol_eval.progress import Progress
from conftest import make_checkpoint, run_localize, write_images, write_wsol_metadata
from tests.test_score_inputs import blob_map, run_score, save_maps


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_come_every_period_after_a_quiet_start():
    clock, lines = Clock(), []
    with Progress(100, "score", "images", lines.append, stream=io.StringIO(), after=3,
                  period=10, clock=clock) as progress:
        for _ in range(10):  # ten updates of 10 images, 2 s apart
            clock.now += 2
            progress.update(10)
    # quiet until 3 s; then a line at 4 s, none until 14 s, 24 s, and the last at 20 s
    assert lines == ["score: 20/100 images, 4 s", "score: 70/100 images, 14 s",
                     "score: 100/100 images, 20 s"]


def test_short_work_says_nothing_and_unknown_totals_end_with_the_count():
    clock, lines = Clock(), []
    with Progress(5, "boxes", "images", lines.append, stream=io.StringIO(), clock=clock) as p:
        p.update(5)
    assert lines == []
    with Progress(None, "boxes", "images", lines.append, stream=io.StringIO(), after=0,
                  period=5, clock=clock) as p:
        for _ in range(3):
            clock.now += 3
            p.update(7)
    assert lines == ["boxes: 7 images, 3 s", "boxes: 21 images, 9 s"]


def test_a_terminal_gets_a_tqdm_bar_and_no_plain_lines():
    clock, lines, stream = Clock(), [], Terminal()
    with Progress(50, "score", "images", lines.append, stream=stream, after=1,
                  clock=clock) as progress:
        for _ in range(5):
            clock.now += 1
            progress.update(10)
    assert lines == []
    assert "score:" in stream.getvalue() and "/50 [" in stream.getvalue()  # tqdm's bar


def test_score_first_pass_reports_images_as_chunks_come_back(tmp_path, monkeypatch, capsys):
    names = [f"c/{i}.jpg" for i in range(5)]
    meta = write_wsol_metadata(tmp_path / "meta", [(n, "0", 100, 100) for n in names],
                               [f"{n},10,10,60,60" for n in names])
    save_maps(tmp_path / "maps", {n.replace(".jpg", ".npy"): blob_map((10, 10, 60, 60), 100,
                                                                      100) for n in names})
    monkeypatch.setattr(scoring, "CHUNK", 2)  # three chunks
    monkeypatch.setattr(progress_module, "AFTER", 0.0)
    monkeypatch.setattr(progress_module, "PERIOD", 0.0)
    run_score(tmp_path, tmp_path / "maps", f"wsol:{meta}", interval=0.05, workers=2)
    err = capsys.readouterr().err
    counts = [line.split(":")[1].split()[0] for line in err.splitlines()
              if line.startswith("score: ")]
    assert counts == ["2/5", "4/5", "5/5"]


def test_localize_reports_images_off_a_terminal(tmp_path, monkeypatch, capsys):
    folder = write_images(tmp_path / "img", [f"{i}.png" for i in range(5)])
    make_checkpoint(tmp_path / "m.pt")
    monkeypatch.setattr(progress_module, "AFTER", 0.0)
    monkeypatch.setattr(progress_module, "PERIOD", 0.0)
    run_localize(folder, tmp_path / "run", checkpoint=str(tmp_path / "m.pt"), batch_size=2)
    lines = [line.split(",")[0] for line in capsys.readouterr().err.splitlines()
             if line.startswith("localize: ")]
    assert lines == ["localize: 2/5 images", "localize: 4/5 images", "localize: 5/5 images"]
