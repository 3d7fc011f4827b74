"""Which epoch a stage keeps: a validation difference counts only beyond its noise.

Validation on a few people is noisy. Of 360 clips at 97 %, one clip is 0.3 points, and
over 27 epochs the highest score is partly luck. So two epochs are compared clip by
clip, paired as McNemar's test pairs them: their difference is the mean of the per-clip
differences of the monitored quantity (right or wrong, or the loss), and it counts only
when it is more than ``margin`` standard errors of that mean.

- Among the trained epochs, an epoch is the best when the stage's peak (its highest raw
  score so far) does not beat it beyond the noise: of epochs that validation cannot
  tell apart, the later one wins, trained at a lower learning rate and, with weight
  averaging, averaged over more steps.
- Such an epoch replaces the starting weights (a stage's epoch 0) unless they beat it
  beyond the noise: a stage is there because it helps on average (augmentation,
  averaging), and a validation set that cannot tell the two apart is no reason to
  throw its work away. On the shared real sets, keeping the start on a tie cost the
  augmentation stage up to 8 points on the people it was then tested on
  (docs/decisions.md).

With ``margin = 0`` any gain counts: the highest score, ties broken by the lower loss
(the rule before the margin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from slt_cli.errors import CheckpointError
from slt_cli.run.metrics import is_better


@dataclass(frozen=True)
class Scored:
    """One epoch's validation: its totals and, per clip, the monitored quantity."""

    epoch: int
    loss: float
    accuracy: float
    per_clip: torch.Tensor  # (n,) float64 on the CPU: higher is better (hit 1/0, or -loss)

    @property
    def metrics(self) -> tuple[float, float]:
        return self.loss, self.accuracy

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "loss": self.loss, "accuracy": self.accuracy}


def per_clip(logits: torch.Tensor, targets: torch.Tensor, monitor: str) -> torch.Tensor:
    """The monitored quantity of each clip, higher is better, as float64 on the CPU."""
    if monitor == "val_loss":
        values = -torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    else:
        values = (logits.argmax(dim=-1) == targets).float()
    return values.double().cpu()


def paired_difference(candidate: Scored, reference: Scored) -> tuple[float, float]:
    """The mean per-clip gain of ``candidate`` over ``reference`` and its standard error."""
    difference = candidate.per_clip - reference.per_clip
    count = difference.numel()
    mean = float(difference.mean()) if count else 0.0
    if count < 2:
        return mean, 0.0
    return mean, float(difference.std(unbiased=True)) / math.sqrt(count)


class Selection:
    """Judges each epoch of one stage against its start and its peak.

    Args:
        monitor: ``val_accuracy`` or ``val_loss``.
        margin: Standard errors a difference must exceed to count; 0 = any gain.
    """

    def __init__(self, monitor: str, margin: float) -> None:
        self.monitor, self.margin = monitor, margin
        self.start: Scored | None = None
        self.peak: Scored | None = None  # the highest raw score among trained epochs

    def beats(self, candidate: Scored, reference: Scored) -> bool:
        """Whether ``candidate`` is better than ``reference`` beyond the noise."""
        if self.margin <= 0:
            return is_better(candidate.metrics, reference.metrics, self.monitor)
        mean, error = paired_difference(candidate, reference)
        return mean > 0 and mean > self.margin * error

    def consider(self, scored: Scored) -> bool:
        """Take one epoch's validation in; whether it is the stage's new best."""
        if scored.epoch == 0:
            self.start = scored
            return True
        if self.peak is None or is_better(scored.metrics, self.peak.metrics, self.monitor):
            self.peak = scored
        within_peak = scored is self.peak or not self.beats(self.peak, scored)
        return within_peak and self._replaces_start(scored)

    def _replaces_start(self, scored: Scored) -> bool:
        """Whether a trained epoch may replace the starting weights: with the plain
        maximum only by beating them; beyond the noise unless they beat it."""
        if self.start is None:
            return True
        if self.margin <= 0:
            return self.beats(scored, self.start)
        return not self.beats(self.start, scored)

    def why_start_kept(self) -> str | None:
        """Why no trained epoch replaced the start, when the start is kept beyond the
        noise; None with the plain maximum, whose saved line already says "no epoch beat
        the starting weights"."""
        if self.start is None or self.peak is None or self.margin <= 0:
            return None
        mean, error = paired_difference(self.start, self.peak)
        count = self.peak.per_clip.numel()
        if self.monitor == "val_loss":
            return (f"the starting weights' validation loss {self.start.loss:.4f} beat the "
                    f"best epoch's ({self.peak.loss:.4f}, epoch {self.peak.epoch}) beyond "
                    f"the noise ({self.margin:g} standard error)")
        return (f"the starting weights beat the best epoch (epoch {self.peak.epoch}) by "
                f"{mean * count:.0f} clip(s) of {count}, beyond the noise "
                f"({self.margin:g} standard error = {self.margin * error * count:.1f} clips)")

    # --- resume ------------------------------------------------------------------------

    def snapshot(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, values = {}, {}
        for role in ("start", "peak"):
            scored = getattr(self, role)
            if scored is not None:
                tensors[f"selection.{role}"] = scored.per_clip
                values[role] = scored.to_json()
        return tensors, values

    def restore(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
        """Put back what ``snapshot`` saved.

        Raises:
            CheckpointError: when the saved values are not what ``snapshot`` writes.
        """
        try:
            for role in ("start", "peak"):
                saved = values.get(role)
                setattr(self, role, None if saved is None else Scored(
                    epoch=int(saved["epoch"]), loss=float(saved["loss"]),
                    accuracy=float(saved["accuracy"]),
                    per_clip=tensors[f"selection.{role}"].double().flatten()))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise CheckpointError("the resume state's record of the epochs judged so far is "
                                  "damaged", hint="Start the run again without --resume.") from None
