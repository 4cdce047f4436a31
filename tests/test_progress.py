"""Progress: a bar on a terminal, plain periodic lines otherwise (count, rate, time so far
and ETA), quiet for short work; score's first pass reports it from the parent as chunks
come back, localize per batch."""

from __future__ import annotations

import io

from acol_eval.scoring import passes as scoring
from acol_eval.util import progress as progress_module
from acol_eval.util.progress import Progress
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
    # quiet until 3 s; then a line at 4 s, none until 14 s, 24 s, and the last at 20 s;
    # 5 images a second: 80 left at 4 s is 16 s, 30 left at 14 s is 6 s
    assert lines == ["score: 20/100 images, 5 img/s, 4 s so far, ETA 16 s",
                     "score: 70/100 images, 5 img/s, 14 s so far, ETA 6 s",
                     "score: 100/100 images, 5 img/s, 20 s so far"]


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
    assert lines == ["boxes: 7 images, 2.33 img/s, 3 s so far",
                     "boxes: 21 images, 2.33 img/s, 9 s so far"]  # no total: no ETA


def test_a_long_run_off_a_terminal_speaks_at_least_every_30_s_with_rate_and_eta():
    """50,000 images at 640 a second, one batch of 64 every 0.1 s, with the defaults."""
    clock, lines = Clock(), []
    with Progress(50000, "score", "images", lines.append, stream=io.StringIO(),
                  clock=clock) as progress:
        times = []
        for _ in range(50000 // 64):
            clock.now += 0.1
            before = len(lines)
            progress.update(64)
            if len(lines) > before:
                times.append(clock.now)
        progress.update(50000 % 64)
    assert times[0] - 100 < 5 and max(b - a for a, b in zip(times, times[1:])) <= 30
    assert len(lines) >= 78 / 30
    # the first line after 3 s of quiet: 31 batches; 48016 left at 640 a second is 75 s
    assert lines[0] == "score: 1984/50000 images, 640 img/s, 3 s so far, ETA 75 s"
    assert lines[-1] == "score: 50000/50000 images, 640 img/s, 78 s so far"


def test_a_heartbeat_repeats_the_line_when_one_step_outlasts_the_period():
    """A batch that takes 70 s (Score-CAM on a CPU): the line still comes every period."""
    clock, lines = Clock(), []
    progress = Progress(64, "localize", "images", lines.append, stream=io.StringIO(),
                        after=3, period=10, clock=clock)
    clock.now += 1
    progress.update(32)  # quiet start: no line yet
    for _ in range(14):  # the second batch: 70 s, the heartbeat looking every 5 s
        clock.now += 5
        progress.tick()
    progress.update(32)
    progress.close()
    assert [line.split(", ")[0] for line in lines] == ["localize: 32/64 images"] * 7 + [
        "localize: 64/64 images"]
    # lines at 11 s, 21 s, ...: the rate falls while the batch runs, the ETA grows
    assert [line.split(", ")[-1] for line in lines[:2]] == ["ETA 11 s", "ETA 21 s"]


def test_the_heartbeat_thread_speaks_between_updates_and_stops_at_close():
    import time

    lines: list[str] = []
    with Progress(10, "localize", "images", lines.append, stream=io.StringIO(), after=0,
                  period=0.05, heartbeat=True) as progress:
        progress.update(1)
        time.sleep(0.5)  # no update meanwhile
    assert len(lines) >= 3 and all(line.startswith("localize: 1/10 images") for line in lines)
    count = len(lines)
    time.sleep(0.2)
    assert len(lines) == count  # closed: the thread is gone
    assert progress.thread is None


def test_a_resumed_count_rates_only_this_processes_work():
    clock, lines = Clock(), []
    with Progress(100, "localize", "images", lines.append, stream=io.StringIO(), after=0,
                  clock=clock, initial=50) as progress:
        clock.now += 10
        progress.update(10)  # 10 images in 10 s: 1 a second, 40 left
    assert lines[0] == "localize: 60/100 images, 1 img/s, 10 s so far, ETA 40 s"


def test_counts_durations_and_rates_read_as_words():
    from acol_eval.util.progress import counted, duration, rate_text

    assert [counted(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(1, "process", "processes") == "1 process"
    assert counted(3, "process", "processes") == "3 processes"
    assert [duration(s) for s in (0.4, 58, 99.4, 720, 7500)] == [
        "0 s", "58 s", "99 s", "12 min", "2 h 05 min"]
    assert rate_text(640.4, "images") == "640 img/s"
    assert rate_text(6.4, "images") == "6.4 img/s"
    assert rate_text(0.5213, "rounds") == "0.521 rounds/s"


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
