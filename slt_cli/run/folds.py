"""K-fold cross-validation: the staged run once per fold, then the spread per stage.

``slt train --folds K`` trains the selected stages K times. Fold ``i`` validates on
fold ``i`` of ``data.preprocess.assign_folds`` (whole signers when the data names
them, else a share of every class) and trains on the rest; "test" sequences stay
test in every fold. Each fold is an ordinary run of the engine into its own
checkpoint folder, ``CHECKPOINT_DIR/fold_i/`` (own lock, resume state, archive), with
``data.folds = K`` and ``data.fold = i`` in its configuration, so every sidecar says
which split it was scored on and ``evaluate``, ``continue`` and ``--resume`` rebuild
that split. The parent folder is held through the same ``RunFolder`` as a fold's,
and keeps the summary, ``folds.json`` (``foldsummary.FoldsSummary``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slt_cli.cfg.config import Config
from slt_cli.common.reporting import Reporter
from slt_cli.errors import ConfigError, RunInterrupted, SltError
from slt_cli.run.foldsummary import (
    FoldsRequest,
    FoldsSummary,
    FoldStage,
    People,
    fold_folder,
    unfinished_folds,
)
from slt_cli.run.results import RunResult
from slt_cli.run.runfolder import RunFolder
from slt_cli.store.checkpoints import FOLDS_FILE, new_run_id

if TYPE_CHECKING:
    from slt_cli.run.engine import Trainer

__all__ = ["CrossValidation", "CrossValidationResult", "fold_folder", "unfinished_folds"]


@dataclass(frozen=True)
class CrossValidationResult:
    folds: int
    runs: tuple[RunResult, ...]  # fold 1 first
    stages: tuple[FoldStage, ...]
    summary_path: Path


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
        from slt_cli.run.distributed import world_from_environment

        if folds < 2:
            raise ConfigError(f"--folds {folds}: cross-validation needs at least 2 folds",
                              hint="Use --folds 5 (say), or leave --folds out for one run.")
        self.config = config
        self.folds = folds
        self.directory = Path(checkpoint_dir or config.run.checkpoint_dir)
        self.device = device
        self.reporter = reporter or Reporter()
        # under torchrun, rank 0 writes
        self.folder = RunFolder(self.directory, writes=world_from_environment().is_main)
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
        from slt_cli.data import check_folds

        selected = tuple(stages) if stages else tuple(range(1, len(self.config.stages) + 1))
        summary = FoldsSummary(self.folds, FoldsRequest(self.config, selected, force))
        # data that cannot make K folds: refused before the folder is held or written
        check_folds(self.config.data, self.folds, self.config.run.seed, self.reporter)
        with self._holding():
            # Only rank 0 looks: it may already have written the new summary when
            # another process would read it.
            earlier = FoldsSummary.read(self.directory) if self.folder.writes else None
            if earlier is not None and not earlier.complete:
                raise SltError(f"{self.directory} holds an unfinished {earlier.folds}-fold "
                               f"run ({len(earlier.runs)} of {earlier.folds} folds done)",
                               hint=f"Carry it on with `slt train --folds {earlier.folds} "
                                    f"--resume --checkpoint-dir {self.directory}`, or use "
                                    "another --checkpoint-dir.")
            if earlier is not None:
                target = self.folder.archive_file(FOLDS_FILE, new_run_id())
                self.reporter.note(f"moved the earlier {FOLDS_FILE} to {target}")
            self._write(summary)  # from now on, --resume knows what was asked
            try:
                return self._run_folds(summary)
            except SltError as exc:
                # Refused before any fold trained (data that cannot make K folds): leave
                # nothing behind that would ask for a --resume.
                if self.folder.writes and not isinstance(exc, RunInterrupted) and not (
                        RunFolder(fold_folder(self.directory, 1)).interrupted()
                        or FoldsSummary.read(self.directory).runs):
                    self.folder.discard(FOLDS_FILE)
                raise

    def resume(self) -> CrossValidationResult:
        """Carry on the unfinished cross-validation run in the folder: finished folds
        are kept, an interrupted fold resumes where it stopped, the others start."""
        with self._holding():
            earlier = FoldsSummary.read(self.directory)
            if earlier is None:
                raise SltError(f"no cross-validation run to resume in {self.directory} "
                               f"(no {FOLDS_FILE})",
                               hint="Start one with `slt train --folds K`.")
            if earlier.complete:
                raise SltError(f"the {earlier.folds}-fold run in {self.directory} is "
                               "finished; there is nothing to resume",
                               hint=f"Its summary is in {self.directory / FOLDS_FILE}.")
            if earlier.folds != self.folds:
                raise SltError(f"the unfinished run in {self.directory} has "
                               f"{earlier.folds} folds, not {self.folds}",
                               hint=f"Resume it with --folds {earlier.folds}.")
            return self._run_folds(earlier)

    # --- inside ----------------------------------------------------------------------

    def _run_folds(self, summary: FoldsSummary) -> CrossValidationResult:
        """Train every fold ``summary`` lacks, rewriting the summary after each."""
        from slt_cli.run.engine import Trainer

        request = summary.request
        finished = {fold for fold, _ in summary.runs}
        for fold in range(1, self.folds + 1):
            if fold in finished:
                continue
            if self._stop.is_set():
                raise self._interrupted(f"stopped before fold {fold} of {self.folds}; the "
                                        "folds before it are saved")
            folder = fold_folder(self.directory, fold)
            if folder.is_symlink():  # slt makes fold_N itself; a link could name any folder
                raise SltError(f"{folder} is a symbolic link; slt will not write a fold "
                               "through it", hint="Remove the link (slt makes the folder).")
            config = dataclasses.replace(request.config, data=dataclasses.replace(
                request.config.data, folds=self.folds, fold=fold))
            self._trainer = Trainer(config, checkpoint_dir=folder, device=self.device,
                                    reporter=self.reporter)
            resuming = self._trainer.folder.interrupted()
            self.reporter.note(f"fold {fold} of {self.folds}"
                               f"{' (resumed)' if resuming else ''}: checkpoints in {folder}")
            try:
                result = (self._trainer.resume("train") if resuming else
                          self._trainer.train(request.stages, force=request.force))
                people = _validation_people(self._trainer, result)
            except RunInterrupted as exc:
                raise self._interrupted(f"fold {fold} of {self.folds}: {exc.message}") from None
            finally:
                self._trainer = None
            summary = summary.with_run(fold, result, people)
            self._write(summary)
        return CrossValidationResult(
            folds=self.folds, runs=tuple(run for _, run in summary.runs),
            stages=summary.stages, summary_path=self.directory / FOLDS_FILE)

    def _interrupted(self, message: str) -> RunInterrupted:
        return RunInterrupted(message, hint=f"Carry on with: slt train --folds {self.folds} "
                                            f"--resume --checkpoint-dir {self.directory}")

    @contextmanager
    def _holding(self) -> Iterator[None]:
        """Hold the parent folder for the whole run (each fold's Trainer holds its own)."""
        with self.folder.hold(new_run_id()):
            yield

    def _write(self, summary: FoldsSummary) -> None:
        self.folder.write_json(FOLDS_FILE, summary.to_json(self.directory))


def _validation_people(trainer: Trainer, result: RunResult) -> People:
    """Each stage's best, scored on its fold's validation split person by person:
    (clips right, clips) per person, for pooling across folds."""
    people: People = {}
    for stage in result.stages:
        scored = trainer.evaluate(stage.checkpoint, split="val")
        people[stage.stage_idx] = {
            person: (round(accuracy * scored.signer_sequences[person]),
                     scored.signer_sequences[person])
            for person, accuracy in scored.per_signer.items()}
    return people
