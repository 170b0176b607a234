"""The iteration log: named phases with elapsed time, a live status line on a terminal, plain lines otherwise.

Engines report two things through the one `progress` callable they are given: `progress(iteration,
loglik)` as the optimiser moves, and, through `phase(progress, name)`, the start of each phase (start
values, each optimisation round, standard errors, point check, empirical Bayes). A plain function
passed as `progress` has no phases and is simply not told about them, so the hooks in the engines are
one line each and cost nothing when nobody listens.

On a terminal (isatty) the current phase, iteration, log likelihood and elapsed time are rewritten in
place on one status line with a moving activity bar (the number of iterations is not known in
advance), and each finished phase is left as a line with its duration. Elsewhere (CI logs, files)
every event is a plain line: `iter N  loglik X` and `phase NAME (at T s)`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

BAR_WIDTH = 12
"""Characters of the activity bar on a terminal."""


def phase(progress: Callable[[int, float], None] | None, name: str) -> None:
    """Tell `progress` (when it listens for phases) that phase `name` starts now."""
    hook = getattr(progress, "phase", None)
    if hook is not None:
        hook(name)


class ProgressLog:
    """The CLI's iteration log on `stream` (stderr); `tty` defaults to whether the stream is a terminal."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.clock = clock
        self.start = clock()
        self.current: str | None = None
        self.phase_start = self.start
        self.ticks = 0
        self.status = ""

    def elapsed(self) -> float:
        return self.clock() - self.start

    def phase(self, name: str) -> None:
        """A phase starts: the previous one is finished (a line with its duration on a terminal)."""
        now = self.clock()
        if self.tty:
            self._finish_line(now)
            self.current, self.phase_start = name, now
            self._status(f"{name} ...")
        else:
            self.current, self.phase_start = name, now
            self._line(f"phase {name} (at {now - self.start:.2f} s)")

    def __call__(self, iteration: int, loglik: float) -> None:
        if not self.tty:
            self._line(f"iter {iteration}  loglik {loglik:.6f}")
            return
        self.ticks += 1
        self._status(f"{self.current or 'optimisation'}: iter {iteration}  loglik {loglik:.6f}")

    def close(self) -> None:
        """The fit is over: finish the status line (terminal) and note the total time."""
        now = self.clock()
        if self.tty:
            self._finish_line(now)
        self._line(f"done in {now - self.start:.2f} s")

    def _finish_line(self, now: float) -> None:
        if self.current is not None:
            self._clear()
            self._line(f"  {self.current}: {now - self.phase_start:.2f} s")
            self.current = None

    def _status(self, text: str) -> None:
        pos = self.ticks % (2 * BAR_WIDTH - 2)
        pos = pos if pos < BAR_WIDTH else 2 * BAR_WIDTH - 2 - pos
        bar = "".join("=" if abs(i - pos) <= 1 else " " for i in range(BAR_WIDTH))
        self.status = f"[{bar}] {text}  {self.elapsed():.1f} s"
        self._write("\r\x1b[K" + self.status)

    def _clear(self) -> None:
        if self.status:
            self._write("\r\x1b[K")
            self.status = ""

    def _line(self, text: str) -> None:
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Offset:
    """`progress` with `offset` added to every iteration number (a stage that continues an earlier one)."""

    def __init__(self, progress: Callable[[int, float], None], offset: int) -> None:
        self.progress, self.offset = progress, offset

    def __call__(self, iteration: int, loglik: float) -> None:
        self.progress(self.offset + iteration, loglik)

    def phase(self, name: str) -> None:
        phase(self.progress, name)
