"""The regularisers a stage switches: dropout and drop path rates (late dropout
included) and adversarial weight perturbation.

Adversarial weight perturbation (AWP; Wu et al. 2020), as GISLR's winners used it: a
step with AWP computes the loss's gradient, moves every weight matrix a small way up
that gradient (``size`` times the matrix's own norm), computes the gradient again at
those perturbed weights, and applies that second gradient to the unperturbed weights:
training then favours flat minima, which generalise better to unseen people. It
costs a second forward and backward pass per step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from slt_cli.cfg.config import StageConfig
from slt_cli.models.layers import DropBranch


@contextmanager
def adversarial_weights(parameters: Sequence[torch.Tensor], size: float) -> Iterator[None]:
    """Inside the block, each weight matrix ``w`` with a gradient ``g`` is
    ``w + size * |w| / |g| * g``; on leaving it, ``w`` again (gradients are left alone).

    Biases and norms' gains (fewer than 2 dimensions) are not perturbed.
    """
    moved: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        for weight in parameters:
            gradient = weight.grad
            if gradient is None or weight.ndim < 2:
                continue
            delta = gradient * (size * weight.norm() / (gradient.norm() + 1e-12))
            weight.add_(delta)
            moved.append((weight, delta))
    try:
        yield
    finally:
        with torch.no_grad():
            for weight, delta in moved:
                weight.sub_(delta)


def set_dropout(model: nn.Module, p: float, drop_path: float | None = None) -> None:
    """Give every nn.Dropout of ``model`` rate ``p``, those that drop whole residual
    branches (``DropBranch``) ``drop_path`` when given."""
    branches = {id(module.dropout) for module in model.modules()
                if isinstance(module, DropBranch)}
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            branch = drop_path is not None and id(module) in branches
            module.p = drop_path if branch else p


def stage_dropout(stage: StageConfig, epoch: int) -> tuple[float, float]:
    """The (dropout, drop path) rates of ``stage`` in its epoch ``epoch`` (1-based).

    Drop path follows ``dropout`` unless set (>= 0). With ``late_dropout``, plain
    dropout is off for the first ``late_dropout_start`` of the epochs and at
    ``late_dropout`` after them (the GISLR winners' late dropout), whatever ``dropout``.
    """
    path = stage.dropout if stage.drop_path < 0 else stage.drop_path
    if stage.late_dropout <= 0:
        return stage.dropout, path
    late = epoch > round(stage.late_dropout_start * stage.epochs)
    return (stage.late_dropout if late else 0.0), path
