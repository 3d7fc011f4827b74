"""The live training display: progress on stderr, a bar on a terminal, plain lines
otherwise (``slt train``, ``continue``, ``ensemble``, ``distill``, ``data convert``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from slt_cli.common.reporting import EpochMetrics, Reporter
from slt_cli.show.console import duration, err

if TYPE_CHECKING:  # rich.progress is imported when training starts: `slt list` skips it
    from rich.progress import Progress, TaskID


class RichReporter(Reporter):
    """Training progress on stderr: a live bar on a terminal, plain lines otherwise."""

    def __init__(self, console: Console = err) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.tasks: dict[str, tuple[TaskID | None, float, float]] = {}  # id, start, last line

    @contextmanager
    def running(self) -> Iterator[RichReporter]:
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                console=self.console, transient=False)
            with self.progress:
                yield self
        else:
            yield self

    def run_started(self, *, stages: list[tuple[int, str]], device: str, devices: int,
                    batch_size: int, train_size: int, val_size: int) -> None:
        names = ", ".join(f"{i}:{name}" for i, name in stages)
        self._line(f"training stages {names} on {device} ({devices} device"
                   f"{'s' if devices > 1 else ''}, batch {batch_size}); "
                   f"{train_size} train / {val_size} validation sequences")

    def stage_started(self, *, stage_idx: int, name: str, description: str, epochs: int,
                      batches: int, start: str) -> None:
        self._line(f"[bold]stage {stage_idx} · {name}[/] — {description} "
                   f"[dim](from {start}, {epochs} epoch{'' if epochs == 1 else 's'})[/]")
        if self.progress is not None:
            self.task = self.progress.add_task(
                f"stage {stage_idx} {name}", total=epochs * batches, status="", unit="batches")

    def batch_done(self, *, batch: int, batches: int, loss: float | None) -> None:
        if self.progress is not None and self.task is not None:
            status = {} if loss is None else {"status": f"loss {loss:.3f}"}
            self.progress.update(self.task, advance=1, **status)

    def epoch_done(self, metrics: EpochMetrics) -> None:
        best = " [green]best[/]" if metrics.is_best else ""
        if metrics.train_loss is None or metrics.train_accuracy is None:  # epoch 0
            self._line(f"  epoch {metrics.epoch:>2}/{metrics.epochs}  {'starting weights':<28}"
                       f"│ val loss {metrics.val_loss:.4f} acc {metrics.val_accuracy:.3f} │ "
                       f"{metrics.seconds:.1f}s{best}")
            return
        self._line(
            f"  epoch {metrics.epoch:>2}/{metrics.epochs}  train loss {metrics.train_loss:.4f} "
            f"acc {metrics.train_accuracy:.3f} │ val loss {metrics.val_loss:.4f} "
            f"acc {metrics.val_accuracy:.3f} │ lr {metrics.lr:.2e} "
            f"{metrics.seconds:.1f}s{best}")

    def stage_done(self, result: Any) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, status=f"best acc {result.val_accuracy:.3f}")
        kept = (", start kept: no epoch beat the starting weights" if result.kept_start
                else "")
        self._line(f"  saved {result.checkpoint} (epoch {result.best_epoch}{kept}; val acc "
                   f"{result.val_accuracy:.4f}, val loss {result.val_loss:.4f})")

    def note(self, message: str) -> None:
        self._line(f"[yellow]note:[/] {escape(message)}")

    def task_progress(self, *, task: str, done: int, total: int, unit: str) -> None:
        """A bar with rate and ETA on a terminal; else a line every 10 s and at the end."""
        now = time.monotonic()
        if task not in self.tasks:
            bar = (self.progress.add_task(task, total=total, status="", unit=unit)
                   if self.progress is not None else None)
            self.tasks[task] = (bar, now, now)
        bar, start, last = self.tasks[task]
        rate = done / max(now - start, 1e-9)
        eta = (total - done) / rate if rate > 0 else 0.0
        if bar is not None and self.progress is not None:
            self.progress.update(bar, completed=done, status=f"{_rate(rate)} {unit}/s")
        if done >= total:
            self._line(f"{task}: {done:,} {unit} in {duration(now - start)} ({_rate(rate)}/s)")
            del self.tasks[task]
        elif bar is None and done and now - last >= 10:
            self._line(f"{task}: {done:,}/{total:,} {unit}, {rate:,.0f}/s, "
                       f"ETA {duration(eta)}")
            self.tasks[task] = (bar, start, now)

    def _line(self, text: str) -> None:
        target = self.progress.console if self.progress is not None else self.console
        target.print(text, highlight=False)


def _rate(per_second: float) -> str:
    """A rate as people read it: ``1,234``, ``12.3``, ``0.22`` (never a slow "0")."""
    if per_second >= 100:
        return f"{per_second:,.0f}"
    return f"{per_second:.1f}" if per_second >= 1 else f"{per_second:.2f}"

