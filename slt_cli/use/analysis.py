"""The stage-by-stage analysis behind ``slt analyze``: sidecars in, numbers out.

Pure Python over sidecar records, so it answers without importing torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slt_cli.store.sidecar import Sidecar

_BEST = re.compile(r"best_model_stage_(\d+)")


@dataclass(frozen=True)
class StageRow:
    stage_idx: int
    stage_name: str
    checkpoint: str
    val_loss: float
    val_accuracy: float
    loss_change: float | None  # against the stage before; negative = better
    accuracy_change: float | None  # against the stage before; positive = better
    training_time: float  # seconds until the best epoch
    stage_time: float | None  # seconds of the whole stage; None in older sidecars
    best_epoch: int | None  # the sidecar's epoch; None when it has none
    kept_start: bool  # best epoch 0: no epoch beat the weights the stage started from


@dataclass(frozen=True)
class StudentRow:
    """A distilled student (``slt distill``) and its teachers."""

    checkpoint: str
    teachers: tuple[str, ...]
    alpha: float
    temperature: float
    parameters: int
    val_loss: float
    val_accuracy: float
    # against the best of its teachers still in the folder (their sidecars' val accuracy)
    accuracy_change: float | None


@dataclass(frozen=True)
class Analysis:
    stages: tuple[StageRow, ...]
    loss_reduction_pct: float | None  # (first - last) / first * 100
    accuracy_gain_pct: float | None  # (last - first) * 100, in percentage points
    students: tuple[StudentRow, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [asdict(row) for row in self.stages],
                "total": {"loss_reduction_pct": self.loss_reduction_pct,
                          "accuracy_gain_pct": self.accuracy_gain_pct},
                "students": [asdict(row) for row in self.students]}


def analyze(records: Iterable[Sidecar]) -> Analysis:
    """Compare the ``best_model_stage_N`` checkpoints among ``records`` stage by stage,
    and each distilled student with its teachers."""
    records = list(records)
    students = _students(records)
    best = sorted((int(m.group(1)), r) for r in records if (m := _BEST.fullmatch(r.name)))
    rows: list[StageRow] = []
    for stage_idx, record in best:
        before = rows[-1] if rows else None
        rows.append(StageRow(
            stage_idx=stage_idx, stage_name=record.stage_name, checkpoint=record.name,
            val_loss=record.val_loss, val_accuracy=record.val_accuracy,
            loss_change=None if before is None else record.val_loss - before.val_loss,
            accuracy_change=None if before is None
            else record.val_accuracy - before.val_accuracy,
            training_time=record.training_time, stage_time=record.stage_time,
            best_epoch=record.epoch, kept_start=record.epoch == 0))
    if len(rows) < 2:
        return Analysis(tuple(rows), None, None, students)
    first, last = rows[0], rows[-1]
    loss_reduction = ((first.val_loss - last.val_loss) / first.val_loss * 100
                      if first.val_loss else None)
    return Analysis(tuple(rows), loss_reduction, (last.val_accuracy - first.val_accuracy) * 100,
                    students)


def _students(records: list[Sidecar]) -> tuple[StudentRow, ...]:
    by_name = {record.name: record for record in records}
    rows = []
    for record in sorted(records, key=lambda r: r.name):
        lineage = record.distilled
        if lineage is None:
            continue
        names = tuple(teacher.name for teacher in lineage.teachers)
        # a teacher counts only while its weights are the ones the student learnt from
        present = [by_name[t.name].val_accuracy for t in lineage.teachers
                   if t.name in by_name and by_name[t.name].weights_sha256 == t.weights_sha256]
        rows.append(StudentRow(
            checkpoint=record.name, teachers=names, alpha=lineage.alpha,
            temperature=lineage.temperature, parameters=lineage.parameters,
            val_loss=record.val_loss, val_accuracy=record.val_accuracy,
            accuracy_change=record.val_accuracy - max(present) if present else None))
    return tuple(rows)

