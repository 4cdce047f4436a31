"""Progress of a long command (issue 12.4): a tqdm bar on a terminal, a plain line now
and then otherwise (logs, CI, a pipe), nothing at all for work done within seconds.

    with Progress(total, "score", "images", log) as progress:
        for part in parts:
            progress.update(len(part))
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

AFTER = 3.0  # seconds of quiet first: a command done by then shows no progress at all
PERIOD = 10.0  # seconds between plain lines when stderr is not a terminal


class Progress:
    """Counts work as it is done. After `after` seconds (default AFTER) it shows a tqdm
    bar on `stream` when that is a terminal, else it calls `log` with a line such as
    'score: 12800/50000 images, 20 s' then, every `period` seconds (default PERIOD)
    after, and at the end. `total` None: counts without a total; `initial`: done before
    (a resumed run). `clock` is for tests."""

    def __init__(self, total: int | None, what: str, unit: str,
                 log: Callable[[str], None] | None = None, stream=None,
                 after: float | None = None, period: float | None = None,
                 clock: Callable[[], float] = time.monotonic, initial: int = 0) -> None:
        self.total, self.what, self.unit, self.done = total, what, unit, initial
        self.stream = stream if stream is not None else sys.stderr
        self.log = log or (lambda line: print(line, file=self.stream, flush=True))
        self.after = AFTER if after is None else after
        self.period = PERIOD if period is None else period
        self.clock = clock
        self.start = self.last = clock()
        self.bar = None
        self.lines = 0  # plain lines written
        self.shown = initial  # the count the last plain line gave

    def update(self, amount: int) -> None:
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

    def _line(self, now: float) -> None:
        self.last, self.shown = now, self.done
        self.lines += 1
        of = f"/{self.total}" if self.total is not None else ""
        self.log(f"{self.what}: {self.done}{of} {self.unit}, {now - self.start:.0f} s")

    def close(self) -> None:
        """The bar goes; a run that wrote plain lines ends with the final count."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.lines and self.shown != self.done:
            self._line(self.clock())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
