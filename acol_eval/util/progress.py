"""Progress of a long command: a tqdm bar on a terminal, a plain line now and then
otherwise (logs, CI, a pipe), nothing at all for work done within seconds.

    with Progress(total, "score", "images", log) as progress:
        for part in parts:
            progress.update(len(part))

A plain line gives the count, the rate since the start and, when the total is known,
the time left at that rate: 'score: 12800/50000 images, 640 img/s, 20 s so far, ETA 58 s'.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

AFTER = 3.0  # seconds of quiet first: a command done by then shows no progress at all
PERIOD = 10.0  # seconds between plain lines when stderr is not a terminal (at most 30)
SHORT_UNITS = {"images": "img"}  # the rate's unit: 'img/s' reads better than 'images/s'


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 image', '2 images', '0 images': a count with its noun in the right number
    (`plural` where adding 's' is wrong: 'process', 'processes')."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def duration(seconds: float) -> str:
    """'42 s', '12 min', '2 h 05 min': whole units, as a log line wants them."""
    seconds = max(0.0, seconds)
    if seconds < 100:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 100:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def rate_text(rate: float, unit: str) -> str:
    """'640 img/s', '6.4 img/s', '0.52 rounds/s': three significant digits at most."""
    number = f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"
    return f"{number} {SHORT_UNITS.get(unit, unit)}/s"


class Progress:
    """Counts work as it is done. After `after` seconds (default AFTER) it shows a tqdm
    bar on `stream` when that is a terminal, else it calls `log` with a line such as
    'score: 12800/50000 images, 640 img/s, 20 s so far, ETA 58 s' then, every `period`
    seconds (default PERIOD) after, and at the end. `total` None: counts without a
    total (and without an ETA); `initial`: done before (a resumed run; the rate counts
    only what this process did). `heartbeat`: where one step of work may outlast
    `period` (a batch of Score-CAM on a CPU), a thread repeats the line every `period`
    between updates, until `close` (so use it as a context manager). `clock` is for
    tests."""

    def __init__(self, total: int | None, what: str, unit: str,
                 log: Callable[[str], None] | None = None, stream=None,
                 after: float | None = None, period: float | None = None,
                 clock: Callable[[], float] = time.monotonic, initial: int = 0,
                 heartbeat: bool = False) -> None:
        self.total, self.what, self.unit, self.done = total, what, unit, initial
        self.initial = initial
        self.stream = stream if stream is not None else sys.stderr
        self.log = log or (lambda line: print(line, file=self.stream, flush=True))
        self.after = AFTER if after is None else after
        self.period = PERIOD if period is None else period
        self.clock = clock
        self.start = self.last = clock()
        self.bar = None
        self.lines = 0  # plain lines written
        self.shown = initial  # the count the last plain line gave
        self.lock = threading.Lock()  # update() and the heartbeat thread both write lines
        self.stopped = threading.Event()
        self.thread = None
        # period 0 writes a line at every update already
        if heartbeat and self.period > 0 and not getattr(self.stream, "isatty",
                                                         lambda: False)():
            self.thread = threading.Thread(target=self._beat, daemon=True,
                                           name=f"progress of {what}")
            self.thread.start()

    def _beat(self) -> None:
        while not self.stopped.wait(self.period / 4):
            self.tick()

    def tick(self) -> None:
        """Between updates: the line again when `period` has passed since the last one
        (and the quiet start is over); what the heartbeat thread calls."""
        with self.lock:
            now = self.clock()
            if now - self.start >= self.after and now - self.last >= self.period:
                self._line(now)

    def update(self, amount: int) -> None:
        with self.lock:
            self._update(amount)

    def _update(self, amount: int) -> None:
        self.done += amount
        if self.bar is not None:
            self.bar.update(amount)
            return
        now = self.clock()
        if now - self.start < self.after:
            return
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, desc=self.what,
                            unit=self.unit.rstrip("s"), file=self.stream, leave=False,
                            smoothing=0.1)
        elif not self.lines or now - self.last >= self.period or self.done == self.total:
            self._line(now)

    def line(self, now: float) -> str:
        """The plain line at time `now`."""
        elapsed = now - self.start
        of = f"/{self.total}" if self.total is not None else ""
        parts = [f"{self.what}: {self.done}{of} {self.unit}"]
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            parts.append(rate_text(rate, self.unit))
        parts.append(f"{duration(elapsed)} so far")
        if rate > 0 and self.total is not None and self.done < self.total:
            parts.append(f"ETA {duration((self.total - self.done) / rate)}")
        return ", ".join(parts)

    def _line(self, now: float) -> None:
        self.last, self.shown = now, self.done
        self.lines += 1
        self.log(self.line(now))

    def close(self) -> None:
        """The bar goes; a run that wrote plain lines ends with the final count."""
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.lines and self.shown != self.done:
            self._line(self.clock())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
