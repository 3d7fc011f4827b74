"""A network that averages the predictions of several trained networks.

The members may be of any architecture; they share the data layout (features per
frame, frames, classes). The ensemble averages their softmax *probabilities* and
returns the log of that mean, so everything downstream that expects logits still
works unchanged: ``log_softmax`` of log-probabilities is the identity, so
cross-entropy is the mixture's own negative log-likelihood, ``argmax`` picks the
class of highest mean probability and ``softmax`` gives the mean probabilities.

Probabilities rather than raw logits: members trained with other label smoothing,
mixup or architectures produce logits on other scales, and a plain logit average
lets the most over-confident member decide; each member's probabilities are on one
scale, and their mean is the classic ensemble (and the one GISLR winners used).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

# the model record name of an averaged-predictions network; the config knows it, without
# torch, as cfg.settings.ENSEMBLE_MODEL
ENSEMBLE = "ensemble"


class Ensemble(nn.Module):
    """Mean of the members' probabilities, as log-probabilities ``(B, K)``.

    The members are kept in ``self.members``, so the state dict's keys are
    ``members.0.…``, ``members.1.…``: the weights load like any network's.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # log(mean_i p_i) = logsumexp_i(log p_i) - log n, computed in float32 so that
        # a confident member's tiny probabilities do not underflow.
        log_probs = torch.stack([member(x).float().log_softmax(dim=-1)
                                 for member in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))
