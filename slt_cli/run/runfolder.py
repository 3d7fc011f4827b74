"""A checkpoint folder as a run holds it: the one owner of what a run writes there.

A run takes the folder's lock, tidies what a killed run left (``checkpoints.settle``),
moves the files it would overwrite into ``archive/<run_id>/``, saves checkpoints and
their epoch log (``metrics.csv``), and keeps its resume state up to date until it
ends. ``Trainer`` holds one folder per run, ``CrossValidation`` the parent folder of
its folds (its summary, ``folds.json``, is archived and written through it too).

Under torchrun every process makes a ``RunFolder``, but only rank 0's writes
(``writes=True``): the others' writes do nothing, so the files are the ones a single
process would write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slt_cli.common.files import own_folder
from slt_cli.errors import CheckpointError, SltError
from slt_cli.run.history import EpochRow, append_row, forget_from
from slt_cli.run.plan import RunPlan
from slt_cli.run.resume import (
    RESUME_FOLDER,
    STATE_FILE,
    clear_resume,
    has_resume,
    load_resume,
    save_resume,
)
from slt_cli.store.archive import archive_existing, dependants
from slt_cli.store.checkpoints import (
    ARCHIVE_FOLDER,
    EXPORT_FOLDER,
    atomic_write_bytes,
    save_checkpoint,
    settle,
    update_sidecar,
)
from slt_cli.store.lock import folder_lock

if TYPE_CHECKING:
    import torch

    from slt_cli.store.sidecar import Sidecar

    State = dict[str, torch.Tensor]


class RunFolder:
    """One checkpoint folder, written by one run at a time.

    Args:
        directory: The folder (made when first held).
        writes: False in the processes that only read (torchrun's ranks above 0).
    """

    def __init__(self, directory: Path, *, writes: bool = True) -> None:
        self.directory = directory
        self.writes = writes

    @contextmanager
    def hold(self, run_id: str, *, refuse_interrupted: bool = False) -> Iterator[None]:
        """Lock the folder for ``run_id`` and tidy what a killed run left, while the
        block runs. A reader (``writes=False``) takes no lock.

        Raises:
            SltError: when another run holds the folder, a folder of slt's is a link,
                or (``refuse_interrupted``) an interrupted run waits for ``--resume``.
        """
        if not self.writes:
            yield
            return
        with folder_lock(self.directory, run_id):
            for name in (ARCHIVE_FOLDER, RESUME_FOLDER, EXPORT_FOLDER):  # before any write
                own_folder(self.directory, name)
            settle(self.directory)
            if refuse_interrupted and self.interrupted():
                raise SltError(f"{self.directory} holds an interrupted run",
                               hint="Carry it on with `slt train --resume` (or `slt continue "
                                    "--resume`), or use another --checkpoint-dir.")
            yield

    # --- checkpoints -------------------------------------------------------------------

    def archive(self, names: Iterable[str], run_id: str) -> tuple[list[str], list[str]]:
        """Move the checkpoints ``names`` into ``archive/<run_id>/`` before a run
        writes them, with every checkpoint trained from them. Returns the names moved
        and, among them, those trained from ``names``."""
        if not self.writes:
            return [], []
        names = list(names)
        orphaned = dependants(self.directory, names)
        return archive_existing(self.directory, [*names, *orphaned], run_id), orphaned

    def save(self, name: str, state: State, sidecar: Sidecar) -> None:
        if self.writes:
            save_checkpoint(self.directory, name, state, sidecar)

    def update(self, name: str, **changes: Any) -> None:
        """Change keys of a saved checkpoint's sidecar (its weights stay)."""
        if self.writes:
            update_sidecar(self.directory, name, **changes)

    def log(self, row: EpochRow) -> None:
        """One epoch's row of ``metrics.csv``."""
        if self.writes:
            append_row(self.directory, row)

    def forget(self, run_id: str, first_epochs: Mapping[int, int]) -> None:
        """Drop ``metrics.csv``'s rows of the epochs a resumed run trains again."""
        if self.writes:
            forget_from(self.directory, run_id, first_epochs)

    # --- the resume state --------------------------------------------------------------

    def interrupted(self) -> bool:
        """Whether an interrupted run waits here for ``--resume``."""
        return has_resume(self.directory)

    def save_state(self, plan: RunPlan, stage: dict[str, Any], tensors: State) -> None:
        """Where the run is: its plan, the running stage's values and its tensors."""
        if self.writes:
            save_resume(self.directory, {**plan.to_json(), "stage": stage}, tensors)

    def load_state(self) -> tuple[RunPlan, dict[str, Any], State]:
        """The interrupted run's plan, its running stage's values and its tensors.

        Raises:
            SltError: when there is nothing to resume.
            CheckpointError: when the resume state is damaged or was edited.
        """
        raw, tensors = load_resume(self.directory)
        source = str(self.directory / RESUME_FOLDER / STATE_FILE)
        plan = RunPlan.from_json(raw, source)
        stage = raw.get("stage")
        if not (isinstance(stage, dict) and isinstance(stage.get("epoch"), int)
                and isinstance(stage.get("batch"), int)):
            raise CheckpointError(f"{source}: damaged resume state (stage)",
                                  hint="Start a new run; the saved checkpoints are intact.")
        return plan, stage, tensors

    def clear_state(self) -> None:
        """Forget the resume state: the run it belongs to has finished."""
        if self.writes:
            clear_resume(self.directory)

    # --- other records -----------------------------------------------------------------

    def write_json(self, filename: str, payload: Any) -> None:
        """Write a JSON record of the run (``folds.json``) whole or not at all."""
        if self.writes:
            text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
            atomic_write_bytes(self.directory / filename, text.encode("utf-8"))

    def discard(self, filename: str) -> None:
        """Remove the run record ``filename`` this run wrote (a run refused at once)."""
        if self.writes:
            (self.directory / filename).unlink(missing_ok=True)

    def archive_file(self, filename: str, run_id: str) -> Path:
        """Move the run record ``filename`` into ``archive/<run_id>/``; returns where."""
        target = own_folder(self.directory, ARCHIVE_FOLDER) / run_id
        if self.writes:
            target.mkdir(parents=True, exist_ok=True)
            (self.directory / filename).replace(target / filename)
        return target
