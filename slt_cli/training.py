"""One stage of training: optimiser, schedule, epochs, evaluation, weight averaging.

``fit_stage`` knows nothing of checkpoints or stage order; the engine decides
where a stage starts and what is kept, and passes ``on_best`` to save.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from slt_cli.config import StageConfig
from slt_cli.data import Split
from slt_cli.data.transforms import augment, features
from slt_cli.devices import parallelise
from slt_cli.reporting import EpochMetrics, Reporter

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TensorSplit:
    """A split moved to the training device once, so batches are only index lookups."""

    x: torch.Tensor  # (N, T, J, C), NaN = missing
    y: torch.Tensor  # (N,)

    @classmethod
    def from_split(cls, split: Split, device: torch.device) -> TensorSplit:
        return cls(torch.from_numpy(split.x).to(device), torch.from_numpy(split.y).to(device))

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class StageOutcome:
    best_state: State  # weights with the best monitored metric, on the CPU
    best: EpochMetrics
    final_state: State  # weights after the last epoch (averaged ones when averaging)
    final: EpochMetrics
    seconds: float


@dataclass(frozen=True)
class StageSetup:
    """What a stage needs besides its own settings."""

    stage_idx: int
    batch_size: int  # per step, all devices together
    devices: int
    seed: int
    monitor: str  # "val_accuracy" or "val_loss"
    motion: bool
    mirror: Sequence[int] | None


class LossHead(nn.Module):
    """The model and its loss in one module, so DataParallel replicas each compute
    their own loss and only per-sample numbers are gathered on GPU 0."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor,
                label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(inputs).float()
        loss = F.cross_entropy(logits, targets, reduction="none", label_smoothing=label_smoothing)
        return loss, logits.argmax(dim=-1) == targets


def set_dropout(model: nn.Module, p: float) -> None:
    """Give every nn.Dropout of ``model`` the stage's rate."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


def cpu_state(model: nn.Module) -> State:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


@torch.no_grad()
def predict_logits(model: nn.Module, split: TensorSplit, motion: bool,
                   batch_size: int) -> torch.Tensor:
    """Logits (N, K) for a whole split, in eval mode, on the split's device."""
    was_training = model.training
    model.eval()
    outputs = [model(features(split.x[i : i + batch_size], motion)).float()
               for i in range(0, len(split), batch_size)]
    model.train(was_training)
    return torch.cat(outputs)


def score(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """Plain cross-entropy (no smoothing, so stages compare) and accuracy."""
    loss = F.cross_entropy(logits, targets).item()
    return loss, (logits.argmax(dim=-1) == targets).float().mean().item()


def fit_stage(
    model: nn.Module,
    stage: StageConfig,
    train: TensorSplit,
    val: TensorSplit,
    setup: StageSetup,
    reporter: Reporter,
    on_best: Callable[[State, EpochMetrics], None],
) -> StageOutcome:
    """Train ``model`` (bare, already on the device) for one stage.

    After every epoch the validation split is scored (on the averaged weights when
    the stage averages); each new best is handed to ``on_best`` right away, so a
    stopped run keeps it.
    """
    device = val.x.device
    set_dropout(model, stage.dropout)
    head = parallelise(LossHead(model), setup.devices)
    scorer = parallelise(model, setup.devices)
    optimizer = _optimizer(model, stage)
    batches = math.ceil(len(train) / setup.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(stage, batches))
    averaged = _averaged_model(model, stage)
    shuffle = torch.Generator().manual_seed(setup.seed * 7919 + setup.stage_idx)
    noise = torch.Generator(device=device).manual_seed(setup.seed * 7919 + setup.stage_idx)
    best: EpochMetrics | None = None
    best_state: State = {}
    started = time.perf_counter()
    for epoch in range(1, stage.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=shuffle).to(device)
        loss_sum = correct_sum = 0.0
        for batch in range(batches):
            index = order[batch * setup.batch_size : (batch + 1) * setup.batch_size]
            inputs = augment(train.x[index], stage.augment, noise, setup.mirror)
            loss, correct = head(features(inputs, setup.motion), train.y[index],
                                 label_smoothing=stage.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.mean().backward()
            if stage.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), stage.grad_clip)
            optimizer.step()
            schedule.step()
            if averaged is not None and stage.averaging == "ema":
                averaged.update_parameters(model)
            loss_sum += loss.sum().item()
            correct_sum += correct.sum().item()
            reporter.batch_done(batch=batch + 1, batches=batches, loss=loss.mean().item())
        if averaged is not None and stage.averaging == "swa" and epoch > stage.epochs // 2:
            averaged.update_parameters(model)
        judged = averaged.module if averaged is not None and averaged.n_averaged > 0 else model
        judged_scorer = scorer if judged is model else judged
        val_loss, val_accuracy = score(
            predict_logits(judged_scorer, val, setup.motion, setup.batch_size), val.y)
        is_best = best is None or is_better(
            (val_loss, val_accuracy), (best.val_loss, best.val_accuracy), setup.monitor)
        metrics = EpochMetrics(
            stage_idx=setup.stage_idx, stage_name=stage.name, epoch=epoch, epochs=stage.epochs,
            train_loss=loss_sum / len(train), train_accuracy=correct_sum / len(train),
            val_loss=val_loss, val_accuracy=val_accuracy, lr=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - epoch_started, is_best=is_best,
        )
        if metrics.is_best:
            best, best_state = metrics, cpu_state(judged)
            on_best(best_state, best)
        reporter.epoch_done(metrics)
    assert best is not None  # epochs >= 1 is checked when the config is loaded
    return StageOutcome(best_state=best_state, best=best, final_state=cpu_state(judged),
                        final=metrics, seconds=time.perf_counter() - started)


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


def _optimizer(model: nn.Module, stage: StageConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: decaying norms' gains and biases
    only pulls them away from their neutral values."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": stage.weight_decay},
              {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=stage.lr)


def _lr_factor(stage: StageConfig, batches: int) -> Callable[[int], float]:
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


def _averaged_model(model: nn.Module, stage: StageConfig) -> AveragedModel | None:
    if stage.averaging == "ema":
        return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(stage.ema_decay),
                             use_buffers=True)
    if stage.averaging == "swa":
        return AveragedModel(model, use_buffers=True)
    return None

