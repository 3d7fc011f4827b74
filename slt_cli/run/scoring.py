"""Scoring a split: a split's tensors on the device, and the logits, loss and accuracy of
a model on it (validation in training, ``slt evaluate``, ensembles, distillation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slt_cli.data import PreparedData, Split
from slt_cli.data.transforms import (
    dominant_hand_swap,
    features,
    mean_probabilities,
    mirror_clips,
    right_handed,
)
from slt_cli.run.devices import autocast

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TensorSplit:
    """A split moved to the training device once, so batches are only index lookups."""

    x: torch.Tensor  # (N, T, J, C), NaN = missing
    y: torch.Tensor  # (N,)

    @classmethod
    def from_split(cls, split: Split, device: torch.device) -> TensorSplit:
        return cls(torch.from_numpy(split.x).to(device), torch.from_numpy(split.y).to(device))

    @classmethod
    def as_trained(cls, data: PreparedData, split: str, device: torch.device,
                   dominant_hand: str) -> TensorSplit:
        """Split ``split`` of ``data`` on ``device`` as the network sees it: with
        ``[data] dominant_hand = "right"``, every clip turned to sign with its right hand."""
        tensors = cls.from_split(data.split(split), device)
        swap = dominant_hand_swap(data.joints, dominant_hand)
        return tensors if swap is None else cls(right_handed(tensors.x, *swap), tensors.y)

    def __len__(self) -> int:
        return int(self.y.shape[0])


def cpu_state(model: nn.Module) -> State:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


@torch.no_grad()
def predict_logits(model: nn.Module, split: TensorSplit, motion: bool,
                   batch_size: int, precision: str = "fp32",
                   mirror: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Logits (N, K) for a whole split, in eval mode, on the split's device.

    With ``mirror`` (``mirror_permutation``'s index), each clip is scored with its
    mirror image too and the logits are ``mean_probabilities`` of the two passes.
    """
    was_training = model.training
    model.eval()
    outputs = []
    with autocast(split.x.device, precision):
        for i in range(0, len(split), batch_size):
            clips = split.x[i : i + batch_size]
            logits = model(features(clips, motion)).float()
            if mirror is not None:
                flipped = model(features(mirror_clips(clips, mirror), motion)).float()
                logits = mean_probabilities(logits, flipped)
            outputs.append(logits)
    model.train(was_training)
    return torch.cat(outputs)


def score(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """Plain cross-entropy (no smoothing, so stages compare) and accuracy."""
    loss = F.cross_entropy(logits, targets).item()
    return loss, (logits.argmax(dim=-1) == targets).float().mean().item()
