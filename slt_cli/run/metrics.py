"""Training numbers kept on the device and read in batches, not after every step.

Reading a number off a GPU (``.item()``, ``if tensor:``) waits for every queued
kernel, so the next batch cannot be queued behind the current one. The loss and
accuracy sums therefore stay on the device, and the per-batch losses are read
(and checked to be finite) once every ``SYNC_EVERY`` batches. Under torchrun the
same read sums them over the processes, so that all of them see the same numbers
and stop or go on together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from slt_cli.run.distributed import World, all_sum

SYNC_EVERY = 16  # batches between two reads of the device's numbers


class RunningMetrics:
    """The sums of one epoch's per-sample losses and hits, on the device."""

    def __init__(self, device: torch.device, world: World) -> None:
        self.device, self.world = device, world
        # float64, like the Python floats they replace, so sums are exact on resume.
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss, hits
        self.pending: list[torch.Tensor] = []  # mean losses of the batches not read yet

    def add(self, loss: torch.Tensor, correct: torch.Tensor) -> None:
        """Count one batch: per-sample losses and whether each prediction was right."""
        self.sums[0] += loss.sum()
        self.sums[1] += correct.sum()
        self.pending.append(loss.mean())

    def settle(self, stop: bool) -> tuple[list[float], bool]:
        """Read the pending batches' mean losses (averaged over processes) and
        whether any process asked to stop; one wait for the device."""
        losses = torch.stack(self.pending) if self.pending else self.sums.new_zeros(0)
        flag = torch.tensor([1.0 if stop else 0.0], dtype=losses.dtype, device=self.device)
        packed = all_sum(torch.cat([losses, flag]), self.world)
        *values, stops = packed.tolist()
        self.pending.clear()
        return [value / self.world.size for value in values], stops > 0

    def totals(self) -> tuple[float, float]:
        """The epoch's loss and hit sums so far, over every process."""
        loss, hits = all_sum(self.sums.clone(), self.world).tolist()
        return loss, hits

    def reset(self, loss: float = 0.0, hits: float = 0.0) -> None:
        """Start the sums again, from saved totals when resuming (kept by rank 0
        alone, as ``totals`` adds every process's share)."""
        if not self.world.is_main:
            loss = hits = 0.0
        self.sums = torch.tensor([loss, hits], dtype=torch.float64, device=self.device)
        self.pending.clear()


def sharded_score(logits: torch.Tensor, targets: torch.Tensor,
                  world: World) -> tuple[float, float]:
    """Cross-entropy and accuracy of the whole split, from each process's shard."""
    sums = torch.stack([
        F.cross_entropy(logits, targets, reduction="sum").double(),
        (logits.argmax(dim=-1) == targets).sum().double(),
        torch.tensor(float(len(targets)), dtype=torch.float64, device=logits.device)])
    loss, hits, count = all_sum(sums, world).tolist()
    return loss / count, hits / count


def split_scores(logits: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
                 signers: np.ndarray | None = None) -> dict[str, Any]:
    """What ``slt evaluate`` reports of a split: plain cross-entropy, accuracy, top-5
    accuracy, accuracy per class present, per signer (when ``signers`` gives each
    sequence's signer: an id or a name) and the [true][predicted] confusion counts."""
    predicted = logits.argmax(dim=1)
    hits = predicted == targets
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    k = len(classes)
    confusion = torch.bincount(targets * k + predicted, minlength=k * k).view(k, k)
    return {
        "loss": F.cross_entropy(logits, targets).item(),
        "accuracy": hits.float().mean().item(),
        "top5_accuracy": (top == targets[:, None]).any(dim=1).float().mean().item(),
        "per_class": {classes[c]: hits[targets == c].float().mean().item()
                      for c in sorted(set(targets.tolist()))},
        "per_signer": {} if signers is None else per_group(hits.cpu().numpy(), signers),
        "signer_sequences": {} if signers is None else {
            str(group): int(count) for group, count in zip(*np.unique(signers, return_counts=True),
                                                          strict=True)},
        "confusion": tuple(map(tuple, confusion.tolist())),
    }


def signer_labels(signer: np.ndarray | None, names: Sequence[str] | None
                  ) -> np.ndarray | None:
    """Each sequence's signer as the source named it (its id when unnamed)."""
    if signer is None or names is None:
        return signer
    return np.asarray(names, dtype=str)[signer]


def per_group(hits: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Accuracy within each group (a signer per sequence), keyed by the signer's text."""
    return {str(group): float(hits[groups == group].mean()) for group in np.unique(groups)}


def is_better(candidate: tuple[float, float], incumbent: tuple[float, float],
              monitor: str) -> bool:
    """Whether (loss, accuracy) ``candidate`` beats ``incumbent`` on the monitored
    metric; a tie is broken by the lower loss."""
    gain = improvement(candidate, incumbent, monitor)
    return gain > 0 or (gain == 0 and candidate[0] < incumbent[0])


def improvement(candidate: tuple[float, float], incumbent: tuple[float, float],
                monitor: str) -> float:
    """Gain of ``candidate`` over ``incumbent``: accuracy up, or loss down."""
    if monitor == "val_loss":
        return incumbent[0] - candidate[0]
    return candidate[1] - incumbent[1]
