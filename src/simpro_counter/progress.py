"""The scan's progress bar on a terminal: pages, invoices, rate, retries and ETA."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("… pages/s" if speed is None else f"{speed:.1f} pages/s", style="cyan")


class ScanProgress:
    """A :class:`~simpro_counter.scan.ScanObserver` that draws a rich progress bar."""

    def __init__(self, console: Console) -> None:
        self._records = 0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("pages · {task.fields[records]:,} invoices ·"),
            _RateColumn(),
            TextColumn("· {task.fields[retries]} retries ·"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID = self._progress.add_task(
            "Scanning invoices", total=None, records=0, retries=0
        )

    def __enter__(self) -> ScanProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def started(self, pages: int | None, records: int | None) -> None:
        self._progress.update(self._task, total=pages)

    def page_done(self, records: int, retries: int) -> None:
        self._records += records
        self._progress.update(self._task, advance=1, records=self._records, retries=retries)

    def reconciling(self, reason: str) -> None:
        self._progress.console.print(f"[yellow]↻ {reason}")
