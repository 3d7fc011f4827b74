"""One ``slt tune`` trial: draw the settings, train into the trial's folder with the
ordinary engine, hand each epoch's best-so-far accuracy to the pruner, return the score."""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import optuna

from slt_cli.cfg.config import Config
from slt_cli.cfg.settings import ParamRange
from slt_cli.cfg.tune_space import tunable_keys
from slt_cli.common.reporting import EpochMetrics
from slt_cli.errors import RunInterrupted
from slt_cli.store.checkpoints import best_checkpoint_name
from slt_cli.tune.results import VAL_CLIPS, TrialRow, TuneReporter, TuneRequest


class Tuner(Protocol):
    """What a trial asks of the study that runs it (``study.Tuner`` is the one)."""

    request: TuneRequest
    reporter: TuneReporter
    runner: Any  # the running trial's Trainer or CrossValidation, set by the trial

    @property
    def stopping(self) -> bool: ...

    def param_name(self, config: Config, index: int, key: str) -> str: ...

    def with_winners(self, config: Config, group: Sequence[int],
                     params: dict[str, Any]) -> Config: ...


class Objective:
    """One trial: draw the settings, train into the trial's folder, return the score."""

    def __init__(self, tuner: Tuner, config: Config, group: tuple[int, ...],
                 spaces: dict[int, dict[str, ParamRange]], source: Path, folder: Path,
                 study: str, *, deadline: float | None = None) -> None:
        self.tuner, self.config, self.group = tuner, config, group
        self.deadline = deadline  # time.monotonic() at which a trial stops (not the defaults)
        self.spaces, self.source, self.folder, self.study = spaces, source, folder, study
        self.kinds = tunable_keys()

    def __call__(self, trial: optuna.Trial) -> float:
        tuner = self.tuner
        if tuner.stopping:
            raise RunInterrupted("stopped before the next trial")
        params: dict[str, Any] = {}
        for index, space in self.spaces.items():
            for key, spec in space.items():
                name = tuner.param_name(self.config, index, key)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # an enqueued default outside its range
                    params[name] = _suggest(trial, name, spec, self.kinds[key])
        config = tuner.with_winners(self.config, self.group, params)
        folder = self.folder / f"trial_{trial.number:04d}"
        trial.set_user_attr("folder", str(folder))
        seed_folder(self.source, folder, self.group[0] - 1)
        defaults = bool(trial.user_attrs.get("defaults"))
        forward = _Forward(trial, tuner, None if defaults else self.deadline)
        started = time.monotonic()
        tuner.reporter.trial_started(study=self.study, number=trial.number, defaults=defaults)
        try:
            score = self._train(config, folder, forward)
        finally:
            tuner.runner = None
        if forward.val_clips:  # what tells a real gain over the defaults from noise
            trial.set_user_attr(VAL_CLIPS, forward.val_clips)
        if forward.out_of_time:
            tuner.reporter.note(f"{self.study}: trial {trial.number} stopped after "
                                f"{forward.step} epoch(s), at the end of its share of "
                                "--timeout")
        if forward.pruned:
            if not tuner.request.keep_all:
                shutil.rmtree(folder, ignore_errors=True)
            self._report(trial, "pruned", forward.best if forward.step else None, started)
            raise optuna.TrialPruned()
        self._report(trial, "complete", score, started)
        return score

    def _train(self, config: Config, folder: Path, forward: _Forward) -> float:
        request = self.tuner.request
        try:
            if request.folds > 1:
                from slt_cli.run.folds import CrossValidation

                runner: Any = CrossValidation(config, request.folds, checkpoint_dir=folder,
                                              device=request.device, reporter=forward)
                self.tuner.runner = runner
                folded = runner.run(list(self.group), force=True)
                return folded.stages[-1].val_accuracy.mean
            from slt_cli.run.engine import Trainer

            runner = Trainer(config, checkpoint_dir=folder, device=request.device,
                             reporter=forward)
            self.tuner.runner = runner
            if self.tuner.stopping:
                runner.request_stop()
            result = runner.train(list(self.group), force=True)
            return result.stages[-1].val_accuracy
        except RunInterrupted:
            if forward.pruned and not self.tuner.stopping:
                return float("nan")  # stopped by the pruner: the trial says pruned
            raise

    def _report(self, trial: optuna.Trial, state: str, score: float | None,
                started: float) -> None:
        self.tuner.reporter.trial_done(TrialRow(
            study=self.study, number=trial.number, params=dict(trial.params), score=score,
            state=state, seconds=time.monotonic() - started,
            defaults=bool(trial.user_attrs.get("defaults"))))


class _Forward(TuneReporter):
    """Passes the engine's events on, and each epoch's best-so-far validation accuracy
    to the trial; stops the run when the pruner says so or, after an epoch, when the
    ``deadline`` has passed (the trial then ends as pruned); counts the validation clips
    (of every fold)."""

    def __init__(self, trial: optuna.Trial, tuner: Tuner, deadline: float | None = None) -> None:
        self.trial, self.tuner, self.deadline = trial, tuner, deadline
        self.out_of_time = False
        self.step = 0
        self.best = float("-inf")
        self.pruned = False
        self.val_clips = 0

    def run_started(self, *, val_size: int, **info: Any) -> None:  # type: ignore[override]
        self.val_clips += val_size

    def stage_started(self, **info: Any) -> None:
        self.best = float("-inf")  # a new stage (or fold): its best starts again
        self.tuner.reporter.stage_started(**info)

    def epoch_done(self, metrics: EpochMetrics) -> None:
        self.tuner.reporter.epoch_done(metrics)
        self.best = max(self.best, metrics.val_accuracy)
        if metrics.epoch == 0 or self.pruned:
            return
        self.step += 1
        self.trial.report(self.best, self.step)
        self.out_of_time = self.deadline is not None and time.monotonic() >= self.deadline
        if self.out_of_time or self.trial.should_prune():
            self.pruned = True
            if self.tuner.runner is not None:
                self.tuner.runner.request_stop()

    def note(self, message: str) -> None:
        self.tuner.reporter.note(message)


def _suggest(trial: optuna.Trial, name: str, spec: ParamRange, kind: type) -> Any:
    if spec.choices:
        return trial.suggest_categorical(name, list(spec.choices))
    if kind is int:
        return trial.suggest_int(name, int(spec.low), int(spec.high),
                                 step=int(spec.step or 1), log=spec.log)
    return trial.suggest_float(name, float(spec.low), float(spec.high), step=spec.step,
                               log=spec.log)


def seed_folder(source: Path, folder: Path, stage_idx: int) -> None:
    """Copy ``best_model_stage_{stage_idx}`` (in ``source`` and each of its fold
    folders) into ``folder``: the trial's stage starts from those weights, as
    ``slt train --stages N`` does from the folder's own."""
    folder.mkdir(parents=True, exist_ok=True)
    if stage_idx < 1:
        return
    name = best_checkpoint_name(stage_idx)
    for found in sorted(source.glob(f"{name}.*")) + sorted(source.glob(f"fold_*/{name}.*")):
        target = folder / found.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(found, target)
