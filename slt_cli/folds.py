"""K-fold cross-validation: the staged run once per fold, then the spread per stage.

``slt train --folds K`` trains the selected stages K times. Fold ``i`` validates on
fold ``i`` of ``data.preprocess.assign_folds`` (whole signers when the data names
them, else a share of every class) and trains on the rest; "test" sequences stay
test in every fold. Each fold is an ordinary run of the engine into its own
checkpoint folder, ``CHECKPOINT_DIR/fold_i/`` (own lock, resume state, archive), with
``data.folds = K`` and ``data.fold = i`` in its configuration, so every sidecar says
which split it was scored on and ``evaluate``, ``continue`` and ``--resume`` rebuild
that split.

``CHECKPOINT_DIR/folds.json`` is rewritten after each fold: what was asked (config,
stages, force), each finished fold's results, and per stage the mean, sample
standard deviation, min and max across folds of the best validation accuracy and
loss. Until the last fold it says ``"complete": false``, which is what
``--folds K --resume`` carries on from.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slt_cli import __version__
from slt_cli.checkpoints import (
    ARCHIVE_FOLDER,
    FOLDS_FILE,
    atomic_write_bytes,
    new_run_id,
    settle,
)
from slt_cli.config import Config, build_config
from slt_cli.errors import (
    CheckpointError,
    ConfigError,
    RunInterrupted,
    SltError,
    UnreadableFile,
)
from slt_cli.files import load_json, own_folder
from slt_cli.lock import folder_lock
from slt_cli.reporting import Reporter
from slt_cli.results import RunResult, StageResult
from slt_cli.resume import has_resume

if TYPE_CHECKING:
    from slt_cli.engine import Trainer

SCHEMA_VERSION = 1


def fold_folder(directory: Path, fold: int) -> Path:
    """Where fold ``fold`` (1-based) keeps its checkpoints: ``directory/fold_<fold>``."""
    return directory / f"fold_{fold}"


def unfinished_folds(directory: Path) -> int | None:
    """K of the unfinished cross-validation run in ``directory``, or None when there is
    none (so ``slt train --resume`` there carries that run on)."""
    try:
        summary = load_json(directory / FOLDS_FILE)
    except UnreadableFile:
        return None
    if isinstance(summary, dict) and summary.get("complete") is False:
        folds = summary.get("folds")
        return folds if isinstance(folds, int) else None
    return None


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


@dataclass(frozen=True)
class CrossValidationResult:
    folds: int
    runs: tuple[RunResult, ...]  # fold 1 first
    stages: tuple[FoldStage, ...]
    summary_path: Path


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


class CrossValidation:
    """Runs ``Trainer.train`` once per fold; like the engine, it never prints.

    Args:
        config: A loaded, checked configuration; its ``data.folds``/``fold`` are set
            per fold.
        folds: K, at least 2.
        checkpoint_dir: The parent folder; defaults to ``config.run.checkpoint_dir``.
        device: ``auto``, ``cpu`` or ``cuda``.
        reporter: Receives each fold's progress, and a note as each fold starts.
    """

    def __init__(self, config: Config, folds: int, *, checkpoint_dir: Path | str | None = None,
                 device: str = "auto", reporter: Reporter | None = None) -> None:
        from slt_cli.distributed import world_from_environment

        if folds < 2:
            raise ConfigError(f"--folds {folds}: cross-validation needs at least 2 folds",
                              hint="Use --folds 5 (say), or leave --folds out for one run.")
        self.config = config
        self.folds = folds
        self.directory = Path(checkpoint_dir or config.run.checkpoint_dir)
        self.device = device
        self.reporter = reporter or Reporter()
        self.is_main = world_from_environment().is_main  # under torchrun, rank 0 writes
        self._trainer: Trainer | None = None
        self._stop = threading.Event()

    def request_stop(self) -> None:
        """Stop the fold now training after its batch (its resume state is saved)."""
        self._stop.set()
        if self._trainer is not None:
            self._trainer.request_stop()

    def run(self, stages: Sequence[int] | None = None, *,
            force: bool = False) -> CrossValidationResult:
        """Train ``stages`` (1-based; all by default) in every fold, then summarise.

        Raises:
            SltError: when the folder holds an unfinished cross-validation run.
        """
        selected = list(stages) if stages else list(range(1, len(self.config.stages) + 1))
        request = {"config": self.config.to_dict(), "stages": selected, "force": force}
        with self._holding():
            # Only rank 0 looks: it may already have written the new summary when
            # another process would read it.
            earlier = self._read_summary() if self.is_main else None
            if earlier is not None and not earlier.get("complete"):
                raise SltError(f"{self.directory} holds an unfinished {earlier['folds']}-fold "
                               f"run ({len(earlier['runs'])} of {earlier['folds']} folds done)",
                               hint=f"Carry it on with `slt train --folds {earlier['folds']} "
                                    f"--resume --checkpoint-dir {self.directory}`, or use "
                                    "another --checkpoint-dir.")
            if earlier is not None:
                self._archive_summary()
            done: list[tuple[int, RunResult]] = []
            self._write_summary(request, done)  # from now on, --resume knows what was asked
            try:
                return self._run_folds(request, done)
            except SltError as exc:
                # Refused before any fold trained (data that cannot make K folds): leave
                # nothing behind that would ask for a --resume.
                if (self.is_main and not done and not isinstance(exc, RunInterrupted)
                        and not has_resume(fold_folder(self.directory, 1))):
                    (self.directory / FOLDS_FILE).unlink(missing_ok=True)
                raise

    def resume(self) -> CrossValidationResult:
        """Carry on the unfinished cross-validation run in the folder: finished folds
        are kept, an interrupted fold resumes where it stopped, the others start."""
        with self._holding():
            earlier = self._read_summary()
            if earlier is None:
                raise SltError(f"no cross-validation run to resume in {self.directory} "
                               f"(no {FOLDS_FILE})",
                               hint="Start one with `slt train --folds K`.")
            if earlier.get("complete"):
                raise SltError(f"the {earlier['folds']}-fold run in {self.directory} is "
                               "finished; there is nothing to resume",
                               hint=f"Its summary is in {self.directory / FOLDS_FILE}.")
            if earlier["folds"] != self.folds:
                raise SltError(f"the unfinished run in {self.directory} has "
                               f"{earlier['folds']} folds, not {self.folds}",
                               hint=f"Resume it with --folds {earlier['folds']}.")
            self.config = build_config(earlier["request"]["config"], FOLDS_FILE)
            try:
                done = [(entry["fold"], _run_from_dict(entry)) for entry in earlier["runs"]]
            except (KeyError, TypeError) as exc:
                raise CheckpointError(f"{self.directory / FOLDS_FILE}: damaged fold results "
                                      f"({exc!r})", hint="Move it away and start a new run."
                                      ) from None
            return self._run_folds(earlier["request"], done)

    # --- inside ----------------------------------------------------------------------

    def _run_folds(self, request: dict[str, Any],
                   done: list[tuple[int, RunResult]]) -> CrossValidationResult:
        """Train every fold not in ``done`` (appending to it), rewriting the summary."""
        from slt_cli.engine import Trainer

        finished = {fold for fold, _ in done}
        for fold in range(1, self.folds + 1):
            if fold in finished:
                continue
            if self._stop.is_set():
                raise self._interrupted(f"stopped before fold {fold} of {self.folds}; the "
                                        "folds before it are saved")
            folder = fold_folder(self.directory, fold)
            config = dataclasses.replace(self.config, data=dataclasses.replace(
                self.config.data, folds=self.folds, fold=fold))
            self._trainer = Trainer(config, checkpoint_dir=folder, device=self.device,
                                    reporter=self.reporter)
            resuming = has_resume(folder)
            self.reporter.note(f"fold {fold} of {self.folds}"
                               f"{' (resumed)' if resuming else ''}: checkpoints in {folder}")
            try:
                result = (self._trainer.resume("train") if resuming else
                          self._trainer.train(request["stages"], force=request["force"]))
            except RunInterrupted as exc:
                raise self._interrupted(f"fold {fold} of {self.folds}: {exc.message}") from None
            finally:
                self._trainer = None
            done.append((fold, result))
            self._write_summary(request, done)
        return CrossValidationResult(
            folds=self.folds, runs=tuple(run for _, run in sorted(done, key=lambda p: p[0])),
            stages=summarise(sorted(done, key=lambda p: p[0])),
            summary_path=self.directory / FOLDS_FILE)

    def _interrupted(self, message: str) -> RunInterrupted:
        return RunInterrupted(message, hint=f"Carry on with: slt train --folds {self.folds} "
                                            f"--resume --checkpoint-dir {self.directory}")

    @contextmanager
    def _holding(self) -> Iterator[None]:
        """Hold the parent folder for the whole run (each fold's Trainer holds its own)."""
        if not self.is_main:
            yield
            return
        with folder_lock(self.directory, new_run_id()):
            settle(self.directory)  # a killed write of folds.json
            yield

    def _read_summary(self) -> dict[str, Any] | None:
        path = self.directory / FOLDS_FILE
        if not (path.exists() or path.is_symlink()):
            return None
        try:
            summary = load_json(path)
            if not (isinstance(summary, dict) and isinstance(summary.get("folds"), int)
                    and isinstance(summary.get("runs"), list)
                    and isinstance(summary.get("request", {}).get("config"), dict)):
                raise ValueError("not a folds summary")
        except UnreadableFile as exc:
            raise CheckpointError(f"damaged cross-validation summary: {exc}",
                                  hint="Move it away to start a new run; the fold folders "
                                       "are intact.") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path}: damaged cross-validation summary ({exc})",
                                  hint="Move it away to start a new run; the fold folders "
                                       "are intact.") from None
        return summary

    def _archive_summary(self) -> None:
        """Keep a finished run's summary: moved into ``archive/<run_id>/``."""
        target = own_folder(self.directory, ARCHIVE_FOLDER) / new_run_id()
        target.mkdir(parents=True, exist_ok=True)
        (self.directory / FOLDS_FILE).replace(target / FOLDS_FILE)
        self.reporter.note(f"moved the earlier {FOLDS_FILE} to {target}")

    def _write_summary(self, request: dict[str, Any],
                       done: list[tuple[int, RunResult]]) -> None:
        if not self.is_main:
            return
        ordered = sorted(done, key=lambda pair: pair[0])
        summary = {
            "schema_version": SCHEMA_VERSION, "slt_version": __version__,
            "folds": self.folds, "complete": len(done) == self.folds,
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "request": request,
            "runs": [{"fold": fold, "folder": fold_folder(self.directory, fold).name,
                      **dataclasses.asdict(run)} for fold, run in ordered],
            "stages": [dataclasses.asdict(stage) for stage in summarise(ordered)],
        }
        text = json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n"
        atomic_write_bytes(self.directory / FOLDS_FILE, text.encode("utf-8"))


def _run_from_dict(entry: dict[str, Any]) -> RunResult:
    return RunResult(run_id=entry["run_id"],
                     stages=tuple(StageResult(**stage) for stage in entry["stages"]),
                     stopped=entry["stopped"], archived=tuple(entry["archived"]))
