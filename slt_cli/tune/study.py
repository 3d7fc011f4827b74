"""``slt tune``: search each stage's settings with Optuna, on the ordinary engine.

A trial is an ordinary run of ``engine.Trainer`` (``--folds 1``: the configured
validation split) or of ``folds.CrossValidation`` (``--folds K``: signer-grouped
folds) into its own folder, ``CHECKPOINT_DIR/tune/<study>/stage_N_<name>/trial_NNNN``,
with the stage's settings drawn from its search space (``[tune]``, ``tune/space.py``).
Its score is the objective the engine already reports: the stage's best validation
accuracy (mean over folds). Each epoch's best-so-far accuracy goes to the trial, so the
pruner stops hopeless trials early.

Stages are tuned in order, one study each (``<study>.stage<N>``): stage N's trials
start from the best weights of stage N-1's promoted trial. ``joint`` tunes the selected
stages together in one study instead. The first trial of a study runs the untuned
settings (the defaults), so the summary compares the best against them on the same
split; the best's settings are promoted only when they beat the defaults by more than
the validation set can tell from noise (``kept_defaults_because``), else the defaults
go on. The study lives in Optuna's storage (SQLite in the tune folder by default; any
RDB URL that several processes share): a killed process loses its running trial, and
``resume`` carries on until every study has ``trials`` finished (complete or pruned)
trials between all the processes working on it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from slt_cli.cfg.config import Config, ConfigError
from slt_cli.cfg.settings import ParamRange
from slt_cli.cfg.tune_space import stage_values, with_params
from slt_cli.errors import RunInterrupted, SltError, StorageError
from slt_cli.show.console import duration
from slt_cli.tune.results import (
    VAL_CLIPS,
    StudyResult,
    TrialRow,
    TuneReporter,
    TuneRequest,
    TuneResult,
)
from slt_cli.tune.trial import Objective

TUNE_FOLDER = "tune"  # under the checkpoint folder
STUDY_FILE = "study.db"  # the default SQLite storage, in TUNE_FOLDER
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STUDY_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
HEARTBEAT_SECONDS = 30  # a trial with no heartbeat for GRACE_SECONDS is marked failed
GRACE_SECONDS = 120
STORAGE_TRIES = 5  # opening a storage another process is creating: tries, 0.5 s apart and up


def quiet_optuna() -> None:
    """Optuna's own log lines and experimental-feature warnings off: the trial lines
    are ours (``TuneReporter``)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a stopped trial is not news
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def kept_defaults_because(best: FrozenTrial, defaults: FrozenTrial,
                          complete: Sequence[FrozenTrial]) -> str | None:
    """Why the defaults trial's settings go on instead of the best complete trial's
    (None: the best's do). A gain counts only beyond one standard error of the
    difference, the binomial ``sqrt(p (1 - p) / n)`` at the two accuracies' mean over
    the ``n`` validation clips, and of at least one clip (``1 / n``, the finest step a
    validation set can tell): a study's best of a few draws is partly luck, and a clip
    or two of it is no reason to change a recipe."""
    others = [t for t in complete if t.number != defaults.number]
    if not others:
        return "no other trial completed"
    tied = [t for t in others if t.value == defaults.value]
    if best.number == defaults.number or best.value == defaults.value:
        return (f"trial {tied[0].number} ties them ({float(defaults.value):.4f})" if tied
                else "no trial beat them")
    clips = best.user_attrs.get(VAL_CLIPS) or defaults.user_attrs.get(VAL_CLIPS)
    if not isinstance(clips, int) or clips < 1:
        return None  # trials of an older slt: nothing to judge the noise by
    gain = float(best.value) - float(defaults.value)
    mean = (float(best.value) + float(defaults.value)) / 2
    noise = math.sqrt(mean * (1 - mean) / clips)
    said = (f"trial {best.number}'s {float(best.value):.4f} is {gain:.4f} above their "
            f"{float(defaults.value):.4f}")
    if gain <= noise + 1e-12:
        return (f"{said}, within one standard error of the difference ({noise:.4f} over "
                f"{clips} validation clips)")
    if gain < 1 / clips - 1e-12:
        return f"{said}, less than one of the {clips} validation clips"
    return None


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
        self.runner: Any = None  # the running trial's Trainer or CrossValidation
        self._stop = threading.Event()

    @property
    def stopping(self) -> bool:
        """Whether ``request_stop`` was called."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Stop the running trial after its batch (it is lost; the study is kept)."""
        self._stop.set()
        if self.runner is not None:
            self.runner.request_stop()

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
            if result.kept_defaults is None:
                config = self.with_winners(config, group, result.best.params)
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
            # A trial still running at the end of the stage's share stops at its next
            # epoch (the defaults trial excepted: a stage goes on from it).
            deadline = None if budget is None or out_of_time else time.monotonic() + budget
            objective = Objective(self, config, group, spaces, source, folder, name,
                                  deadline=deadline)
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
            done = len(study.get_trials(deepcopy=False, states=FINISHED))
            if budget is not None and done < request.trials:
                self.reporter.note(f"{name}: {done} of {request.trials} trials within its "
                                   f"share of --timeout ({duration(max(budget, 0.0))})")
        return self._result(study, name, group)

    def _result(self, study: optuna.Study, name: str, group: tuple[int, ...]) -> StudyResult:
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            raise SltError(f"no trial of study {name} finished",
                           hint="Give it more time (--timeout) or fewer epochs.")
        best = max(complete, key=lambda t: (t.value, -t.number))
        defaults = next((t for t in complete if t.user_attrs.get("defaults")), None)
        why = kept_defaults_because(best, defaults, complete) if defaults is not None else None
        promoted = best if why is None else defaults  # why is None without defaults
        if why is not None:
            self.reporter.note(f"{name}: the defaults are kept: {why}")
        if not self.request.keep_all:
            for trial in trials:
                if (trial.number not in (best.number, promoted.number)
                        and trial.state != TrialState.RUNNING):
                    self._remove(trial)
        return StudyResult(study=name, stages=group, best=TrialRow.of(name, best),
                           defaults=TrialRow.of(name, defaults) if defaults else None,
                           trials=tuple(TrialRow.of(name, t) for t in trials),
                           folder=Path(promoted.user_attrs["folder"]), kept_defaults=why)

    def _remove(self, trial: FrozenTrial) -> None:
        """Delete a trial's folder: only ever one inside this study's own folder."""
        folder = trial.user_attrs.get("folder")
        if folder and Path(folder).resolve().is_relative_to(self.root.resolve()):
            shutil.rmtree(folder, ignore_errors=True)

    def _storage(self) -> tuple[Any, str]:
        url = self.request.storage or default_storage(self.request.checkpoint_dir)
        if not self.request.storage:
            folder = self.request.checkpoint_dir / TUNE_FOLDER
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # as train says it: the folder, why, where else
                raise StorageError.writing(folder, exc, elsewhere="with --checkpoint-dir"
                                           ) from None
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
        for attempt in range(STORAGE_TRIES):
            try:
                storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs,
                                                     heartbeat_interval=HEARTBEAT_SECONDS,
                                                     grace_period=GRACE_SECONDS)
                return storage, url
            except Exception as exc:  # SQLAlchemy's errors: a bad URL, a missing driver
                # Two processes that create a new storage's tables at once: one of them
                # loses the race (a UNIQUE constraint, a table that "already exists");
                # the tables are there a moment later.
                racing = (type(exc).__name__ == "IntegrityError"
                          or "already exists" in str(exc))
                if racing and attempt < STORAGE_TRIES - 1:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                raise SltError(f"--storage {url}: cannot open it "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0]})",
                               hint="Give a database URL: sqlite:///path.db, "
                                    "postgresql://user@host/db or mysql://user@host/db."
                               ) from None
        raise AssertionError("unreachable")

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
                params[self.param_name(config, index, key)] = value
        return params

    def param_name(self, config: Config, index: int, key: str) -> str:
        return f"{config.stages[index - 1].name}.{key}" if self.request.joint else key

    def with_winners(self, config: Config, group: Sequence[int],
                      params: dict[str, Any]) -> Config:
        """``config`` with ``params`` in the stages of ``group``, each value carried on
        to the run of later stages that had the stage's untuned value (those that inherit
        it in stages.toml), as if the stage had been edited in the file; a stage that
        changes a key ends its run."""
        stages = list(config.stages)
        for index in group:
            stage = stages[index - 1]
            prefix = f"{stage.name}." if self.request.joint else ""
            own = {key.removeprefix(prefix): value for key, value in params.items()
                   if key.startswith(prefix)}
            untuned = stage_values(stage, list(own))
            stages[index - 1] = with_params(stage, own)
            carried = dict(own)  # a key stops at the first later stage that changes it
            for later in range(index, len(stages)):
                if later + 1 in group:
                    break
                had = stage_values(stages[later], list(carried))
                carried = {key: value for key, value in carried.items()
                           if had[key] == untuned[key]}
                stages[later] = with_params(stages[later], carried)
        return dataclasses.replace(config, stages=tuple(stages))


__all__ = [
    "FINISHED", "STUDY_FILE", "TUNE_FOLDER", "StudyResult", "TrialRow", "TuneReporter",
    "TuneRequest", "TuneResult", "Tuner", "default_storage", "kept_defaults_because",
    "quiet_optuna",
]
