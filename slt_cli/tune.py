"""``slt tune``: search each stage's settings with Optuna, on the ordinary engine.

A trial is an ordinary run of ``engine.Trainer`` (``--folds 1``: the configured
validation split) or of ``folds.CrossValidation`` (``--folds K``: signer-grouped
folds) into its own folder, ``CHECKPOINT_DIR/tune/<study>/stage_N_<name>/trial_NNNN``,
with the stage's settings drawn from its search space (``[tune]``, ``tune_space.py``).
Its score is the objective the engine already reports: the stage's best validation
accuracy (mean over folds). Each epoch's best-so-far accuracy goes to the trial, so the
pruner stops hopeless trials early.

Stages are tuned in order, one study each (``<study>.stage<N>``): stage N's trials
start from the best weights of stage N-1's best trial. ``joint`` tunes the selected
stages together in one study instead. The first trial of a study runs the untuned
settings (the defaults), so the summary compares the best against them on the same
split. The study lives in Optuna's storage (SQLite in the tune folder by default; any
RDB URL that several processes share): a killed process loses its running trial, and
``resume`` carries on until every study has ``trials`` finished (complete or pruned)
trials between all the processes working on it.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from slt_cli.checkpoints import best_checkpoint_name
from slt_cli.config import Config, ConfigError
from slt_cli.errors import RunInterrupted, SltError
from slt_cli.reporting import EpochMetrics, Reporter
from slt_cli.settings import ParamRange
from slt_cli.tune_space import stage_values, tunable_keys, with_params

TUNE_FOLDER = "tune"  # under the checkpoint folder
STUDY_FILE = "study.db"  # the default SQLite storage, in TUNE_FOLDER
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STUDY_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
HEARTBEAT_SECONDS = 30  # a trial with no heartbeat for GRACE_SECONDS is marked failed
GRACE_SECONDS = 120


@dataclass(frozen=True)
class TuneRequest:
    """What ``slt tune`` was asked to do."""

    config: Config  # the untuned settings, data source included
    stages: tuple[int, ...]  # 1-based, sorted
    checkpoint_dir: Path
    trials: int  # finished trials per study
    timeout: float | None = None  # seconds for the whole search; None = until ``trials``
    folds: int = 1  # 1 = the configured validation split, K >= 2 = K signer-grouped folds
    study: str = "slt"
    storage: str | None = None  # an Optuna storage URL; None = SQLite in the tune folder
    resume: bool = False
    joint: bool = False
    keep_all: bool = False  # keep every trial's checkpoints, not only the best's
    device: str = "auto"


@dataclass(frozen=True)
class TrialRow:
    """One trial as the table shows it."""

    study: str
    number: int
    params: dict[str, Any]
    score: float | None  # None: pruned before any epoch, failed or running
    state: str  # complete, pruned, fail, running
    seconds: float | None
    defaults: bool  # the untuned settings

    @classmethod
    def of(cls, study: str, trial: FrozenTrial) -> TrialRow:
        score = trial.value if trial.value is not None else (
            max(trial.intermediate_values.values()) if trial.intermediate_values else None)
        return cls(study=study, number=trial.number, params=dict(trial.params), score=score,
                   state=trial.state.name.lower(),
                   seconds=trial.duration.total_seconds() if trial.duration else None,
                   defaults=bool(trial.user_attrs.get("defaults")))


@dataclass(frozen=True)
class StudyResult:
    """One study: one stage (in order) or the selected stages together (joint)."""

    study: str
    stages: tuple[int, ...]
    best: TrialRow
    defaults: TrialRow | None
    trials: tuple[TrialRow, ...]
    folder: Path  # the best trial's checkpoints

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "stages": list(self.stages),
                "best": dataclasses.asdict(self.best),
                "defaults": dataclasses.asdict(self.defaults) if self.defaults else None,
                "trials": [dataclasses.asdict(row) for row in self.trials],
                "folder": str(self.folder)}


@dataclass(frozen=True)
class TuneResult:
    studies: tuple[StudyResult, ...]
    config: Config  # the untuned config with every study's winners
    storage: str

    def to_dict(self) -> dict[str, Any]:
        return {"storage": self.storage, "studies": [s.to_dict() for s in self.studies]}


class TuneReporter(Reporter):
    """The engine's reporter, plus what a search reports."""

    def study_started(self, *, study: str, finished: int, trials: int) -> None:
        """A study starts (or carries on with ``finished`` of its ``trials`` done)."""

    def trial_done(self, row: TrialRow) -> None:
        """A trial of this process finished: complete, pruned or failed."""


def quiet_optuna() -> None:
    """Optuna's own log lines and experimental-feature warnings off: the trial lines
    are ours (``TuneReporter``)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a stopped trial is not news
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def default_storage(checkpoint_dir: Path) -> str:
    """The SQLite URL of the study file in ``checkpoint_dir/tune/``."""
    return f"sqlite:///{(checkpoint_dir / TUNE_FOLDER / STUDY_FILE).resolve()}"


class Tuner:
    """Runs a ``TuneRequest``; like the engine, it never prints.

    Args:
        request: What to search.
        reporter: Receives each study's start, each trial's end and (through the
            engine) each epoch.
    """

    def __init__(self, request: TuneRequest, reporter: TuneReporter | None = None) -> None:
        if not STUDY_NAME.fullmatch(request.study):
            raise ConfigError(f"--study {request.study!r}: use 1-64 letters, digits, _ or -")
        self.request = request
        self.reporter = reporter or TuneReporter()
        self.root = request.checkpoint_dir / TUNE_FOLDER / request.study
        self._runner: Any = None
        self._stop = threading.Event()

    def request_stop(self) -> None:
        """Stop the running trial after its batch (it is lost; the study is kept)."""
        self._stop.set()
        if self._runner is not None:
            self._runner.request_stop()

    def run(self) -> TuneResult:
        """Tune every study in turn (the stages in order, or one joint study).

        Raises:
            ConfigError: a stage with an empty search space.
            SltError: a study that exists (without ``resume``), or none of whose trials
                finished.
            RunInterrupted: stopped by ``request_stop``; finished trials are kept.
        """
        request = self.request
        groups = ([request.stages] if request.joint
                  else [(index,) for index in request.stages])
        for group in groups:
            for index in group:
                stage = request.config.stages[index - 1]
                if not request.config.tune.space_of(stage.name):
                    raise ConfigError(f"stage {index} ({stage.name}) has nothing to tune: "
                                      "[tune.space] and [tune.stages."
                                      f"{stage.name}] are empty")
        storage, url = self._storage()
        deadline = time.monotonic() + request.timeout if request.timeout else None
        config, source = request.config, request.checkpoint_dir
        results: list[StudyResult] = []
        for position, group in enumerate(groups):
            budget = ((deadline - time.monotonic()) / (len(groups) - position)
                      if deadline is not None else None)
            result = self._tune(storage, group, config, source, budget)
            config = self._with_winners(config, group, result.best.params)
            source = result.folder
            results.append(result)
        return TuneResult(studies=tuple(results), config=config, storage=url)

    # --- one study ---------------------------------------------------------------------

    def _tune(self, storage: Any, group: tuple[int, ...], config: Config, source: Path,
              budget: float | None) -> StudyResult:
        request = self.request
        first = config.stages[group[0] - 1]
        name = (f"{request.study}.joint{group[0]}-{group[-1]}" if request.joint
                else f"{request.study}.stage{group[0]}")
        folder = self.root / (f"joint_{group[0]}-{group[-1]}" if request.joint
                              else f"stage_{group[0]}_{first.name}")
        exists = name in optuna.study.get_all_study_names(storage=storage)
        if exists and not (request.resume or request.storage):
            raise SltError(f"study {name} already exists in {self.root.parent}",
                           hint="Carry it on with --resume, or name a new one with --study.")
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                    sampler=self._sampler(), pruner=self._pruner(config),
                                    load_if_exists=True)
        spaces = {index: config.tune.space_of(config.stages[index - 1].name)
                  for index in group}
        if not any(trial.user_attrs.get("defaults") and trial.state != TrialState.FAIL
                   for trial in study.get_trials(deepcopy=False)):
            # (again, when the defaults trial was the one a Ctrl-C or a kill cost)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a default outside its range is still run
                study.enqueue_trial(self._defaults(config, spaces),
                                    user_attrs={"defaults": True})
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        self.reporter.study_started(study=name, finished=finished, trials=request.trials)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        out_of_time = budget is not None and budget <= 0
        if finished < request.trials and not (out_of_time and complete):
            objective = _Objective(self, config, group, spaces, source, folder, name)
            try:  # out of time, a stage still runs one trial (the defaults) to go on from
                study.optimize(objective, timeout=None if out_of_time else budget, catch=(),
                               n_trials=1 if out_of_time else None,
                               callbacks=[optuna.study.MaxTrialsCallback(
                                   request.trials, states=FINISHED)])
            except RunInterrupted:
                done = len(study.get_trials(deepcopy=False, states=FINISHED))
                raise RunInterrupted(
                    f"tuning stopped: study {name} has {done} finished trial(s); the "
                    "running trial is lost",
                    hint="Carry it on with the same command and --resume.") from None
        return self._result(study, name, group)

    def _result(self, study: optuna.Study, name: str, group: tuple[int, ...]) -> StudyResult:
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            raise SltError(f"no trial of study {name} finished",
                           hint="Give it more time (--timeout) or fewer epochs.")
        best = max(complete, key=lambda t: (t.value, -t.number))
        if not self.request.keep_all:
            for trial in trials:
                if trial.number != best.number and trial.state != TrialState.RUNNING:
                    self._remove(trial)
        defaults = next((t for t in complete if t.user_attrs.get("defaults")), None)
        return StudyResult(study=name, stages=group, best=TrialRow.of(name, best),
                           defaults=TrialRow.of(name, defaults) if defaults else None,
                           trials=tuple(TrialRow.of(name, t) for t in trials),
                           folder=Path(best.user_attrs["folder"]))

    def _remove(self, trial: FrozenTrial) -> None:
        """Delete a trial's folder: only ever one inside this study's own folder."""
        folder = trial.user_attrs.get("folder")
        if folder and Path(folder).resolve().is_relative_to(self.root.resolve()):
            shutil.rmtree(folder, ignore_errors=True)

    def _storage(self) -> tuple[Any, str]:
        url = self.request.storage or default_storage(self.request.checkpoint_dir)
        if not self.request.storage:
            (self.request.checkpoint_dir / TUNE_FOLDER).mkdir(parents=True, exist_ok=True)
        if url.split(":", 1)[0].split("+", 1)[0] not in ("sqlite", "postgresql", "mysql"):
            return url, url  # another kind of storage: Optuna takes the URL as it is
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs,
                                                 heartbeat_interval=HEARTBEAT_SECONDS,
                                                 grace_period=GRACE_SECONDS)
        except Exception as exc:  # SQLAlchemy's errors: a bad URL, a missing driver
            raise SltError(f"--storage {url}: cannot open it ({exc})") from None
        return storage, url

    def _sampler(self) -> optuna.samplers.BaseSampler:
        # A shared or resumed study gets fresh draws: a fixed seed would repeat them.
        shared = self.request.resume or self.request.storage is not None
        return optuna.samplers.TPESampler(
            seed=None if shared else self.request.config.run.seed, n_startup_trials=5)

    @staticmethod
    def _pruner(config: Config) -> optuna.pruners.BasePruner:
        tune = config.tune
        if tune.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials,
                                               n_warmup_steps=tune.warmup_epochs)
        if tune.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=max(1, tune.warmup_epochs))
        return optuna.pruners.NopPruner()

    def _defaults(self, config: Config, spaces: dict[int, dict[str, ParamRange]]
                  ) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for index, space in spaces.items():
            values = stage_values(config.stages[index - 1], list(space))
            for key, value in values.items():
                if space[key].choices and value not in space[key].choices:
                    continue  # not one of the choices: the sampler picks
                params[self._param(config, index, key)] = value
        return params

    def _param(self, config: Config, index: int, key: str) -> str:
        return f"{config.stages[index - 1].name}.{key}" if self.request.joint else key

    def _with_winners(self, config: Config, group: Sequence[int],
                      params: dict[str, Any]) -> Config:
        """``config`` with ``params`` in the stages of ``group``, each value carried on
        to the later stages that had the stage's untuned value (those that inherit it in
        stages.toml), as if the stage had been edited in the file."""
        stages = list(config.stages)
        for index in group:
            stage = stages[index - 1]
            prefix = f"{stage.name}." if self.request.joint else ""
            own = {key.removeprefix(prefix): value for key, value in params.items()
                   if key.startswith(prefix)}
            untuned = stage_values(stage, list(own))
            stages[index - 1] = with_params(stage, own)
            for later in range(index, len(stages)):
                if later + 1 in group:
                    continue
                had = stage_values(stages[later], list(own))
                inherited = {key: value for key, value in own.items()
                             if had[key] == untuned[key]}
                stages[later] = with_params(stages[later], inherited)
        return dataclasses.replace(config, stages=tuple(stages))


class _Objective:
    """One trial: draw the settings, train into the trial's folder, return the score."""

    def __init__(self, tuner: Tuner, config: Config, group: tuple[int, ...],
                 spaces: dict[int, dict[str, ParamRange]], source: Path, folder: Path,
                 study: str) -> None:
        self.tuner, self.config, self.group = tuner, config, group
        self.spaces, self.source, self.folder, self.study = spaces, source, folder, study
        self.kinds = tunable_keys()

    def __call__(self, trial: optuna.Trial) -> float:
        tuner = self.tuner
        if tuner._stop.is_set():
            raise RunInterrupted("stopped before the next trial")
        params: dict[str, Any] = {}
        for index, space in self.spaces.items():
            for key, spec in space.items():
                name = tuner._param(self.config, index, key)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # an enqueued default outside its range
                    params[name] = _suggest(trial, name, spec, self.kinds[key])
        config = tuner._with_winners(self.config, self.group, params)
        folder = self.folder / f"trial_{trial.number:04d}"
        trial.set_user_attr("folder", str(folder))
        _seed_folder(self.source, folder, self.group[0] - 1)
        forward = _Forward(trial, tuner)
        started = time.monotonic()
        try:
            score = self._train(config, folder, forward)
        finally:
            tuner._runner = None
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
                from slt_cli.folds import CrossValidation

                runner: Any = CrossValidation(config, request.folds, checkpoint_dir=folder,
                                              device=request.device, reporter=forward)
                self.tuner._runner = runner
                folded = runner.run(list(self.group), force=True)
                return folded.stages[-1].val_accuracy.mean
            from slt_cli.engine import Trainer

            runner = Trainer(config, checkpoint_dir=folder, device=request.device,
                             reporter=forward)
            self.tuner._runner = runner
            if self.tuner._stop.is_set():
                runner.request_stop()
            result = runner.train(list(self.group), force=True)
            return result.stages[-1].val_accuracy
        except RunInterrupted:
            if forward.pruned and not self.tuner._stop.is_set():
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
    to the trial; stops the run when the pruner says so."""

    def __init__(self, trial: optuna.Trial, tuner: Tuner) -> None:
        self.trial, self.tuner = trial, tuner
        self.step = 0
        self.best = float("-inf")
        self.pruned = False

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
        if self.trial.should_prune():
            self.pruned = True
            if self.tuner._runner is not None:
                self.tuner._runner.request_stop()

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


def _seed_folder(source: Path, folder: Path, stage_idx: int) -> None:
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
