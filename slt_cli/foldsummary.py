"""The cross-validation summary, ``CHECKPOINT_DIR/folds.json``, as one typed record.

Rewritten after each fold: what was asked (config, stages, force), each finished
fold's results, and per stage the mean, sample standard deviation, min and max across
folds of the best validation accuracy and loss. Until the last fold it says
``"complete": false``, which is what ``--folds K --resume`` carries on from.
``FoldsSummary.from_json`` is the one place a summary read from disk is checked.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slt_cli import __version__
from slt_cli.checkpoints import FOLDS_FILE
from slt_cli.config import Config
from slt_cli.errors import CheckpointError, SltError, UnreadableFile
from slt_cli.files import load_json
from slt_cli.plan import Reader
from slt_cli.results import RunResult, StageResult

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


@dataclass(frozen=True)
class FoldStage:
    """One stage across the folds that reached it (a fold can stop early)."""

    stage_idx: int
    name: str
    folds: tuple[int, ...]  # the folds (1-based) whose run trained this stage
    val_accuracy: Spread
    val_loss: Spread


def summarise(runs: Sequence[tuple[int, RunResult]]) -> tuple[FoldStage, ...]:
    """Per stage, the spread of the best validation accuracy and loss over ``runs``
    (``(fold, result)`` pairs)."""
    reached: dict[int, list[tuple[int, StageResult]]] = {}
    for fold, run in runs:
        for stage in run.stages:
            reached.setdefault(stage.stage_idx, []).append((fold, stage))
    return tuple(
        FoldStage(stage_idx=index, name=pairs[0][1].name,
                  folds=tuple(fold for fold, _ in pairs),
                  val_accuracy=Spread.of([stage.val_accuracy for _, stage in pairs]),
                  val_loss=Spread.of([stage.val_loss for _, stage in pairs]))
        for index, pairs in sorted(reached.items()))


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

    @property
    def complete(self) -> bool:
        return len(self.runs) == self.folds

    @property
    def stages(self) -> tuple[FoldStage, ...]:
        return summarise(self.runs)

    def with_run(self, fold: int, result: RunResult) -> FoldsSummary:
        runs = sorted([*self.runs, (fold, result)], key=lambda pair: pair[0])
        return dataclasses.replace(self, runs=tuple(runs))

    def to_json(self, directory: Path) -> dict[str, Any]:
        request = {"config": self.request.config.to_dict(),
                   "stages": list(self.request.stages), "force": self.request.force}
        return {
            "schema_version": SCHEMA_VERSION, "slt_version": __version__,
            "folds": self.folds, "complete": self.complete,
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "request": request,
            "runs": [{"fold": fold, "folder": fold_folder(directory, fold).name,
                      **dataclasses.asdict(run)} for fold, run in self.runs],
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
            read.get(entry, "fold", int, where), _run(entry, where, read)))
        if not read.problems and not (
                folds >= 2 and all(1 <= fold <= folds for fold, _ in runs)
                and len({fold for fold, _ in runs}) == len(runs)):
            read.report("runs", f"must be distinct folds of the {folds}")
        read.done()
        return cls(folds=folds, request=FoldsRequest(
            config=config, stages=stages,  # type: ignore[arg-type]  # None only with problems
            force=read.get(request, "force", bool, "request")),
            runs=tuple(sorted(runs, key=lambda pair: pair[0])))

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
