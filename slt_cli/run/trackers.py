"""The numbers of ``metrics.csv`` sent to TensorBoard and MLflow too (``[run] log_to``).

The engine hands a ``Tracking`` what it writes to ``metrics.csv``, at the same points:
each finished epoch's row, then each finished stage's result; the run's resolved
configuration goes with the start. Under torchrun only rank 0 opens the trackers.

- TensorBoard: ``CHECKPOINT_DIR/tensorboard/<run_id>/``, through torch's
  ``SummaryWriter``. Tags ``stage_<N>_<name>/<metric>`` with the stage's epoch as step
  (0: its starting weights), ``best/<metric>`` with the stage's index as step, the
  configuration as text (``config``), and the run's settings with its last best as
  hparams when it ends.
- MLflow: experiment ``slt`` (or ``MLFLOW_EXPERIMENT_NAME``) at ``MLFLOW_TRACKING_URI``,
  else a local ``./mlruns`` folder; one MLflow run per slt run, named by its run_id and
  tagged ``slt.run_id``, found again by that tag when the run is resumed. The same keys
  as TensorBoard's, the settings as params, the configuration as ``config.json``.

Opening a tracker that cannot work (the extra not installed, an unreachable store)
stops the run before it trains, with an error. A tracker that fails later (a full
disk) is reported once and dropped; training, checkpoints and ``metrics.csv`` go on.
The libraries are imported only when a tracker opens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from slt_cli import __version__
from slt_cli.cfg.settings import trackers_of
from slt_cli.common.extras import require
from slt_cli.common.files import own_folder
from slt_cli.errors import RunInterrupted, SltError

if TYPE_CHECKING:
    from slt_cli.common.reporting import Reporter
    from slt_cli.run.history import EpochRow
    from slt_cli.run.plan import RunPlan
    from slt_cli.run.results import StageResult

TENSORBOARD_FOLDER = "tensorboard"  # in the checkpoint folder, one sub-folder per run_id
MLFLOW_FOLDER = "mlruns"  # in the current folder, when MLFLOW_TRACKING_URI is not set
MLFLOW_EXPERIMENT = "slt"  # when MLFLOW_EXPERIMENT_NAME is not set
RUN_ID_TAG = "slt.run_id"
# an epoch row's numbers, as metrics.csv names them; train_* are empty at epoch 0
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                 "is_best")
LABELS = {"tensorboard": "TensorBoard", "mlflow": "MLflow"}
_MAX_PARAMS = 100  # MLflow takes at most this many params in one request


def require_trackers(log_to: str) -> None:
    """Raises ``SltError`` naming the install command of each tracker of ``log_to``
    whose library is missing (checked without importing it)."""
    for name in trackers_of(log_to):
        require(name, f"logging to {LABELS[name]} ([run] log_to, --log-to)")


def _quietly() -> contextlib.suppress:
    """Ignore what a failed tracker raises while it is put away."""
    return contextlib.suppress(Exception)


@dataclass(frozen=True)
class RunInfo:
    """What a tracker is told of a run when it opens."""

    run_id: str
    params: dict[str, str | int | float | bool]  # the settings, flattened: run.seed, ...
    tags: dict[str, str]
    config: dict[str, Any]  # the resolved configuration, as JSON

    @classmethod
    def of(cls, plan: RunPlan, checkpoint_dir: Path) -> RunInfo:
        config = {**plan.config.to_dict(), "data": dataclasses.asdict(plan.data),
                  "model": plan.record}
        config["run"] = {key: value for key, value in config["run"].items()
                         if key != "log_to"}  # where it logs is no setting of the run
        trained = {f"stage_{step.saved_idx}_{step.stage.name}": dataclasses.asdict(step.stage)
                   for step in plan.steps}
        params = _flat({"run": config["run"], "data": config["data"],
                        "model": config["model"], **trained})
        tags = {RUN_ID_TAG: plan.run_id, "slt.kind": plan.kind,
                "slt.checkpoint_dir": str(checkpoint_dir.resolve()),
                "slt.data": plan.data.source, "slt.version": __version__,
                "slt.start": plan.start_checkpoint or "fresh weights"}
        return cls(plan.run_id, params, tags, config)


class _Tracker(Protocol):
    label: str

    def epoch(self, row: EpochRow) -> None: ...

    def stage(self, result: StageResult) -> None: ...

    def close(self, status: str) -> None: ...


class Tracking:
    """The trackers of one run; none when ``log_to`` is "none". A context manager:
    leaving it ends each tracker's run (FINISHED, KILLED when interrupted, FAILED)."""

    def __init__(self, trackers: list[_Tracker], reporter: Reporter) -> None:
        self._trackers = trackers
        self._reporter = reporter

    def epoch(self, row: EpochRow) -> None:
        """One finished epoch, the row ``metrics.csv`` just got."""
        self._each(lambda tracker: tracker.epoch(row))

    def stage_done(self, result: StageResult) -> None:
        """One finished stage: its best epoch."""
        self._each(lambda tracker: tracker.stage(result))

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        status = ("FINISHED" if kind is None else
                  "KILLED" if issubclass(kind, (RunInterrupted, KeyboardInterrupt)) else "FAILED")
        self._each(lambda tracker: tracker.close(status))
        self._trackers = []

    def _each(self, call: Callable[[_Tracker], None]) -> None:
        for tracker in list(self._trackers):
            try:
                call(tracker)
            except Exception as exc:  # a tracker never stops the training
                self._trackers.remove(tracker)
                self._reporter.note(f"{tracker.label} logging stopped: {_reason(exc)}; "
                                    "training goes on (checkpoints and metrics.csv are kept)")
                with _quietly():
                    tracker.close("FAILED")


def open_tracking(plan: RunPlan, checkpoint_dir: Path, reporter: Reporter, *,
                  active: bool = True) -> Tracking:
    """The trackers ``plan``'s ``[run] log_to`` names, opened (none unless ``active``:
    torchrun's ranks above 0).

    Raises:
        SltError: when a tracker's library is missing or its store cannot be opened.
    """
    if not active or not trackers_of(plan.config.run.log_to):
        return Tracking([], reporter)
    require_trackers(plan.config.run.log_to)
    info = RunInfo.of(plan, checkpoint_dir)
    opened: list[_Tracker] = []
    for name in trackers_of(plan.config.run.log_to):
        try:
            opened.append(_TensorBoard(checkpoint_dir, info) if name == "tensorboard"
                          else _MLflow(info))
        except Exception as exc:  # whatever the library raises, one line
            for tracker in opened:
                with _quietly():
                    tracker.close("FAILED")
            if isinstance(exc, SltError):
                raise
            where = (checkpoint_dir / TENSORBOARD_FOLDER if name == "tensorboard"
                     else _mlflow_uri())
            raise SltError(f"cannot log to {LABELS[name]} at {where}: {_reason(exc)}",
                           hint="Fix the store (MLFLOW_TRACKING_URI for MLflow), or train "
                                "without it: --log-to none.") from None
    return Tracking(opened, reporter)


class _TensorBoard:
    label = LABELS["tensorboard"]

    def __init__(self, checkpoint_dir: Path, info: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = own_folder(checkpoint_dir, TENSORBOARD_FOLDER) / info.run_id
        self._params = info.params
        self._best: StageResult | None = None
        self.writer = SummaryWriter(log_dir=str(folder))
        text = json.dumps(info.config, indent=2, sort_keys=True)
        self.writer.add_text("config", f"```\n{text}\n```")  # again when resumed
        self.writer.flush()

    def epoch(self, row: EpochRow) -> None:
        for key, value in _epoch_values(row):
            self.writer.add_scalar(key, value, row.epoch)
        self.writer.flush()  # readable as the run goes, not only every two minutes

    def stage(self, result: StageResult) -> None:
        for key, value in _best_values(result):
            self.writer.add_scalar(key, value, result.stage_idx)
        self.writer.flush()
        self._best = result

    def close(self, status: str) -> None:
        try:
            if status == "FINISHED" and self._best is not None:  # once, at the run's end
                # the HParams tab: the settings and the last stage's best
                self.writer.add_hparams(
                    self._params, {"hparam/best_val_accuracy": self._best.val_accuracy,
                                   "hparam/best_val_loss": self._best.val_loss},
                    run_name=".")  # this run's own folder, not a new one inside it
        finally:
            self.writer.close()


class _MLflow:
    label = LABELS["mlflow"]

    def __init__(self, info: RunInfo) -> None:
        uri = _mlflow_uri()
        if "://" not in uri or uri.startswith("file:"):
            # MLflow 3 refuses a local folder store unless asked; a local folder is
            # what the user chose (or the default), so ask, unless they said otherwise.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or MLFLOW_EXPERIMENT
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(name))
        found = self.client.search_runs(
            [experiment_id], f"tags.`{RUN_ID_TAG}` = '{info.run_id}'", max_results=1)
        if found:  # a resumed run carries on its MLflow run
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            return
        self.run_id = self.client.create_run(experiment_id, run_name=info.run_id,
                                             tags=info.tags).info.run_id
        params = [Param(key, str(value)) for key, value in info.params.items()]
        for first in range(0, len(params), _MAX_PARAMS):
            self.client.log_batch(self.run_id, params=params[first:first + _MAX_PARAMS])
        self.client.log_text(self.run_id, json.dumps(info.config, indent=2, sort_keys=True)
                             + "\n", "config.json")

    def epoch(self, row: EpochRow) -> None:
        self._log(_epoch_values(row), row.epoch)

    def stage(self, result: StageResult) -> None:
        self._log(_best_values(result), result.stage_idx)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)

    def _log(self, values: Iterator[tuple[str, float]], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, now, step)
                                                    for key, value in values])


def _mlflow_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or Path(MLFLOW_FOLDER).resolve().as_uri()


def _epoch_values(row: EpochRow) -> Iterator[tuple[str, float]]:
    """``stage_<N>_<name>/<metric>`` and its value, for each number the row has."""
    for name in EPOCH_METRICS:
        value = getattr(row, name)
        if value is not None:
            yield f"stage_{row.stage_idx}_{row.stage_name}/{name}", float(value)


def _best_values(result: StageResult) -> Iterator[tuple[str, float]]:
    yield "best/val_accuracy", result.val_accuracy
    yield "best/val_loss", result.val_loss
    yield "best/epoch", float(result.best_epoch)
    yield "best/training_time", result.training_time
    if result.gain is not None:
        yield "best/gain", result.gain


def _flat(table: Mapping[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """Nested settings as dotted keys: ``{"run": {"seed": 0}}`` -> ``{"run.seed": 0}``."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, (str, int, float, bool)):
            flat[f"{prefix}{key}"] = value
        else:  # None, a landmark list: as JSON
            flat[f"{prefix}{key}"] = json.dumps(value)
    return flat


def _reason(exc: BaseException) -> str:
    """The first line of what went wrong, short enough for one line."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else f"{line[:197]}..."

