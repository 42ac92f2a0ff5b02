"""Progress of a whole sweep on stderr: cells done, running, failed, skipped, and an ETA.

On a terminal one line is redrawn in place; otherwise (a log, CI) a line is printed at most every
``every_s`` seconds and at the end, so logs stay short. Nothing ever goes to stdout (``--json`` stays pure).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class SweepProgress:
    """Counts cells and renders the progress line.

    Args:
        total: cells in the sweep; skipped: those already done (resumed); enabled: False renders nothing.
    """

    def __init__(self, total: int, skipped: int, enabled: bool = True, stream: TextIO | None = None,
                 every_s: float = 5.0) -> None:
        self.total = total
        self.skipped = skipped
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.ok = 0
        self.failed = 0
        self.running = 0
        self.t0 = time.perf_counter()
        self._last = -1e9
        self._tty = self.stream.isatty()
        self._width = 0

    @property
    def done(self) -> int:
        """Cells finished in this run (ok or failed), not counting the skipped ones."""
        return self.ok + self.failed

    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (None before the first cell finishes)."""
        if self.done == 0:
            return None
        left = self.total - self.skipped - self.done
        return left * (time.perf_counter() - self.t0) / self.done

    def line(self) -> str:
        eta = self.eta_s()
        parts = [f"sweep: {self.skipped + self.done}/{self.total} done", f"{self.running} running",
                 f"{self.failed} failed"]
        if self.skipped:
            parts.append(f"{self.skipped} resumed")
        parts.append(f"elapsed {_clock(time.perf_counter() - self.t0)}")
        parts.append(f"ETA {_clock(eta) if eta is not None else '?'}")
        return ", ".join(parts)

    def update(self, force: bool = False) -> None:
        """Render if enabled and due (always when ``force``)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._tty:
            text = self.line()
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self.stream.flush()
        elif force or now - self._last >= self.every_s:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last = now

    def note(self, text: str) -> None:
        """Print a line of its own (a failed cell, a retried batch) without breaking the progress line."""
        if not self.enabled:
            return
        if self._tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._tty:
            self.update()
            self.stream.write("\n")
            self.stream.flush()
        else:
            self.update(force=True)


def _clock(seconds: float) -> str:
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
