"""Per-epoch metrics as CSV beside the checkpoints, so any tool can plot them.

``CHECKPOINT_DIR/metrics.csv`` holds one row per finished epoch of every run in the
folder (``train``, ``continue`` and their resumes), told apart by ``run_id``; a new
run appends, so earlier runs' rows are never lost. Columns: ``COLUMNS``. A stage
that starts from existing weights has a row for epoch 0 (its starting weights,
scored before training), with empty training loss and accuracy.

Each row is appended whole and fsynced before the engine saves that epoch's resume
state. A process killed mid-row leaves a torn last line: readers ignore a last line
without its newline, and the next append cuts it off first. A process killed after
the row but before the resume state runs that epoch again when resumed, so the
engine first forgets the rows it will write again (``forget_from``): every epoch of
a run appears once. Stdlib only, and no torch, so ``slt analyze`` stays fast.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, astuple, dataclass, fields
from pathlib import Path

from slt_cli.common.files import fsync_directory, read_bounded, readable_as_umask_allows
from slt_cli.common.reporting import EpochMetrics
from slt_cli.errors import StorageError, UnreadableFile
from slt_cli.store.checkpoints import atomic_write_bytes

METRICS_FILE = "metrics.csv"


@dataclass(frozen=True)
class EpochRow:
    """One finished epoch: the reporter's ``EpochMetrics`` plus which run it belongs to."""

    run_id: str
    kind: str  # train or continue
    stage_idx: int  # as in the sidecar of ``checkpoint``
    stage_name: str
    epoch: int  # 1-based, within the stage; 0 = the starting weights, before training
    epochs: int
    train_loss: float | None  # empty (None) at epoch 0
    train_accuracy: float | None  # empty (None) at epoch 0
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float
    is_best: bool  # a new best of the stage, saved under ``checkpoint``
    checkpoint: str  # where the stage's best weights are saved
    parent: str | None  # the checkpoint the stage started from

    @classmethod
    def from_metrics(cls, metrics: EpochMetrics, *, run_id: str, kind: str, stage_idx: int,
                     checkpoint: str, parent: str | None) -> EpochRow:
        """``stage_idx`` is the one the checkpoint records: a continue run's metrics count
        one stage further (it seeds the run), its checkpoint keeps its parent's."""
        return cls(**{**asdict(metrics), "stage_idx": stage_idx}, run_id=run_id, kind=kind,
                   checkpoint=checkpoint, parent=parent)

    @property
    def key(self) -> tuple[str, int, int]:
        return self.run_id, self.stage_idx, self.epoch


COLUMNS = tuple(f.name for f in fields(EpochRow))
# names of types: "int", "float | None"...; a cell holds the first one
_TYPES = {f.name: str(f.type).split(" | ")[0] for f in fields(EpochRow)}
_OPTIONAL = {"kind": "", "stage_name": "", "checkpoint": "", "parent": None,  # when empty
             "train_loss": None, "train_accuracy": None}


def metrics_path(directory: Path) -> Path:
    return directory / METRICS_FILE


def append_row(directory: Path, row: EpochRow) -> None:
    """Append ``row`` to the folder's metrics file (made, with its header, if absent),
    flushed and fsynced before returning.

    Raises:
        StorageError: when the file cannot be written.
    """
    path = metrics_path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        # "a": every write lands at the end; never through a link (it may be truncated).
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        with os.fdopen(os.open(path, flags, 0o666), "a+b") as handle:
            header = _cut_torn_tail(handle)
            text = io.StringIO()
            if header is None:
                header = list(COLUMNS)
                csv.writer(text, lineterminator="\n").writerow(header)
            # A file written by another version keeps its own columns.
            csv.DictWriter(text, header, restval="", extrasaction="ignore",
                           lineterminator="\n").writerow(_cells(row))
            handle.write(text.getvalue().encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            fsync_directory(directory)
    except OSError as exc:
        raise StorageError.writing(path, exc, elsewhere="with --checkpoint-dir") from None


def read_history(directory: Path) -> tuple[list[EpochRow], list[str]]:
    """Every epoch recorded in the folder, in the order written, and one line per
    row that could not be read (never fatal). A torn last line is not a problem:
    it is a row being written, or one a killed run never finished.

    An epoch recorded twice for the same run (run_id, stage_idx, epoch) counts once,
    with its latest values.
    """
    lines = _whole_lines(metrics_path(directory))
    if not lines:
        return [], []
    reader = csv.DictReader(io.StringIO(lines, newline=""))
    missing = [column for column in ("run_id", "stage_idx", "epoch")
               if column not in (reader.fieldnames or [])]
    if missing:
        return [], [f"{METRICS_FILE}: the header lacks {', '.join(missing)}"]
    rows: dict[tuple[str, int, int], EpochRow] = {}
    problems = []
    for record in reader:
        try:
            row = _parse(record)
        except (TypeError, ValueError) as exc:
            problems.append(f"{METRICS_FILE} line {reader.line_num}: {exc}")
            continue
        rows[row.key] = row
    return list(rows.values()), problems


def forget_from(directory: Path, run_id: str, first_epochs: Mapping[int, int]) -> int:
    """Drop the rows of ``run_id`` whose stage is in ``first_epochs`` and whose epoch is
    at least the one it maps to: the epochs a resumed run is about to train again.
    The file is rewritten atomically, and only when a row goes. Returns how many went.
    """
    path = metrics_path(directory)
    lines = _whole_lines(path)
    if not lines:
        return 0
    table = list(csv.reader(io.StringIO(lines, newline="")))
    header, body = table[0], table[1:]
    try:
        run, stage, epoch = (header.index(c) for c in ("run_id", "stage_idx", "epoch"))
    except ValueError:
        return 0

    def stale(cells: Sequence[str]) -> bool:
        try:
            return (cells[run] == run_id and int(cells[stage]) in first_epochs
                    and int(cells[epoch]) >= first_epochs[int(cells[stage])])
        except (IndexError, ValueError):
            return False

    kept = [cells for cells in body if not stale(cells)]
    if len(kept) == len(body):
        return 0
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *kept])
    atomic_write_bytes(path, text.getvalue().encode("utf-8"))
    readable_as_umask_allows(path)  # as the file was before
    return len(body) - len(kept)


def _cells(row: EpochRow) -> dict[str, str]:
    cells = {}
    for name, value in zip(COLUMNS, astuple(row), strict=True):
        if isinstance(value, bool):
            cells[name] = "1" if value else "0"
        elif value is None:
            cells[name] = ""
        else:
            cells[name] = str(value)  # repr of a float: reads back to the same number
    return cells


def _parse(record: Mapping[str, str | None]) -> EpochRow:
    values: dict[str, object] = {}
    for name in COLUMNS:
        cell = record.get(name)
        if cell is None or (cell == "" and name in _OPTIONAL):
            if name not in _OPTIONAL:
                raise ValueError(f"no {name}")
            values[name] = _OPTIONAL[name]
        elif _TYPES[name] == "int":
            values[name] = int(cell)
        elif _TYPES[name] == "float":
            values[name] = float(cell)
        elif _TYPES[name] == "bool":
            if cell not in ("0", "1"):
                raise ValueError(f"{name} is {cell!r}, not 0 or 1")
            values[name] = cell == "1"
        else:
            values[name] = cell
    return EpochRow(**values)  # type: ignore[arg-type]


def _whole_lines(path: Path) -> str:
    """The file's text up to its last newline ('' when absent or unreadable)."""
    try:
        text = read_bounded(path, "csv").decode("utf-8", errors="replace")
    except UnreadableFile:
        return ""
    return text[: text.rfind("\n") + 1]


def _cut_torn_tail(handle: io.BufferedRandom) -> list[str] | None:
    """Cut off a last line a killed writer left without its newline; return the
    file's header, or None when the file is empty."""
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return None
    handle.seek(max(0, size - 1))
    if handle.read(1) != b"\n":
        handle.seek(0)
        data = handle.read()
        handle.truncate(data.rfind(b"\n") + 1)
        if data.rfind(b"\n") < 0:
            return None
    handle.seek(0)
    first = handle.readline().decode("utf-8", errors="replace")
    return next(csv.reader([first]), None)
