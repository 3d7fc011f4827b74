"""Soft targets: a stage's loss blended with a teacher's predictions on the same batch.

``slt distill`` trains a small student from teacher checkpoints with it, and a stage
with ``teacher`` set learns from its own starting weights (self-distillation, as
born-again networks do) or from the ensemble of the run's earlier stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slt_cli.cfg.config import StageConfig
from slt_cli.run.devices import autocast
from slt_cli.run.results import StageResult
from slt_cli.run.training import LossTerm


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, hard: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """Per-clip ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard``.

    Args:
        student: The student's logits ``(B, K)``.
        teacher: The teachers' logits (or log-probabilities) ``(B, K)``.
        hard: The per-clip cross-entropy the stage computes ``(B,)``.
        alpha: Share of the soft-target term, in [0, 1]; 0 gives ``hard`` unchanged.
        temperature: Softens both distributions; ``T^2`` keeps the gradients' scale.
    """
    if alpha == 0.0:
        return hard
    log_student = F.log_softmax(student.float() / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher.float() / temperature, dim=-1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1)
    return alpha * temperature ** 2 * kl + (1.0 - alpha) * hard


class SoftTargets(nn.Module):
    """A ``StageSetup.extra_loss`` that runs a frozen ``teacher`` on the stage's batch.

    A module, not a closure, so that the stage's loss head holds the teacher as a
    submodule: DataParallel copies it to every GPU with the student, and its frozen
    weights never reach the optimiser or DistributedDataParallel's gradient sync.
    """

    def __init__(self, teacher: nn.Module, alpha: float, temperature: float,
                 precision: str) -> None:
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.alpha, self.temperature, self.precision = alpha, temperature, precision

    def train(self, mode: bool = True) -> SoftTargets:
        super().train(mode)
        self.teacher.eval()  # the teacher's dropout stays off whatever the student does
        return self

    def forward(self, inputs: torch.Tensor, logits: torch.Tensor,
                hard: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), autocast(inputs.device, self.precision):
            taught = self.teacher(inputs).float()
        return distillation_loss(logits, taught, hard, self.alpha, self.temperature)


def soft_targets(teacher: nn.Module, alpha: float, temperature: float,
                 precision: str) -> LossTerm:
    """The ``StageSetup.extra_loss`` that runs ``teacher`` on the student's batch."""
    return SoftTargets(teacher, alpha, temperature, precision)


def teacher_names(stage: StageConfig, start: str | None,
                  earlier: Sequence[StageResult]) -> list[str] | None:
    """The checkpoints a stage learns from: ``start`` for ``teacher = "start"``; for
    ``"earlier"``, the best of each earlier stage of the run that trained from other
    weights and beat its start (so no member counts twice, and stage 1, from scratch
    and unaugmented, is left out). None when the stage asks for no teacher; empty when
    it asks for one it does not have."""
    if stage.teacher == "none" or stage.teacher_alpha == 0.0:
        return None
    if stage.teacher == "start":
        return [start] if start else []
    return [result.checkpoint for result in earlier
            if result.parent is not None and result.best_epoch > 0]
