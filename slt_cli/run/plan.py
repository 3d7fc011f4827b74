"""A run's plan: the stages it trains, the names it saves them under, and how far it got.

``Trainer`` makes a ``RunPlan`` for every run and advances it stage by stage; the plan
is saved with the training state after every epoch (``resume/state.json``), so
``slt train --resume`` carries on from it. ``RunPlan.from_json`` is the one place a plan
read from disk is checked: its keys and types, its settings through the config's own
checks (``config.build_config``/``build_table``), its checkpoint names through
``checkpoints.check_name``, so an edited state is a clear error, never a crash later on.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slt_cli.cfg.config import Config, DataConfig, StageConfig, build_config, build_table
from slt_cli.errors import CheckpointError, SltError
from slt_cli.run.results import RunResult, StageResult
from slt_cli.store.checkpoints import check_name

KINDS = ("train", "continue")  # the commands whose runs can be resumed


@dataclass(frozen=True)
class Step:
    """One stage of a plan and the names its checkpoints are saved under."""

    stage_idx: int  # its place in the curriculum (what its random seeds derive from)
    saved_idx: int  # the stage index its checkpoints record
    stage: StageConfig
    best_name: str
    final_name: str | None  # stage_N_<name>; None for ``continue``

    def fitted(self, frames: int) -> StageConfig:
        """The stage as it can run on clips of ``frames`` frames: on single-frame clips
        (static handshapes, fingerspelled letters) a time mask would blank the whole
        clip and keep its label, and a tempo change does nothing, so both are off."""
        augment = self.stage.augment
        if frames > 1 or not (augment.speed or augment.time_mask):
            return self.stage
        return dataclasses.replace(self.stage, augment=dataclasses.replace(
            augment, speed=0.0, time_mask=0.0))

    def to_json(self) -> dict[str, Any]:
        return {"stage_idx": self.stage_idx, "saved_idx": self.saved_idx,
                "stage": dataclasses.asdict(self.stage), "best_name": self.best_name,
                "final_name": self.final_name}


@dataclass(frozen=True)
class RunPlan:
    """What a run does and where it is.

    ``steps[position]`` is the step running (or next); ``results`` are the finished
    steps'; the next step starts from ``start_checkpoint`` with ``start_metrics``
    (``(val_loss, val_accuracy)``; both None for fresh weights).
    """

    kind: str  # one of KINDS
    run_id: str
    config: Config  # the run's whole configuration
    data: DataConfig  # as loaded: the resolved source and frame count
    data_seed: int  # the seed that dealt the split (a continued checkpoint's own)
    record: dict[str, Any]  # what builds the network (records.model_record)
    steps: tuple[Step, ...]
    threshold: float  # a stage that gains less ends the run (-1.0: never)
    position: int = 0
    results: tuple[StageResult, ...] = ()
    start_checkpoint: str | None = None
    start_metrics: tuple[float, float] | None = None

    @property
    def step(self) -> Step:
        return self.steps[self.position]

    def at(self, position: int) -> RunPlan:
        return dataclasses.replace(self, position=position)

    def after(self, result: StageResult) -> RunPlan:
        """The plan once the current step ended with ``result``: the next step starts
        from its best weights."""
        return dataclasses.replace(self, results=(*self.results, result),
                                   start_checkpoint=result.checkpoint,
                                   start_metrics=(result.val_loss, result.val_accuracy))

    def outcome(self, stopped: str | None, archived: tuple[str, ...] = ()) -> RunResult:
        return RunResult(run_id=self.run_id, stages=self.results, stopped=stopped,
                         archived=archived)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "run_id": self.run_id, "config": self.config.to_dict(),
                "data": dataclasses.asdict(self.data), "data_seed": self.data_seed,
                "record": self.record, "steps": [step.to_json() for step in self.steps],
                "threshold": self.threshold, "position": self.position,
                "results": [dataclasses.asdict(result) for result in self.results],
                "start": {"checkpoint": self.start_checkpoint,
                          "metrics": None if self.start_metrics is None
                          else list(self.start_metrics)}}

    @classmethod
    def from_json(cls, raw: Any, source: str) -> RunPlan:
        """Check a plan as read from JSON (``source`` names the file in messages).

        Raises:
            CheckpointError: naming every key that is missing or wrong.
        """
        read = Reader(source)
        table = read.table(raw, "plan")
        data = read.table(table.get("data"), "data")
        data = {"normalise": "sequence", **data}  # as in ``Reader.config``
        config = read.config(table.get("config"), "config")
        steps = read.items(table.get("steps"), "steps", lambda item, where: Step(
            stage_idx=read.get(item, "stage_idx", int, where),
            saved_idx=read.get(item, "saved_idx", int, where),
            stage=build_table(StageConfig, item.get("stage"), f"{where}.stage", read.report),
            best_name=read.name(item.get("best_name"), f"{where}.best_name"),
            final_name=read.name(item.get("final_name"), f"{where}.final_name",
                                 optional=True)))
        record = read.table(table.get("record"), "record")
        read.get(record, "name", str, "record")
        read.table(record.get("settings"), "record.settings")
        start = read.table(table.get("start"), "start")
        metrics = start.get("metrics")
        plan = cls(
            kind=read.choice(table.get("kind"), KINDS, "kind"),
            run_id=read.get(table, "run_id", str, "plan"),
            config=config,  # type: ignore[arg-type]  # None only with problems
            data=build_table(DataConfig, data, "data", read.report),
            data_seed=read.get(table, "data_seed", int, "plan"),
            record=record,
            steps=steps,
            threshold=read.get(table, "threshold", float, "plan"),
            position=read.get(table, "position", int, "plan"),
            results=read.items(table.get("results"), "results", read.stage_result),
            start_checkpoint=read.name(start.get("checkpoint"), "start.checkpoint",
                                       optional=True),
            start_metrics=None if metrics is None else read.pair(metrics, "start.metrics"))
        if not read.problems and not 0 <= plan.position < len(plan.steps):
            read.report("position", f"must name one of the {len(plan.steps)} steps")
        read.done()
        return plan


class Reader:
    """Takes typed values out of JSON, noting every problem rather than stopping at the
    first; ``done()`` raises them together. Shared by the run plan and the
    cross-validation summary."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def report(self, where: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}: {message}")

    def done(self) -> None:
        """Raises:
            CheckpointError: listing the first problems, when there are any."""
        if self.problems:
            more = len(self.problems) - 3
            raise CheckpointError("; ".join(self.problems[:3]) + (
                f" (and {more} more)" if more > 0 else ""),
                hint="The file was edited or damaged; move it away and start a new run "
                     "(the saved checkpoints are intact).")

    def config(self, value: Any, where: str) -> Config | None:
        """A run's whole configuration, through ``config.build_config``'s checks."""
        table = self.table(value, where)
        if isinstance(table.get("data"), dict):  # runs stopped before [data] normalise
            table = {**table, "data": {"normalise": "sequence", **table["data"]}}
        try:
            return build_config(table, self.source)
        except SltError as exc:
            self.problems.append(exc.message)
            return None

    def table(self, value: Any, where: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        self.report(where, "must be a table")
        return {}

    def get(self, table: dict[str, Any], key: str, kind: type, where: str) -> Any:
        """``table[key]`` as ``kind`` (int, float, str or bool); a float is finite."""
        value = table.get(key)
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if ok and kind is float and not math.isfinite(value):
            ok = False
        if not ok:
            self.report(f"{where}.{key}", f"must be {_KIND_NAMES[kind]}")
            return kind()
        return value

    def choice(self, value: Any, choices: tuple[str, ...], where: str) -> str:
        if value not in choices:
            self.report(where, f"must be one of {', '.join(choices)}")
            return choices[0]
        return value

    def name(self, value: Any, where: str, *, optional: bool = False) -> Any:
        """A checkpoint name (never a path), or None when ``optional``."""
        if value is None and optional:
            return None
        try:
            return check_name(value) if isinstance(value, str) else check_name("")
        except CheckpointError as exc:
            self.report(where, exc.message)
            return ""

    def pair(self, value: Any, where: str) -> tuple[float, float]:
        if not isinstance(value, list) or len(value) != 2:
            self.report(where, "must be [val_loss, val_accuracy]")
            return (0.0, 0.0)
        return (self.get({"0": value[0]}, "0", float, where),
                self.get({"1": value[1]}, "1", float, where))

    def items(self, value: Any, where: str,
              read_one: Callable[[dict[str, Any], str], Any]) -> tuple[Any, ...]:
        """Each table of a JSON list through ``read_one(table, where)``."""
        if not isinstance(value, list):
            self.report(where, "must be a list")
            return ()
        return tuple(read_one(self.table(item, f"{where}[{i}]"), f"{where}[{i}]")
                     for i, item in enumerate(value))

    def stage_result(self, table: dict[str, Any], where: str) -> StageResult:
        """A finished stage's result as ``dataclasses.asdict`` wrote it."""
        known = {field.name for field in dataclasses.fields(StageResult)}
        for key in sorted(set(table) - known):
            self.report(f"{where}.{key}", "unknown key")
        optional = {"final_checkpoint", "parent", "gain", "epochs_run"}
        values = {}
        for field in dataclasses.fields(StageResult):
            value = table.get(field.name)
            if value is None and field.name in optional:
                values[field.name] = None
            elif field.name in ("checkpoint", "final_checkpoint", "parent"):
                values[field.name] = self.name(value, f"{where}.{field.name}")
            else:
                kind = {"int": int, "float": float, "str": str}[
                    str(field.type).split(" | ")[0]]
                values[field.name] = self.get(table, field.name, kind, where)
        return StageResult(**values)


_KIND_NAMES = {int: "an integer", float: "a finite number", str: "a string",
               bool: "true or false"}
