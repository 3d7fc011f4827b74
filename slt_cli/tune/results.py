"""What ``slt tune`` was asked and what it found: the request, each trial as a row,
each study's result, and the reporter a search reports to (see ``study.py``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from slt_cli.cfg.config import Config
from slt_cli.common.reporting import Reporter

VAL_CLIPS = "val_clips"  # a trial's attribute: the validation clips it was scored on


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
    folder: Path  # the promoted trial's checkpoints
    kept_defaults: str | None = None  # why the defaults were kept over the best (or None)

    @property
    def promoted(self) -> TrialRow:
        """Whose settings go on: the defaults when they were kept, else the best."""
        return self.defaults if self.kept_defaults and self.defaults else self.best

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "stages": list(self.stages),
                "best": dataclasses.asdict(self.best),
                "defaults": dataclasses.asdict(self.defaults) if self.defaults else None,
                "promoted": self.promoted.number, "kept_defaults": self.kept_defaults,
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

    def trial_started(self, *, study: str, number: int, defaults: bool) -> None:
        """This process starts trial ``number`` of ``study`` (``defaults``: untuned)."""

    def trial_done(self, row: TrialRow) -> None:
        """A trial of this process finished: complete, pruned or failed."""
