"""The optimiser and learning-rate schedule of a stage."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from slt_cli.cfg.config import StageConfig


def build_optimizer(model: nn.Module, stage: StageConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: decaying norms' gains and biases
    only pulls them away from their neutral values."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": stage.weight_decay},
              {"params": other, "weight_decay": 0.0}]
    # The fused kernel updates every tensor in one pass: on the CPU the default loops
    # over tensors in Python (5x slower here), on a GPU it saves many small launches.
    fused = all(p.device.type in ("cpu", "cuda") for p in decay + other)
    return torch.optim.AdamW(groups, lr=stage.lr, fused=fused)


class FlatGradients:
    """Every parameter's gradient as a view into one buffer, so that zeroing a step's
    gradients is one fill, backward adds into them instead of allocating a tensor per
    parameter, and clipping scales them in one product. The numbers are torch's to the
    last bit: backward adds each gradient to zero, and the norm is summed as
    ``clip_grad_norm_`` sums it (per tensor, then over the tensors). slt's networks keep
    their parameters in one dtype on one device, as the buffer does."""

    def __init__(self, parameters: Iterable[nn.Parameter]) -> None:
        self.trained = [p for p in parameters if p.requires_grad]
        first = self.trained[0]
        self.buffer = torch.zeros(sum(p.numel() for p in self.trained), dtype=first.dtype,
                                  device=first.device)
        self.views, offset = [], 0
        for parameter in self.trained:
            self.views.append(self.buffer[offset : offset + parameter.numel()].view_as(parameter))
            offset += parameter.numel()
        self._attach()

    def _attach(self) -> None:
        for parameter, view in zip(self.trained, self.views, strict=True):
            parameter.grad = view

    def zero(self) -> None:
        """Zero the gradients; a ``zero_grad(set_to_none=True)`` elsewhere since (which
        would leave backward writing outside the buffer) is undone first."""
        if any(p.grad is None for p in self.trained):
            self._attach()
        self.buffer.zero_()

    def clip(self, max_norm: float) -> None:
        """Scale the gradients to a norm of at most ``max_norm`` (``clip_grad_norm_``'s
        rule and sum)."""
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.views, 2.0)))
        self.buffer.mul_((max_norm / (norm + 1e-6)).clamp_(max=1.0))


def lr_factor(stage: StageConfig, batches: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to ``min_lr_fraction`` of the peak."""
    total = max(1, stage.epochs * batches)
    warmup = int(total * stage.warmup_fraction)
    floor = stage.min_lr_fraction

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor

