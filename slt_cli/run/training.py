"""One stage of training: optimiser, schedule, epochs, evaluation, weight averaging.

``StageRun`` knows nothing of checkpoints or stage order; the engine decides
where a stage starts and what is kept, and passes ``on_best`` to save.

A stage that starts from existing weights scores them first, as its epoch 0, with
the scorer of every other epoch: they are its first best, so its best weights are
never worse on validation than where it started (with a ``margin``, beyond the
validation set's noise: ``selection.py``). With ``patience``, a stage stops once
that many epochs in a row have brought no new best, counted from its half-way epoch.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slt_cli.cfg.config import StageConfig
from slt_cli.common.reporting import EpochMetrics, Reporter
from slt_cli.data.transforms import HandPoints, NoiseBank, augment, features, mix
from slt_cli.errors import TrainingDiverged
from slt_cli.run.averaging import averaged_model
from slt_cli.run.devices import autocast, parallelise
from slt_cli.run.distributed import World, all_sum, shard, wrap
from slt_cli.run.metrics import SYNC_EVERY, RunningMetrics, sharded_score
from slt_cli.run.optimizer import FlatGradients, build_optimizer, lr_factor
from slt_cli.run.regularisers import adversarial_weights, set_dropout, stage_dropout
from slt_cli.run.scoring import State, TensorSplit, cpu_state, predict_logits, score
from slt_cli.run.selection import Scored, Selection, per_clip

# An extra loss term: (inputs, logits, per-sample loss) -> the per-sample loss to train on
# (``distill`` blends in a teacher's soft targets on the very batch the student sees).
LossTerm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StageOutcome:
    best_state: State  # weights with the best monitored metric, on the CPU
    best: EpochMetrics
    final_state: State  # weights after the last epoch (averaged ones when averaging)
    final: EpochMetrics
    seconds: float
    epochs_run: int  # epochs trained: fewer than the stage's when patience stopped it
    start_kept_because: str | None = None  # why no trained epoch replaced the start


@dataclass(frozen=True)
class StageSetup:
    """What a stage needs besides its own settings."""

    stage_idx: int
    batch_size: int  # per step, all devices of this process together
    devices: int  # DataParallel over this many GPUs when > 1
    seed: int
    monitor: str  # "val_accuracy" or "val_loss"
    min_batches: int  # an epoch repeats a small training set to reach this many batches
    motion: bool
    mirror: Sequence[int] | None
    hands: Sequence[HandPoints] = ()  # ``hand_points``: what hand_scale and hand_rotate move
    precision: str = "fp32"  # "bf16": forward passes under bf16 autocast (weights stay fp32)
    compile: bool = False  # torch.compile the training and scoring passes
    world: World = World()  # the processes of a torchrun run (DDP); one by default
    score_start: bool = False  # score the starting weights as epoch 0 before training
    margin: float = 0.0  # standard errors a validation gain must exceed (selection.py)
    mirror_average: bool = False  # validation scores a clip and its mirror (with ``mirror``)
    extra_loss: LossTerm | None = None  # reshapes each step's per-sample loss; None: off


class LossHead(nn.Module):
    """The model and its loss in one module, so DataParallel replicas each compute
    their own loss and only per-sample numbers are gathered on GPU 0. Autocast is
    entered here, inside the replica, because its state belongs to the thread."""

    def __init__(self, model: nn.Module, precision: str = "fp32",
                 extra_loss: LossTerm | None = None) -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.extra_loss = extra_loss

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0,
                partners: torch.Tensor | None = None,
                weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample loss and correctness; with mixup, the loss blends each target
        with its partner's by ``weights`` (a sample's own share, >= 0.5)."""
        with autocast(inputs.device, self.precision):
            logits = self.model(inputs)
        logits = logits.float()
        loss = F.cross_entropy(logits, targets, reduction="none", label_smoothing=label_smoothing)
        if partners is not None and weights is not None:
            other = F.cross_entropy(logits, partners, reduction="none",
                                    label_smoothing=label_smoothing)
            loss = torch.lerp(other, loss, weights.float())
        if self.extra_loss is not None:
            loss = self.extra_loss(inputs, logits, loss)
        return loss, logits.argmax(dim=-1) == targets


class StageInterrupted(Exception):
    """Raised between two batches when a stop was asked for; the run is resumable."""


class StageRun:
    """One stage's training: the loop and every piece of state a resume needs.

    The position is ``(epoch, batch)``: the epoch in progress (1-based; 0 while the
    starting weights are still to be scored) and how many of its batches are done.
    ``snapshot`` / ``restore`` carry all of it, random number generators included, so
    a resumed stage retraces the uninterrupted one step for step.
    """

    def __init__(self, model: nn.Module, stage: StageConfig, train: TensorSplit,
                 val: TensorSplit, setup: StageSetup, reporter: Reporter) -> None:
        self.model, self.stage, self.train, self.val = model, stage, train, val
        self.setup, self.reporter = setup, reporter
        device, world = val.x.device, setup.world
        set_dropout(model, *stage_dropout(stage, 1))
        head = LossHead(model, setup.precision, setup.extra_loss)
        if world.distributed:  # one device per process; each scores its shard of val
            self.head, self.scorer = wrap(head, device), model
            self.val_shard = TensorSplit(val.x[world.rank::world.size],
                                         val.y[world.rank::world.size])
        else:
            self.head = parallelise(head, setup.devices)
            self.scorer = parallelise(model, setup.devices)
        if setup.compile and setup.devices == 1:  # DataParallel's threads defeat compile
            self.head, self.scorer = torch.compile(self.head), torch.compile(self.scorer)
        self.optimizer = build_optimizer(model, stage)
        self.parameters = list(model.parameters())  # listed once, not on every clip
        self.gradients = FlatGradients(self.parameters)
        # With 150 sequences an epoch would be 3 steps and a stage a few dozen: small
        # sets are repeated within an epoch so that every set gets a fair number of steps.
        self.repeats = max(1, math.ceil(
            setup.min_batches * setup.batch_size * world.size / len(train)))
        self.shard_size = math.ceil(len(train) * self.repeats / world.size)  # per process
        self.batches = math.ceil(self.shard_size / setup.batch_size)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(stage, self.batches))
        self.averaged = averaged_model(model, stage)
        seed = setup.seed * 7919 + setup.stage_idx
        torch.manual_seed(seed)  # dropout draws repeat exactly
        self.shuffle = torch.Generator().manual_seed(seed)
        self.noise = torch.Generator(device=device).manual_seed(seed)
        self.bank = NoiseBank(seed, device) if stage.augment.jitter > 0 else None
        self.mirror = None if setup.mirror is None else torch.as_tensor(setup.mirror, device=device)
        self.hands = tuple((torch.as_tensor(points, device=device), wrist)
                           for points, wrist in setup.hands)
        self.epoch, self.batch = (0 if setup.score_start else 1), 0
        self.epoch_order_state = self.shuffle.get_state()  # this epoch's order is drawn from it
        self.metrics = RunningMetrics(device, world)
        self.loss: float | None = None  # the latest training loss read from the device
        self.best: EpochMetrics | None = None
        self.selection = Selection(setup.monitor, setup.margin)
        self.best_state: State = {}
        self.last: EpochMetrics | None = None  # the latest finished epoch
        self.elapsed = 0.0  # seconds of training, across interruptions

    def run(self, on_best: Callable[[State, EpochMetrics], None],
            on_epoch_end: Callable[[StageRun], None],
            should_stop: Callable[[], bool]) -> StageOutcome:
        """Train to the stage's last epoch from wherever the stage stands, or until
        ``patience`` epochs in a row bring no new best.

        Epoch 0, when the stage has one, scores the starting weights and makes them
        the first best. Each new best is handed to ``on_best`` at once, so a stopped
        run keeps it; ``on_epoch_end`` is called after each epoch, epoch 0 included
        (the engine saves resume state).

        Raises:
            StageInterrupted: after the current batch, once ``should_stop()`` is true.
            TrainingDiverged: when the loss or the validation score is not finite.
        """
        started = time.perf_counter() - self.elapsed
        if self.epoch == 0:
            self._finish_epoch(self._score_start(), started, on_best, on_epoch_end)
        while self.epoch <= self.stage.epochs and not self.out_of_patience:
            epoch_started = time.perf_counter()
            set_dropout(self.model, *stage_dropout(self.stage, self.epoch))
            self.model.train()
            self.shuffle.set_state(self.epoch_order_state)
            size = len(self.train)
            order = torch.randperm(size * self.repeats, generator=self.shuffle) % size
            order = shard(order, self.setup.world).to(self.val.x.device)
            if self.bank is not None:
                self.bank.new_epoch(self.epoch, self.batches,
                                    self.setup.batch_size * self.train.x[0].numel(),
                                    self.train.x.dtype)
            for batch in range(self.batch, self.batches):
                self._step(order[batch * self.setup.batch_size:
                                 (batch + 1) * self.setup.batch_size], batch)
                self.batch = batch + 1
                self.reporter.batch_done(batch=self.batch, batches=self.batches, loss=self.loss)
                if self._stop_here(should_stop):
                    self.elapsed = time.perf_counter() - started
                    raise StageInterrupted
            self._finish_epoch(self._end_epoch(time.perf_counter() - epoch_started),
                               started, on_best, on_epoch_end)
        assert self.best and self.last  # epochs >= 1 is checked when the config is loaded
        return StageOutcome(best_state=self.best_state, best=self.best,
                            final_state=cpu_state(self._judged()), final=self.last,
                            seconds=self.elapsed, epochs_run=self.last.epoch,
                            start_kept_because=self.selection.why_start_kept()
                            if self.best.epoch == 0 else None)

    @property
    def out_of_patience(self) -> bool:
        """Whether ``patience`` epochs in a row have passed without a new best, counted
        from the stage's half-way epoch at the earliest: a warm restart first makes a
        model worse, and must have the time to recover (and, with SWA, which averages
        the second half, to average) before it is judged. Read from the best and the
        latest epoch alone, so a resumed stage stops where the uninterrupted one did."""
        patience, best, last = self.stage.patience, self.best, self.last
        return bool(patience and best and last
                    and last.epoch - max(best.epoch, self.stage.epochs // 2) >= patience)

    def _finish_epoch(self, metrics: EpochMetrics, started: float,
                      on_best: Callable[[State, EpochMetrics], None],
                      on_epoch_end: Callable[[StageRun], None]) -> None:
        """Keep a new best, report the epoch and move on to the next one."""
        self.elapsed = time.perf_counter() - started  # a best's training time includes it
        if metrics.is_best:
            self.best, self.best_state = metrics, cpu_state(self._judged())
            on_best(self.best_state, metrics)
        self.reporter.epoch_done(metrics)
        self.epoch, self.batch = self.epoch + 1, 0
        self.epoch_order_state = self.shuffle.get_state()
        self.metrics.reset()
        self.last = metrics
        on_epoch_end(self)

    def _step(self, index: torch.Tensor, batch: int) -> None:
        stage, setup = self.stage, self.setup
        # index_select, not x[index]: the same rows, gathered several times faster
        clips = self.train.x.index_select(0, index)
        noise = None if self.bank is None else self.bank.window(batch)
        inputs = features(augment(clips, stage.augment, self.noise, self.mirror, noise,
                                  self.hands),
                          setup.motion)
        targets, partners, weights = self.train.y.index_select(0, index), None, None
        if stage.augment.mixup > 0:
            inputs, order, weights = mix(inputs, stage.augment.mixup, self.noise)
            partners = targets[order]
        loss, correct = self.head(inputs, targets, label_smoothing=stage.label_smoothing,
                                  partners=partners, weights=weights)
        mean_loss = loss.mean()
        self.gradients.zero()
        mean_loss.backward()
        if stage.awp > 0:  # the step follows the gradient at the perturbed weights
            with adversarial_weights(self.parameters, stage.awp):
                self.gradients.zero()
                perturbed, _ = self.head(inputs, targets, label_smoothing=stage.label_smoothing,
                                         partners=partners, weights=weights)
                perturbed.mean().backward()
        if stage.grad_clip > 0:
            self.gradients.clip(stage.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        if self.averaged is not None and stage.averaging == "ema":
            self.averaged.update_parameters(self.model)
        self.metrics.add(loss.detach(), correct)

    def _stop_here(self, should_stop: Callable[[], bool]) -> bool:
        """Whether to stop after the batch just done. Every ``SYNC_EVERY`` batches, at
        the epoch's end and before a stop, the losses are read off the device and
        checked (a non-finite one names its batch). The processes of a torchrun run
        read, and agree to stop, at those batches only."""
        due = self.batch % SYNC_EVERY == 0 or self.batch == self.batches
        stop = should_stop()
        if not due and (self.setup.world.distributed or not stop):
            return False
        losses, stop = self.metrics.settle(stop)
        first = self.batch - len(losses) + 1
        for offset, value in enumerate(losses):
            if not math.isfinite(value):
                raise self._diverged(f"the training loss became {value} at epoch "
                                     f"{self.epoch}, batch {first + offset}")
        self.loss = losses[-1] if losses else self.loss
        return stop

    def _score_start(self) -> EpochMetrics:
        """Epoch 0: the starting weights, scored before any training."""
        scoring_started = time.perf_counter()
        val_loss, val_accuracy, is_best = self._validate()
        return EpochMetrics(
            stage_idx=self.setup.stage_idx, stage_name=self.stage.name, epoch=0,
            epochs=self.stage.epochs, train_loss=None, train_accuracy=None, val_loss=val_loss,
            val_accuracy=val_accuracy, lr=self.optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - scoring_started, is_best=is_best)

    def _end_epoch(self, seconds: float) -> EpochMetrics:
        stage = self.stage
        if self.averaged is not None and stage.averaging == "swa" and (
                self.epoch > stage.epochs // 2):
            self.averaged.update_parameters(self.model)
        val_loss, val_accuracy, is_best = self._validate()
        size = self.shard_size * self.setup.world.size
        loss_sum, hits = self.metrics.totals()
        return EpochMetrics(
            stage_idx=self.setup.stage_idx, stage_name=stage.name, epoch=self.epoch,
            epochs=stage.epochs, train_loss=loss_sum / size,
            train_accuracy=hits / size, val_loss=val_loss,
            val_accuracy=val_accuracy, lr=self.optimizer.param_groups[0]["lr"],
            seconds=seconds, is_best=is_best)

    def _validate(self) -> tuple[float, float, bool]:
        """Validation loss and accuracy of the judged weights, and whether they are a
        new best of the stage; the same for every epoch, epoch 0 included."""
        judged = self._judged()
        scorer = self.scorer if judged is self.model else judged
        setup, world = self.setup, self.setup.world
        mirror = self.mirror if setup.mirror_average else None
        values = torch.zeros(0, dtype=torch.float64)  # per clip, read only with a margin
        if world.distributed:
            logits = predict_logits(scorer, self.val_shard, setup.motion, setup.batch_size,
                                    setup.precision, mirror)
            val_loss, val_accuracy = sharded_score(logits, self.val_shard.y, world)
            if setup.margin > 0:  # every process holds every clip's value: all judge alike
                clips = torch.zeros(len(self.val), dtype=torch.float64, device=logits.device)
                clips[world.rank::world.size] = per_clip(logits, self.val_shard.y,
                                                         setup.monitor).to(logits.device)
                values = all_sum(clips, world).cpu()
        else:
            logits = predict_logits(scorer, self.val, setup.motion, setup.batch_size,
                                    setup.precision, mirror)
            val_loss, val_accuracy = score(logits, self.val.y)
            if setup.margin > 0:
                values = per_clip(logits, self.val.y, setup.monitor)
        if not math.isfinite(val_loss):
            raise self._diverged(f"the validation loss became {val_loss} at epoch {self.epoch}")
        is_best = self.selection.consider(Scored(self.epoch, val_loss, val_accuracy, values))
        return val_loss, val_accuracy, is_best

    def _judged(self) -> nn.Module:
        """The weights validation scores: the average once there is one."""
        averaged = self.averaged
        return averaged.module if averaged is not None and averaged.n_averaged > 0 else self.model

    def _diverged(self, what: str) -> TrainingDiverged:
        kept = (f"the best weights so far (epoch {self.best.epoch}) are saved"
                if self.best else "no weights of this stage were saved")
        return TrainingDiverged(
            f"stage {self.setup.stage_idx} ({self.stage.name}): {what}; {kept}",
            hint="Lower the stage's lr, or set grad_clip, then train again.")

    # --- resume ------------------------------------------------------------------------

    def snapshot(self) -> tuple[State, dict[str, Any]]:
        """Everything needed to carry on later: tensors, and plain values for JSON."""
        tensors = {f"model.{k}": v for k, v in cpu_state(self.model).items()}
        tensors |= {f"best.{k}": v for k, v in self.best_state.items()}
        if self.averaged is not None:
            tensors |= {f"averaged.{k}": v for k, v in cpu_state(self.averaged).items()}
        judged, selection = self.selection.snapshot()
        tensors |= judged
        optimizer = self.optimizer.state_dict()
        for index, values in optimizer["state"].items():
            tensors |= {f"optimizer.{index}.{k}": torch.as_tensor(v) for k, v in values.items()}
        tensors["rng.global"] = torch.get_rng_state()
        tensors["rng.order"] = self.epoch_order_state
        tensors["rng.noise"] = self.noise.get_state()
        if self.val.x.is_cuda:
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.val.x.device)
        schedule = {k: v for k, v in self.schedule.state_dict().items() if k != "lr_lambdas"}
        loss_sum, hits = self.metrics.totals()  # over every process (torchrun)
        values = {"epoch": self.epoch, "batch": self.batch, "loss_sum": loss_sum,
                  "correct_sum": hits, "elapsed": self.elapsed,
                  "best": dataclasses.asdict(self.best) if self.best else None,
                  "last": dataclasses.asdict(self.last) if self.last else None,
                  "schedule": schedule, "optimizer_groups": optimizer["param_groups"],
                  "selection": selection}
        return tensors, values

    def restore(self, tensors: State, values: dict[str, Any]) -> None:
        """Put the stage back where ``snapshot`` found it."""
        def part(prefix: str) -> State:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        device = self.val.x.device
        self.model.load_state_dict(part("model."))
        self.best_state = part("best.")
        if self.averaged is not None:
            self.averaged.load_state_dict(part("averaged."))
        moments: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in part("optimizer.").items():
            index, name = key.split(".", 1)
            moments.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": moments,
                                        "param_groups": values["optimizer_groups"]})
        self.schedule.load_state_dict({**values["schedule"],
                                       "lr_lambdas": [None] * len(self.optimizer.param_groups)})
        torch.set_rng_state(tensors["rng.global"])
        if "rng.cuda" in tensors and device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], device)
        self.epoch_order_state = tensors["rng.order"]
        self.noise.set_state(tensors["rng.noise"])
        self.epoch, self.batch = values["epoch"], values["batch"]
        self.metrics.reset(values["loss_sum"], values["correct_sum"])
        self.elapsed = values["elapsed"]
        self.best = EpochMetrics(**values["best"]) if values["best"] else None
        self.last = EpochMetrics(**values["last"]) if values["last"] else None
        self.selection.restore(tensors, values.get("selection", {}))
