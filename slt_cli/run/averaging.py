"""Weight averaging for a stage: an exponential moving average (EMA) or SWA.

Both are torch's ``AveragedModel``, so their state (``module.*``, ``n_averaged``)
saves and resumes like any module's. The EMA is updated after every step, where
``AveragedModel.update_parameters`` costs more than it needs to: on each call it
walks the modules, regroups every tensor by device and dtype and, on a GPU, waits
for the device to ask whether it has averaged anything yet. ``StepEma`` does the
same arithmetic with the tensor lists built once.
"""

from __future__ import annotations

import itertools
import weakref

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from slt_cli.cfg.config import StageConfig


class StepEma(AveragedModel):
    """``AveragedModel`` with an EMA of parameters and buffers, updated cheaply.

    The first update after construction (or a restore) goes through
    ``AveragedModel`` itself, which copies the weights when nothing is averaged
    yet; from then on one ``torch._foreach_lerp_`` (what torch's own EMA function
    calls) updates every tensor, so the results are the same bits. A model with a
    tensor that is not floating point keeps torch's own path.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.weight = 1.0 - decay
        # The model the lists below belong to, by weak reference: a module held as an
        # attribute would become a submodule, and its weights part of this one's state.
        self._source: weakref.ref[nn.Module] | None = None
        self._averaged: list[torch.Tensor] = []
        self._current: list[torch.Tensor] = []

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self._source is None or self._source() is not model:
            super().update_parameters(model)
            self._track(model)
            return
        torch._foreach_lerp_(self._averaged, self._current, self.weight)
        self.n_averaged += 1

    def _track(self, model: nn.Module) -> None:
        averaged = [t.detach() for t in _tensors(self.module)]
        current = [t.detach() for t in _tensors(model)]
        if all(t.is_floating_point() for t in averaged + current):
            self._source, self._averaged, self._current = weakref.ref(model), averaged, current


def averaged_model(model: nn.Module, stage: StageConfig) -> AveragedModel | None:
    """The stage's weight average of ``model``, or None when it averages nothing."""
    if stage.averaging == "ema":
        return StepEma(model, stage.ema_decay)
    if stage.averaging == "swa":
        return AveragedModel(model, use_buffers=True)
    return None


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return list(itertools.chain(model.parameters(), model.buffers()))
