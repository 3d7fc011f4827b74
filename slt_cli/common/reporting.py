"""How the engine tells the world what it is doing, without printing anything.

The engine calls a ``Reporter``; the CLI backs it with rich (``console.py``), tests
back it with ``RecordingReporter``. Every method has a no-op default, so a reporter
implements only what it shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EpochMetrics:
    """The numbers of one finished epoch.

    Epoch 0 is a stage's starting weights, scored before it trains (a stage that
    starts from existing weights has one): it has no training numbers.
    """

    stage_idx: int
    stage_name: str
    epoch: int  # 1-based; 0 = the starting weights, scored before the first epoch
    epochs: int
    train_loss: float | None  # None at epoch 0
    train_accuracy: float | None  # None at epoch 0
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float
    is_best: bool  # a new best of the stage, saved as best_model_stage_N


class Reporter:
    """No-op base: subclass and override what you want to show."""

    def run_started(self, *, stages: list[tuple[int, str]], device: str, devices: int,
                    batch_size: int, train_size: int, val_size: int) -> None:
        """A run is about to train ``stages`` as (index, name) pairs."""

    def stage_started(self, *, stage_idx: int, name: str, description: str, epochs: int,
                      batches: int, start: str) -> None:
        """A stage begins; ``start`` says which weights it starts from."""

    def batch_done(self, *, batch: int, batches: int, loss: float | None) -> None:
        """One optimisation step finished; ``loss`` is the latest training loss read
        off the device (read every few batches, so as not to stall it), None at first."""

    def epoch_done(self, metrics: EpochMetrics) -> None:
        """One epoch finished and was evaluated (epoch 0: the starting weights were)."""

    def stage_done(self, result: Any) -> None:
        """A stage finished; ``result`` is an ``results.StageResult``."""

    def note(self, message: str) -> None:
        """Something worth a line: an archived file, a stop for lack of improvement."""

    def task_progress(self, *, task: str, done: int, total: int, unit: str) -> None:
        """A long preparation step (converting a corpus) has done ``done`` of ``total``
        ``unit``: called with ``done=0`` at the start, after each chunk, and with
        ``done == total`` at the end."""


@dataclass
class RecordingReporter(Reporter):
    """Keeps every event as ``(name, payload)``; for tests and scripts."""

    events: list[tuple[str, Any]] = field(default_factory=list)

    def run_started(self, **info: Any) -> None:
        self.events.append(("run_started", info))

    def stage_started(self, **info: Any) -> None:
        self.events.append(("stage_started", info))

    def epoch_done(self, metrics: EpochMetrics) -> None:
        self.events.append(("epoch_done", metrics))

    def stage_done(self, result: Any) -> None:
        self.events.append(("stage_done", result))

    def note(self, message: str) -> None:
        self.events.append(("note", message))

    def named(self, name: str) -> list[Any]:
        return [payload for event, payload in self.events if event == name]
