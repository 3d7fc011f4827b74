"""What the engine hands back: plain, frozen records of stages, runs and evaluations."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageResult:
    """What one stage achieved and where it was saved."""

    stage_idx: int
    name: str
    description: str
    val_loss: float  # of the best epoch
    val_accuracy: float
    best_epoch: int
    epochs: int
    training_time: float  # seconds for the whole stage
    checkpoint: str  # best weights: best_model_stage_N, or a continue checkpoint
    final_checkpoint: str | None  # weights at the end: stage_N_<name>
    parent: str | None
    gain: float | None  # improvement of the monitored metric over the starting point


@dataclass(frozen=True)
class RunResult:
    run_id: str
    stages: tuple[StageResult, ...]
    stopped: str | None  # why the run ended before its last stage, or None
    archived: tuple[str, ...]  # earlier checkpoints moved aside into archive/<run_id>/


@dataclass(frozen=True)
class Evaluation:
    checkpoint: str
    source: str
    split: str
    count: int
    loss: float
    accuracy: float
    top5_accuracy: float
    per_class: dict[str, float]  # accuracy per class name (classes present in the split)
