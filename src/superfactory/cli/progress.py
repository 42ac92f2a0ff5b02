"""A progress bar that appears only for runs longer than a second (on stderr, never in --json output)."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


class LazyProgress:
    """Callable ``(now_s, until_s)`` progress sink; shows a bar once the run has taken > ``delay_s``."""

    def __init__(self, label: str, enabled: bool = True, delay_s: float = 1.0) -> None:
        self.label = label
        self.enabled = enabled
        self.delay_s = delay_s
        self.t0 = time.perf_counter()
        self._progress: Progress | None = None
        self._task = 0

    def __call__(self, now_s: int, until_s: int) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            if time.perf_counter() - self.t0 < self.delay_s:
                return
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("day {task.completed:.1f}/{task.total:.0f}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=until_s / 86400)
        self._progress.update(self._task, completed=now_s / 86400)

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
