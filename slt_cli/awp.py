"""Adversarial weight perturbation (AWP; Wu et al. 2020), as GISLR's winners used it.

A step with AWP computes the loss's gradient, moves every weight matrix a small way up
that gradient (``size`` times the matrix's own norm), computes the gradient again at
those perturbed weights, and applies that second gradient to the unperturbed weights:
training then favours flat minima, which generalise better to unseen people. It
costs a second forward and backward pass per step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch


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
