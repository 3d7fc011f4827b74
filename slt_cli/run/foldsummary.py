"""The cross-validation summary, ``CHECKPOINT_DIR/folds.json``, as one typed record.

Rewritten after each fold: what was asked (config, stages, force), each finished
fold's results with its validation people's counts, and per stage the mean, sample
standard deviation, min and max across folds of the best validation accuracy and loss,
and the accuracy pooled over every fold's validation people (each validates once).
Until the last fold it says ``"complete": false``, which is what ``--folds K --resume``
carries on from.
``FoldsSummary.from_json`` is the one place a summary read from disk is checked.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slt_cli import __version__
from slt_cli.cfg.config import Config
from slt_cli.common.files import load_json
from slt_cli.errors import CheckpointError, SltError, UnreadableFile
from slt_cli.run.plan import Reader
from slt_cli.run.results import RunResult, StageResult
from slt_cli.store.checkpoints import FOLDS_FILE

SCHEMA_VERSION = 1


def fold_folder(directory: Path, fold: int) -> Path:
    """Where fold ``fold`` (1-based) keeps its checkpoints: ``directory/fold_<fold>``."""
    return directory / f"fold_{fold}"


@dataclass(frozen=True)
class Spread:
    """One metric across folds: mean, sample standard deviation, min, max, and each value."""

    mean: float
    std: float  # sample standard deviation (n - 1); 0.0 for a single fold
    min: float
    max: float
    values: tuple[float, ...]  # fold by fold

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(mean=statistics.fmean(values),
                   std=statistics.stdev(values) if len(values) > 1 else 0.0,
                   min=min(values), max=max(values), values=tuple(values))


# A fold's validation by person: stage -> person -> (clips right, clips).
People = dict[int, dict[str, tuple[int, int]]]


@dataclass(frozen=True)
class FoldStage:
    """One stage across the folds that reached it (a fold can stop early)."""

    stage_idx: int
    name: str
    folds: tuple[int, ...]  # the folds (1-based) whose run trained this stage
    val_accuracy: Spread
    val_loss: Spread
    # Pooled over the folds' validation people (each person validates in one fold):
    pooled_accuracy: float | None = None  # every validation clip of every fold
    people: dict[str, float] = dataclasses.field(default_factory=dict)  # accuracy per person

    @property
    def worst_person(self) -> tuple[str, float] | None:
        if not self.people:
            return None
        return min(self.people.items(), key=lambda item: (item[1], item[0]))


def summarise(runs: Sequence[tuple[int, RunResult]],
              people: Mapping[int, People] | None = None) -> tuple[FoldStage, ...]:
    """Per stage, the spread of the best validation accuracy and loss over ``runs``
    (``(fold, result)`` pairs), and the validation people of every fold pooled."""
    reached: dict[int, list[tuple[int, StageResult]]] = {}
    for fold, run in runs:
        for stage in run.stages:
            reached.setdefault(stage.stage_idx, []).append((fold, stage))
    stages = []
    for index, pairs in sorted(reached.items()):
        counts: dict[str, tuple[int, int]] = {}
        for fold, _ in pairs:
            for person, (hits, clips) in (people or {}).get(fold, {}).get(index, {}).items():
                before = counts.get(person, (0, 0))
                counts[person] = (before[0] + hits, before[1] + clips)
        total = sum(clips for _, clips in counts.values())
        stages.append(FoldStage(
            stage_idx=index, name=pairs[0][1].name, folds=tuple(fold for fold, _ in pairs),
            val_accuracy=Spread.of([stage.val_accuracy for _, stage in pairs]),
            val_loss=Spread.of([stage.val_loss for _, stage in pairs]),
            pooled_accuracy=sum(hits for hits, _ in counts.values()) / total if total else None,
            people={person: hits / clips for person, (hits, clips) in sorted(counts.items())
                    if clips}))
    return tuple(stages)


@dataclass(frozen=True)
class FoldsRequest:
    """What ``slt train --folds K`` was asked to do: a resume does it again."""

    config: Config
    stages: tuple[int, ...]  # 1-based
    force: bool


@dataclass(frozen=True)
class FoldsSummary:
    """A cross-validation run: what was asked and the folds finished so far."""

    folds: int  # K
    request: FoldsRequest
    runs: tuple[tuple[int, RunResult], ...] = ()  # (fold, result), by fold
    people: dict[int, People] = dataclasses.field(default_factory=dict)  # by fold

    @property
    def complete(self) -> bool:
        return len(self.runs) == self.folds

    @property
    def stages(self) -> tuple[FoldStage, ...]:
        return summarise(self.runs, self.people)

    def with_run(self, fold: int, result: RunResult,
                 people: People | None = None) -> FoldsSummary:
        runs = sorted([*self.runs, (fold, result)], key=lambda pair: pair[0])
        return dataclasses.replace(self, runs=tuple(runs),
                                   people={**self.people, fold: people or {}})

    def to_json(self, directory: Path) -> dict[str, Any]:
        request = {"config": self.request.config.to_dict(),
                   "stages": list(self.request.stages), "force": self.request.force}
        return {
            "schema_version": SCHEMA_VERSION, "slt_version": __version__,
            "folds": self.folds, "complete": self.complete,
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "request": request,
            "runs": [{"fold": fold, "folder": fold_folder(directory, fold).name,
                      **dataclasses.asdict(run),
                      "people": {str(stage): {person: list(pair) for person, pair in who.items()}
                                 for stage, who in self.people.get(fold, {}).items()}}
                     for fold, run in self.runs],
            "stages": [dataclasses.asdict(stage) for stage in self.stages],
        }

    @classmethod
    def from_json(cls, raw: Any, source: str) -> FoldsSummary:
        """Check a summary as read from JSON.

        Raises:
            CheckpointError: naming every key that is missing or wrong.
        """
        read = Reader(source)
        table = read.table(raw, "summary")
        folds = read.get(table, "folds", int, "summary")
        request = read.table(table.get("request"), "request")
        config = read.config(request.get("config"), "request.config")
        stages = _indices(request.get("stages"), read)
        runs = read.items(table.get("runs"), "runs", lambda entry, where: (
            read.get(entry, "fold", int, where), _run(entry, where, read),
            _people(entry.get("people", {}), f"{where}.people", read)))
        if not read.problems and not (
                folds >= 2 and all(1 <= fold <= folds for fold, _, _ in runs)
                and len({fold for fold, _, _ in runs}) == len(runs)):
            read.report("runs", f"must be distinct folds of the {folds}")
        read.done()
        return cls(folds=folds, request=FoldsRequest(
            config=config, stages=stages,  # type: ignore[arg-type]  # None only with problems
            force=read.get(request, "force", bool, "request")),
            runs=tuple(sorted(((fold, run) for fold, run, _ in runs), key=lambda pair: pair[0])),
            people={fold: who for fold, _, who in runs})

    @classmethod
    def read(cls, directory: Path) -> FoldsSummary | None:
        """The summary in ``directory``; None when there is none.

        Raises:
            CheckpointError: when it is damaged (the fold folders are intact).
        """
        path = directory / FOLDS_FILE
        if not (path.exists() or path.is_symlink()):
            return None
        try:
            return cls.from_json(load_json(path), str(path))
        except UnreadableFile as exc:
            raise CheckpointError(f"damaged cross-validation summary: {exc}",
                                  hint="Move it away to start a new run; the fold folders "
                                       "are intact.") from None


def unfinished_folds(directory: Path) -> int | None:
    """K of the unfinished cross-validation run in ``directory``, or None when there is
    none (so ``slt train --resume`` there carries that run on)."""
    try:
        summary = FoldsSummary.read(directory)
    except SltError:
        return None
    return summary.folds if summary is not None and not summary.complete else None


def _indices(value: Any, read: Reader) -> tuple[int, ...]:
    if not (isinstance(value, list) and value and all(
            isinstance(item, int) and not isinstance(item, bool) and item >= 1
            for item in value)):
        read.report("request.stages", "must list stage numbers")
        return ()
    return tuple(value)


def _people(value: Any, where: str, read: Reader) -> People:
    """A fold's ``people``: stage -> person -> [clips right, clips] (absent before 0.2)."""
    def count_pair(pair: Any) -> bool:
        return (isinstance(pair, list) and len(pair) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in pair)
                and pair[0] <= pair[1])

    if not (isinstance(value, dict) and all(
            isinstance(stage, str) and stage.isdigit() and isinstance(who, dict)
            and all(isinstance(person, str) and count_pair(pair) for person, pair in who.items())
            for stage, who in value.items())):
        read.report(where, "must map stage numbers to people's [right, clips] counts")
        return {}
    return {int(stage): {person: (pair[0], pair[1]) for person, pair in who.items()}
            for stage, who in value.items()}


def _run(entry: dict[str, Any], where: str, read: Reader) -> RunResult:
    stopped = entry.get("stopped")
    archived = entry.get("archived")
    if not (isinstance(archived, list) and all(isinstance(a, str) for a in archived)):
        read.report(f"{where}.archived", "must list checkpoint names")
        archived = []
    return RunResult(run_id=read.get(entry, "run_id", str, where),
                     stages=read.items(entry.get("stages"), f"{where}.stages",
                                       read.stage_result),
                     stopped=stopped if isinstance(stopped, str) else None,
                     archived=tuple(archived))
