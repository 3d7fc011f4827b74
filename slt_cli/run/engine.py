"""The staged run: one engine behind ``train``, ``continue``, ``evaluate`` and ``smoke``.

A ``Trainer`` holds what every door shares (config, checkpoint folder, device,
reporter); each method prepares a starting point and runs stages through
``training.StageRun``. It returns results and never prints.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from slt_cli.cfg.config import Config, DataConfig, StageConfig, continue_preset
from slt_cli.common.reporting import EpochMetrics, Reporter
from slt_cli.data import PreparedData, load_configured
from slt_cli.data.transforms import (
    hand_points,
    mirror_permutation,
)
from slt_cli.errors import CheckpointError, DataError, RunInterrupted, SltError
from slt_cli.models.ensemble import Ensemble
from slt_cli.run.caveats import run_caveats
from slt_cli.run.devices import describe, device_count, resolve_device, resolve_precision
from slt_cli.run.distributed import barrier, world_from_environment
from slt_cli.run.distributed import start as join_process_group
from slt_cli.run.history import EpochRow
from slt_cli.run.metrics import improvement, signer_labels, split_scores
from slt_cli.run.plan import RunPlan, Step
from slt_cli.run.records import (
    build_network,
    checked_record,
    load_state,
    model_record,
    source_moved,
    stage_sidecar,
    start_misfits,
)
from slt_cli.run.results import Evaluation, RunResult, StageResult
from slt_cli.run.runfolder import RunFolder
from slt_cli.run.teaching import soft_targets, teacher_names
from slt_cli.run.trackers import Tracking, open_tracking
from slt_cli.run.training import (
    StageInterrupted,
    StageRun,
    StageSetup,
    State,
    TensorSplit,
    predict_logits,
)
from slt_cli.store.checkpoints import (
    ARCHIVE_FOLDER,
    best_checkpoint_name,
    free_name,
    load_weights,
    new_run_id,
    read_sidecar,
    sidecar_path,
    stage_checkpoint_name,
)


@dataclass
class _Start:
    """The weights a stage starts from and how well they scored."""

    state: State | None
    checkpoint: str | None
    metrics: tuple[float, float] | None  # (val_loss, val_accuracy)


@dataclass(frozen=True)
class _Run:
    """What every step of one plan shares."""

    plan_config: Config
    data: PreparedData
    model: nn.Module
    train: TensorSplit  # moved to the device once per run, not once per stage
    val: TensorSplit
    devices: int  # GPUs this process drives

    @property
    def batch_size(self) -> int:
        """Sequences per step in this process (all its DataParallel GPUs together)."""
        return self.plan_config.run.batch_size * self.devices


class Trainer:
    """The engine. ``Trainer(config).train()`` runs every stage of ``config``.

    Every run follows a ``plan.RunPlan``: its steps (one stage each, with the names it
    saves under) and how far it got. The plan is saved with the training state after
    every epoch, so ``resume()`` can carry on from it. The doors never change the
    Trainer: what a run uses (a continued checkpoint's data, a resumed run's config)
    is in its plan.

    Args:
        config: A loaded, checked configuration (``config.load_config``).
        checkpoint_dir: Where checkpoints live; defaults to ``config.run.checkpoint_dir``.
        device: ``auto``, ``cpu`` or ``cuda``.
        reporter: Receives progress events; silent by default.

    Started by torchrun, each process makes its own Trainer: it joins the process
    group, trains with DistributedDataParallel on its own device, and only rank 0
    takes the folder lock, writes files and reports (the others get a silent
    reporter), so the files are the ones a single process would write.
    """

    def __init__(self, config: Config, *, checkpoint_dir: Path | str | None = None,
                 device: str = "auto", reporter: Reporter | None = None) -> None:
        self.config = config
        self.checkpoint_dir = Path(checkpoint_dir or config.run.checkpoint_dir)
        self.world = world_from_environment()
        self.device = resolve_device(device, self.world.local_rank
                                     if self.world.distributed else None)
        join_process_group(self.world, self.device)
        self.folder = RunFolder(self.checkpoint_dir, writes=self.world.is_main)
        self.reporter = (reporter or Reporter()) if self.world.is_main else Reporter()
        self._stop = threading.Event()

    def request_stop(self) -> None:
        """Ask the run to stop after the current batch and save its resume state
        (safe to call from a signal handler)."""
        self._stop.set()

    # --- the doors ---------------------------------------------------------------------

    def train(self, stages: Sequence[int] | None = None, *, force: bool = False) -> RunResult:
        """Run the selected stages (1-based; all by default) in order.

        Each stage starts from the best weights of the stage before it (this run's,
        or ``best_model_stage_{N-1}`` on disk) and scores them first (its epoch 0), so
        its best is never worse than its start. The run stops after a stage whose
        best did not beat its starting point by ``improvement_threshold``, unless
        ``force`` (threshold -1.0) is set. Earlier files it would overwrite are
        moved into ``archive/<run_id>/`` first.
        """
        config = self.config
        selected = list(stages) if stages else list(range(1, len(config.stages) + 1))
        data = self._data(config.data, config.run.seed)
        record = model_record(config.model.name, config.model.settings, data)
        steps = tuple(Step(stage_idx=i, saved_idx=i, stage=config.stages[i - 1],
                           best_name=best_checkpoint_name(i),
                           final_name=stage_checkpoint_name(i, config.stages[i - 1].name))
                      for i in selected)
        run_id = new_run_id()
        with self._holding(run_id, refuse_interrupted=True):
            start = self._saved_start(config, selected[0] - 1, record)
            plan = self._plan("train", run_id, config, data, record, steps, start,
                              threshold=-1.0 if force else config.run.improvement_threshold)
            # a tracker's store that cannot open stops the run before any file is moved
            with self._tracking(plan) as tracking:
                archived = self._archive([name for step in steps
                                          for name in (step.best_name, step.final_name)], run_id)
                return self._execute(plan, data, start.state, tracking, archived=archived)

    def continue_from(self, name: str, preset: str, *, epochs: int | None = None) -> StageResult:
        """Train further from checkpoint ``name`` with ``[continue.<preset>]``.

        The network and data are rebuilt from the checkpoint's sidecar (not from the
        current config); the result is saved beside it as ``<name>_<preset>`` (with a
        number when that exists) and records ``name`` as its parent.
        """
        stage = continue_preset(self.config, preset)
        if epochs is not None:
            stage = dataclasses.replace(stage, epochs=epochs)
        sidecar = read_sidecar(self.checkpoint_dir, name)
        # The checkpoint's data and seed (which fix its split, a cross-validation fold's
        # too) travel on into the new sidecar and resume state, not the current config's.
        config = dataclasses.replace(
            self.config, data=sidecar.config.data,
            run=dataclasses.replace(self.config.run, seed=sidecar.config.run.seed))
        data = self._data(config.data, config.run.seed)
        record = checked_record(name, sidecar, data)
        run_id = new_run_id()
        with self._holding(run_id, refuse_interrupted=True):
            start = _Start(load_weights(self.checkpoint_dir, name, sidecar), name,
                           (sidecar.val_loss, sidecar.val_accuracy))
            step = Step(stage_idx=sidecar.stage_idx + 1, saved_idx=sidecar.stage_idx,
                        stage=stage, best_name=free_name(self.checkpoint_dir, f"{name}_{preset}"),
                        final_name=None)
            plan = self._plan("continue", run_id, config, data, record, (step,), start,
                              threshold=-1.0)
            with self._tracking(plan) as tracking:
                return self._execute(plan, data, start.state, tracking).stages[0]

    def resume(self, kind: str = "train") -> RunResult:
        """Carry on the interrupted ``kind`` run (``train`` or ``continue``) in the
        checkpoint folder from its last saved position, as if it had never stopped."""
        with self._holding("resume", refuse_interrupted=False):
            plan, values, tensors = self.folder.load_state()
            if plan.kind != kind:
                raise SltError(f"the interrupted run in {self.checkpoint_dir} is "
                               f"`slt {plan.kind}`, not `slt {kind}`",
                               hint=f"Resume it with `slt {plan.kind} --resume`.")
            data = self._data(plan.data, plan.data_seed)
            record = plan.record
            if model_record(record["name"], record["settings"], data) != record:
                raise DataError(f"the data of run {plan.run_id} changed since it stopped",
                                hint="Put the data back as it was, or start a new run.")
            with self._tracking(plan) as tracking:
                self.reporter.note(f"resuming run {plan.run_id} at step "
                                   f"{plan.position + 1}, epoch {values['epoch']}")
                # the epochs it trains again are recorded again
                self.folder.forget(plan.run_id, {
                    step.saved_idx: values["epoch"] if i == 0 else 0
                    for i, step in enumerate(plan.steps[plan.position:])})
                return self._execute(plan, data, None, tracking, snapshot=(tensors, values))

    def evaluate(self, name: str, *, data_spec: str | None = None,
                 split: str = "val") -> Evaluation:
        """Score checkpoint ``name`` on a split of its own data, or of ``data_spec``."""
        sidecar = read_sidecar(self.checkpoint_dir, name)
        data_config = sidecar.config.data
        if data_spec is not None:
            data_config = dataclasses.replace(data_config, source=data_spec)
        # another source's landmarks are matched to the checkpoint's by meaning
        data = load_configured(data_config, sidecar.config.run.seed, self.reporter,
                               joints=sidecar.joints if data_spec is not None else None)
        model = self._build(checked_record(name, sidecar, data), self.config.run.seed)
        load_state(model, load_weights(self.checkpoint_dir, name, sidecar), name)
        chosen = data.split(split)
        target = self._tensors(data, split, data_config)
        # As validation scored it in training: the checkpoint's own setting decides.
        mirror = (mirror_permutation(data.joints)
                  if sidecar.config.run.mirror_average else None)
        logits = predict_logits(model, target, data.motion,
                                self.config.run.batch_size * self._device_count(self.config),
                                resolve_precision(self.config.run.precision, self.device),
                                mirror)
        return Evaluation(checkpoint=name, source=data.source, split=split, count=len(target),
                          classes=tuple(data.classes),
                          **split_scores(logits, target.y, data.classes,
                                         signer_labels(chosen.signer, data.signer_names)))

    # --- running a plan ----------------------------------------------------------------

    def _plan(self, kind: str, run_id: str, config: Config, data: PreparedData,
              record: dict[str, Any], steps: tuple[Step, ...], start: _Start,
              threshold: float) -> RunPlan:
        # As loaded: the frame count the data decided, so a resume never recomputes it.
        data_config = dataclasses.replace(config.data, source=data.source,
                                          frames=data.num_frames)
        return RunPlan(kind=kind, run_id=run_id, config=config, data=data_config,
                       data_seed=config.run.seed, record=record, steps=steps,
                       threshold=threshold, start_checkpoint=start.checkpoint,
                       start_metrics=start.metrics)

    def _tracking(self, plan: RunPlan) -> Tracking:
        """TensorBoard, MLflow ([run] log_to), opened before a run changes any file: a
        store that cannot open raises SltError here. A context manager that ends the
        trackers' runs."""
        return open_tracking(plan, self.checkpoint_dir, self.reporter,
                             active=self.folder.writes)

    def _execute(self, plan: RunPlan, data: PreparedData, start_state: State | None,
                 tracking: Tracking, *, archived: Sequence[str] = (),
                 snapshot: tuple[State, dict[str, Any]] | None = None) -> RunResult:
        """Run ``plan``'s steps from its position; that step may be half done
        (``snapshot``). Clears the resume state when the plan is done. ``tracking``: the
        trackers the caller opened (and ends)."""
        run = self._prepare(plan, data)
        self._report_start(plan, run)
        start = _Start(start_state, plan.start_checkpoint, plan.start_metrics)
        stopped = None
        held: dict[str, State] = {}  # this run's stage bests in memory, for teachers
        for position in range(plan.position, len(plan.steps)):
            plan = plan.at(position)
            result, start = self._run_step(plan, run, start, snapshot, held, tracking)
            held[result.checkpoint] = start.state  # type: ignore[assignment]  # never None
            snapshot = None
            plan = plan.after(result)
            if position < len(plan.steps) - 1 and result.gain is not None and (
                    result.gain < plan.threshold):
                stopped = (f"stage {result.stage_idx} ({result.name}) improved "
                           f"{plan.config.run.monitor} by {result.gain:+.4f}, less than "
                           f"the threshold {plan.threshold}; use --force to run every stage")
                self.reporter.note(stopped)
                break
        self.folder.clear_state()
        barrier(self.world)  # every process returns once rank 0's files are written
        return plan.outcome(stopped, tuple(archived))

    def _prepare(self, plan: RunPlan, data: PreparedData) -> _Run:
        return _Run(plan_config=plan.config, data=data,
                    model=self._build(plan.record, plan.config.run.seed),
                    train=self._tensors(data, "train", plan.data),
                    val=self._tensors(data, "val", plan.data),
                    devices=self._device_count(plan.config))

    def _tensors(self, data: PreparedData, split: str, settings: DataConfig) -> TensorSplit:
        return TensorSplit.as_trained(data, split, self.device, settings.dominant_hand)

    def _report_start(self, plan: RunPlan, run: _Run) -> None:
        config = plan.config
        self.reporter.run_started(
            stages=[(step.saved_idx, step.stage.name) for step in plan.steps[plan.position:]],
            device=describe(self.device, config.run, self.world),
            devices=run.devices * self.world.size, batch_size=run.batch_size * self.world.size,
            train_size=len(run.train), val_size=len(run.val))
        for caveat in run_caveats(plan, run.data, run.devices):
            self.reporter.note(caveat)

    def _run_step(self, plan: RunPlan, run: _Run, start: _Start,
                  snapshot: tuple[State, dict[str, Any]] | None,
                  held: Mapping[str, State],
                  tracking: Tracking) -> tuple[StageResult, _Start]:
        """Train one stage from ``start`` (or from ``snapshot``), saving each new best."""
        step, config, data = plan.step, plan.config, run.data
        stage = step.fitted(data.num_frames)
        teacher = self._teacher(plan, stage, start, held)
        if start.state is not None and snapshot is None:
            load_state(run.model, start.state, start.checkpoint)

        def save(name: str, state: State, metrics: EpochMetrics, seconds: float) -> None:
            if self.folder.writes:  # the others hold the same weights: one writer
                self.folder.save(name, state, stage_sidecar(
                    config, step.saved_idx, stage, metrics, seconds, plan.record, data,
                    start.checkpoint, plan.run_id, stage_time=seconds))  # the stage so far

        def save_resume_state(stage_run: StageRun) -> None:
            tensors, values = stage_run.snapshot()  # every process: it sums their metrics
            self.folder.save_state(plan, values, tensors)

        def end_epoch(stage_run: StageRun) -> None:
            if stage_run.last is not None:  # before the resume state
                row = EpochRow.from_metrics(
                    stage_run.last, run_id=plan.run_id, kind=plan.kind,
                    stage_idx=step.saved_idx, checkpoint=step.best_name,
                    parent=start.checkpoint)
                self.folder.log(row)
                tracking.epoch(row)  # never raises: a failing tracker is dropped
            save_resume_state(stage_run)

        settings = config.run
        precision = resolve_precision(settings.precision, self.device)
        setup = StageSetup(stage_idx=step.stage_idx, batch_size=run.batch_size,
                           devices=run.devices, seed=settings.seed, monitor=settings.monitor,
                           motion=data.motion, min_batches=settings.min_batches_per_epoch,
                           mirror=mirror_permutation(data.joints),
                           hands=hand_points(data.joints),
                           precision=precision,
                           compile=settings.compile, world=self.world,
                           score_start=start.state is not None,
                           mirror_average=settings.mirror_average,
                           margin=settings.selection_margin,
                           extra_loss=None if teacher is None else soft_targets(
                               teacher, stage.teacher_alpha, stage.teacher_temperature,
                               precision))
        stage_run = StageRun(run.model, stage, run.train, run.val, setup, self.reporter)
        self.reporter.stage_started(
            stage_idx=step.saved_idx, name=stage.name, description=stage.description,
            epochs=stage.epochs, batches=stage_run.batches,
            start=start.checkpoint or "fresh weights")
        if snapshot is not None:
            stage_run.restore(*snapshot)
        else:
            save_resume_state(stage_run)  # resumable from its very first batch
        try:
            outcome = stage_run.run(
                on_best=lambda state, metrics: save(step.best_name, state, metrics,
                                                    stage_run.elapsed),
                on_epoch_end=end_epoch, should_stop=self._stop.is_set)
        except StageInterrupted:
            save_resume_state(stage_run)
            raise RunInterrupted(
                f"stopped in stage {step.saved_idx} ({stage.name}), epoch {stage_run.epoch},"
                f" after batch {stage_run.batch}; the state to resume from is saved",
                hint=f"Carry on with: slt {plan.kind} --resume "
                     f"--checkpoint-dir {self.checkpoint_dir}") from None
        if step.final_name is not None:
            save(step.final_name, outcome.final_state, outcome.final, outcome.seconds)
        # the best was saved mid-stage: give it the whole stage's time
        self.folder.update(step.best_name, stage_time=round(outcome.seconds, 3))
        if outcome.start_kept_because:
            self.reporter.note(f"stage {step.saved_idx} ({stage.name}) kept its start: "
                               f"{outcome.start_kept_because}")
        if outcome.epochs_run < stage.epochs:
            self.reporter.note(
                f"stage {step.saved_idx} ({stage.name}) stopped early at epoch "
                f"{outcome.epochs_run} of {stage.epochs}: no gain for {stage.patience} epoch"
                f"{'s' if stage.patience > 1 else ''}")
        best = (outcome.best.val_loss, outcome.best.val_accuracy)
        gain = None if start.metrics is None else improvement(best, start.metrics,
                                                              settings.monitor)
        result = StageResult(
            stage_idx=step.saved_idx, name=stage.name, description=stage.description,
            val_loss=best[0], val_accuracy=best[1], best_epoch=outcome.best.epoch,
            epochs=stage.epochs, training_time=outcome.seconds, checkpoint=step.best_name,
            final_checkpoint=step.final_name, parent=start.checkpoint, gain=gain,
            epochs_run=outcome.epochs_run)
        self.reporter.stage_done(result)
        tracking.stage_done(result)
        return result, _Start(outcome.best_state, step.best_name, best)

    def _teacher(self, plan: RunPlan, stage: StageConfig, start: _Start,
                 held: Mapping[str, State]) -> nn.Module | None:
        """The frozen network a stage with ``teacher`` learns from (``teaching``)."""
        names = teacher_names(stage, start.checkpoint, plan.results)
        if not names:
            if names is not None:
                self.reporter.note(f"stage {plan.step.saved_idx} ({stage.name}) has no "
                                   f"teacher ({stage.teacher}): it learns from labels alone")
            return None
        members = []
        for name in names:  # held in memory, or on disk when the run was resumed
            state = held.get(name) or load_weights(self.checkpoint_dir, name,
                                                   read_sidecar(self.checkpoint_dir, name))
            members.append(self._build(plan.record, plan.config.run.seed))
            load_state(members[-1], state, name)
        return members[0] if len(members) == 1 else Ensemble(members)

    @contextmanager
    def _holding(self, run_id: str, *, refuse_interrupted: bool) -> Iterator[None]:
        """Hold the checkpoint folder while the block runs: rank 0 (the only process
        without torchrun) takes the lock and tidies what a killed run left; the other
        processes wait for that, then only read."""
        with self.folder.hold(run_id, refuse_interrupted=refuse_interrupted):
            barrier(self.world)
            yield

    def _archive(self, names: list[str], run_id: str) -> list[str]:
        """Move aside the earlier files of ``names`` and what was trained from them."""
        archived, orphaned = self.folder.archive(names, run_id)
        if archived:
            trained_from = (f", {len(orphaned)} of them trained from the stages this run "
                            f"replaces ({', '.join(orphaned)})" if orphaned else "")
            self.reporter.note(f"moved {len(archived)} earlier checkpoint(s) to "
                               f"{self.checkpoint_dir / ARCHIVE_FOLDER / run_id}{trained_from}")
        return archived

    # --- shared machinery --------------------------------------------------------------

    def _saved_start(self, config: Config, stage_idx: int, record: dict[str, Any]) -> _Start:
        """Start from ``best_model_stage_{stage_idx}`` on disk when it exists."""
        name = best_checkpoint_name(stage_idx)
        if stage_idx < 1 or not sidecar_path(self.checkpoint_dir, name).is_file():
            return _Start(None, None, None)
        sidecar = read_sidecar(self.checkpoint_dir, name)
        if misfits := start_misfits(sidecar, record, config.data):
            # another data source alone is no misfit, but beside one it says the most
            raise CheckpointError(
                f"{name} was trained with another model or data than this config: "
                f"{'; '.join(source_moved(sidecar, config.data) + misfits)}",
                hint="Run from stage 1 (--stages all), or use the config it was trained with "
                     "(train reads --data and [data] from the config, not the checkpoint).")
        return _Start(load_weights(self.checkpoint_dir, name, sidecar), name,
                      (sidecar.val_loss, sidecar.val_accuracy))

    def _data(self, data_config: DataConfig, seed: int) -> PreparedData:
        return load_configured(data_config, seed, self.reporter)

    def _build(self, record: Mapping[str, Any], seed: int) -> nn.Module:
        return build_network(record, seed=seed).to(self.device)

    def _device_count(self, config: Config) -> int:
        """GPUs one process drives: one under torchrun, else all when multi_gpu."""
        if self.world.distributed:
            return 1
        return device_count(self.device, config.run.multi_gpu)
