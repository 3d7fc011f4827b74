"""The sidecar: everything a checkpoint records besides its weights, as one typed record.

``NAME.json`` beside ``NAME.safetensors``. ``Sidecar.from_json`` is the one place a
sidecar read from disk is checked and migrated: its keys and types, and the settings it
was trained with through the same checks as a stages.toml (``config.build_table``), so an
edited sidecar is a clear error naming its key, never a crash later on. Torch-free:
``slt list`` reads sidecars alone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slt_cli.cfg.config import (
    ENSEMBLE_MODEL,
    JOINT_MODELS,
    MODEL_NAMES,
    DataConfig,
    RunConfig,
    StageConfig,
    build_table,
)
from slt_cli.common.ranges import MODEL_FLOAT_MAX, MODEL_INT_MAX
from slt_cli.errors import CheckpointError

SCHEMA_VERSION = 1
# keys later schema versions added, and the value an older sidecar means by leaving them out
_ADDED_KEYS = {"schema_version": SCHEMA_VERSION, "parent": None, "run_id": None,
               "stage_description": None, "stage_time": None, "joints": None, "members": None,
               "distilled": None}
# the keys every stage checkpoint's sidecar has (an ensemble's adds ``members``)
SIDECAR_KEYS = (
    "schema_version", "stage_idx", "stage_name", "stage_description", "val_loss",
    "val_accuracy", "config", "training_time", "stage_time", "epoch", "created_at", "classes",
    "model", "parent", "slt_version", "weights_sha256", "run_id", "joints",
)
_MODEL_SIZES = {"in_features": 1_000_000, "num_classes": 100_000, "num_frames": 10_000}
_MODEL_KEYS = {"name": str, "settings": dict, "in_features": int, "num_classes": int,
               "num_frames": int}


@dataclass(frozen=True)
class TrainedWith:
    """The resolved settings a checkpoint was trained with (the sidecar's ``config``)."""

    run: RunConfig
    data: DataConfig  # as loaded: ``source`` and the resolved ``frames``
    model: Mapping[str, Any]  # {"name": ..., **the builder's resolved settings}
    stage: StageConfig | None = None  # None for an ensemble
    ensemble: Mapping[str, Any] | None = None  # {"method", "members"} of an ensemble

    def to_json(self) -> dict[str, Any]:
        values: dict[str, Any] = {"run": dataclasses.asdict(self.run),
                                  "data": dataclasses.asdict(self.data),
                                  "model": dict(self.model)}
        if self.stage is not None:
            values["stage"] = dataclasses.asdict(self.stage)
        if self.ensemble is not None:
            values["ensemble"] = dict(self.ensemble)
        return values


@dataclass(frozen=True)
class Teacher:
    """One teacher of a distilled student: its checkpoint name and weights' SHA-256."""

    name: str
    weights_sha256: str


@dataclass(frozen=True)
class Distillation:
    """How a student was distilled (``slt distill``): its teachers and the loss's mix."""

    teachers: tuple[Teacher, ...]
    alpha: float  # share of the soft-target term; 0 = plain cross-entropy
    temperature: float
    parameters: int  # the student's parameter count

    def to_json(self) -> dict[str, Any]:
        return {"teachers": [dataclasses.asdict(t) for t in self.teachers],
                "alpha": self.alpha, "temperature": self.temperature,
                "parameters": self.parameters}


@dataclass(frozen=True)
class Sidecar:
    """A checkpoint's record: its scores, lineage, classes, network and settings."""

    stage_idx: int
    stage_name: str
    stage_description: str | None
    val_loss: float
    val_accuracy: float
    epoch: int  # the epoch of these weights within their stage; 0 = the stage's start
    training_time: float  # seconds of the stage until this epoch
    stage_time: float | None  # seconds of the whole stage (None: not recorded)
    classes: tuple[str, ...]
    joints: tuple[str, ...] | None  # raw landmark names the preprocessing takes
    model: Mapping[str, Any]  # what rebuilds the network (see records.model_record)
    parent: str | None  # the checkpoint these weights started from
    run_id: str | None
    slt_version: str
    config: TrainedWith
    members: tuple[str, ...] | None = None  # an ensemble's checkpoints
    distilled: Distillation | None = None  # a distilled student's lineage
    schema_version: int = SCHEMA_VERSION
    created_at: str = ""  # filled when saved
    weights_sha256: str = ""  # filled when saved
    name: str = dataclasses.field(default="", compare=False)  # the file's; not stored

    def to_json(self) -> dict[str, Any]:
        """The sidecar as written to ``NAME.json`` (no ``name``: the file names it)."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                  if field.name not in ("name", "config")}
        values["classes"] = list(self.classes)
        values["joints"] = None if self.joints is None else list(self.joints)
        values["members"] = None if self.members is None else list(self.members)
        if self.members is None:
            del values["members"]
        if self.distilled is None:
            del values["distilled"]
        else:
            values["distilled"] = self.distilled.to_json()
        values["model"] = dict(self.model)
        values["config"] = self.config.to_json()
        return values

    def replace(self, **changes: Any) -> Sidecar:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_json(cls, raw: Any, name: str = "") -> Sidecar:
        """Check and migrate a sidecar as read from JSON.

        Raises:
            CheckpointError: naming every key that is missing, unknown or wrong, e.g.
                ``sidecar key 'config.run.seed': must be an integer, got a string``.
        """
        problems: list[str] = []

        def report(key: str, message: str) -> None:
            problems.append(f"sidecar key {key!r}: {message}")

        if not isinstance(raw, dict):
            raise CheckpointError("sidecar is not a JSON object")
        values = {**_ADDED_KEYS, **raw}
        schema = values.get("schema_version")
        if isinstance(schema, int) and schema > SCHEMA_VERSION:
            raise CheckpointError(f"sidecar of schema {schema}, written by a "
                                  f"newer slt (this one reads up to {SCHEMA_VERSION})",
                                  hint="Upgrade slt to use this checkpoint.")
        known = {field.name for field in dataclasses.fields(cls)} - {"name"}
        if missing := sorted(set(SIDECAR_KEYS) - set(values)):
            problems.append(f"sidecar lacks {', '.join(missing)}")
        for key in sorted(set(values) - known):
            report(key, "unknown key")
        checked = {key: _checked(key, values[key], report)
                   for key in sorted(known & set(values)) if key != "config"}
        config = (_trained_with(values["config"], report) if "config" in values
                  else TrainedWith(RunConfig(), DataConfig(), {}))
        if problems:
            raise CheckpointError("; ".join(problems[:3]) + (
                f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""),
                hint="The sidecar was edited or damaged; retrain or restore it.")
        return cls(name=name, config=config, **checked)


# --- checks --------------------------------------------------------------------------

def checked_values(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """Some of a sidecar's top-level values (``stage_idx``, ``val_loss``...) through the
    checks and conversions ``Sidecar.from_json`` gives them; None when one is unknown or
    wrong. For copies of a sidecar's values kept elsewhere (the listing index)."""
    problems: list[str] = []

    def report(key: str, message: str) -> None:
        problems.append(key)

    checked = {key: _checked(key, value, report) for key, value in values.items()
               if key in _TYPES}
    return None if problems or len(checked) != len(values) else checked


Report = Callable[[str, str], None]
_NUMBER = "a finite number"


def _checked(key: str, value: Any, report: Report, kind: Any = None) -> Any:
    """One top-level value (or a value of ``kind``), checked and converted (lists become
    tuples)."""
    kind = _TYPES[key] if kind is None else kind
    if kind == "names" or kind == "names?":
        if value is None and kind == "names?":
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            report(key, "must be a list of names")
            return ()
        return tuple(value)
    if kind == "model":
        return _model_record(key, value, report)
    if kind == "distilled":
        return _distillation(key, value, report)
    optional = isinstance(kind, tuple)
    kind = kind[0] if optional else kind
    if value is None and optional:
        return None
    if kind is float:
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value)):
            report(key, f"must be {_NUMBER}, got {_shown(value)}")
            return 0.0
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        report(key, f"must be {'an integer' if kind is int else 'a string'}, got {_shown(value)}")
        return kind()
    if kind is int and value < 0:
        report(key, "must be >= 0")
    return value


def _model_record(key: str, value: Any, report: Report) -> dict[str, Any]:
    """A model record (an ensemble's holds its members' records), checked without torch:
    its name, its data sizes, and every setting a buildable size (a network of an edited
    ``dim = 10**9`` is refused here, not allocated)."""
    if not isinstance(value, dict):
        report(key, f"must be a table, got {_shown(value)}")
        return {}
    name = value.get("name")
    if name not in (*MODEL_NAMES, ENSEMBLE_MODEL):
        report(f"{key}.name", f"unknown model {name!r}")
    for part, kind in _MODEL_KEYS.items():
        item = value.get(part)
        if not isinstance(item, kind) or isinstance(item, bool):
            report(f"{key}.{part}", "missing or of the wrong type")
        elif kind is int and not 0 < item <= _MODEL_SIZES[part]:
            report(f"{key}.{part}", f"must be between 1 and {_MODEL_SIZES[part]}")
    if name in JOINT_MODELS or "joints" in value:
        joints = value.get("joints")
        features = value.get("in_features")
        if (not isinstance(joints, list) or not joints
                or not all(isinstance(item, str) for item in joints)):
            report(f"{key}.joints", "must list the landmarks' names")
        elif isinstance(features, int) and features % len(joints):
            report(f"{key}.joints", f"{len(joints)} landmarks do not divide in_features "
                                    f"({features})")
    settings = value.get("settings")
    if not isinstance(settings, dict):
        return value
    if name == ENSEMBLE_MODEL:
        members = settings.get("members")
        if not isinstance(members, list) or not members:
            report(f"{key}.settings.members", "must list the members' model records")
        else:
            for index, member in enumerate(members):
                _model_record(f"{key}.settings.members[{index}]", member, report)
        return value
    for setting, item in settings.items():
        problem = _setting_problem(item)
        if problem:
            report(f"{key}.settings.{setting}", f"{problem}, got {_shown(item)}")
    return value


def _distillation(key: str, value: Any, report: Report) -> Distillation | None:
    """A student's lineage (null for every other checkpoint), checked."""
    if value is None:
        return None
    fields = {"teachers": list, "alpha": float, "temperature": float, "parameters": int}
    if not isinstance(value, dict) or set(value) != set(fields):
        report(key, f"must be a table of {', '.join(fields)}")
        return None
    teachers = value["teachers"]
    if not isinstance(teachers, list) or not teachers or not all(
            isinstance(t, dict) and set(t) == {"name", "weights_sha256"}
            and all(isinstance(v, str) for v in t.values()) for t in teachers):
        report(f"{key}.teachers", "must list tables of name and weights_sha256")
        return None
    alpha, temperature = (_checked(f"{key}.{k}", value[k], report, float)
                          for k in ("alpha", "temperature"))
    parameters = _checked(f"{key}.parameters", value["parameters"], report, int)
    if not 0.0 <= alpha <= 1.0:
        report(f"{key}.alpha", "must be between 0 and 1")
    if not temperature > 0:
        report(f"{key}.temperature", "must be > 0")
    return Distillation(tuple(Teacher(**t) for t in teachers), alpha, temperature, parameters)


def _setting_problem(value: Any) -> str | None:
    """What is wrong with one model setting as stored (None: nothing): a size or count
    (an integer) in 1..MODEL_INT_MAX, a number finite and within MODEL_FLOAT_MAX; a
    switch or a name as it is ("auto" included)."""
    if isinstance(value, (bool, str)):
        return None
    if isinstance(value, int):
        return None if 0 < value <= MODEL_INT_MAX else f"must be between 1 and {MODEL_INT_MAX}"
    if isinstance(value, float):
        return (None if math.isfinite(value) and abs(value) <= MODEL_FLOAT_MAX
                else f"must be a finite number within ±{MODEL_FLOAT_MAX:g}")
    return "must be a number, a switch or a name"


def _trained_with(value: Any, report: Report) -> TrainedWith:
    """The recorded settings, through the config's own checks (``config.build_table``)."""
    if not isinstance(value, dict):
        report("config", f"must be a table, got {_shown(value)}")
        return TrainedWith(RunConfig(), DataConfig(), {})

    def at(where: str, message: str) -> None:
        report(f"config.{where}", message)

    for key in sorted(set(value) - {"run", "data", "model", "stage", "ensemble"}):
        at(key, "unknown key")
    data = value.get("data")
    if isinstance(data, dict):  # before [data] normalise and coordinates: one cloud, with z
        data = {"normalise": "sequence", "coordinates": "xyz", **data}
    model = value.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        at("model", "must be a table with a name")
        model = {}
    stage = value.get("stage")
    ensemble = value.get("ensemble")
    if ensemble is not None and not isinstance(ensemble, dict):
        at("ensemble", f"must be a table, got {_shown(ensemble)}")
        ensemble = None
    return TrainedWith(
        run=build_table(RunConfig, value.get("run"), "run", at),
        data=build_table(DataConfig, data, "data", at),
        model=model,
        stage=None if stage is None and ensemble is not None
        else build_table(StageConfig, stage, "stage", at),
        ensemble=ensemble)


def _shown(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table", type(None): "null"}.get(
        type(value), type(value).__name__)


# key -> int, float or str (a tuple: null allowed), "names"/"names?" (a list of strings,
# "?": or null) or "model" (a model record)
_TYPES: dict[str, Any] = {
    "schema_version": int, "stage_idx": int, "stage_name": str,
    "stage_description": (str,), "val_loss": float, "val_accuracy": float,
    "epoch": int, "training_time": float, "stage_time": (float,), "classes": "names",
    "joints": "names?", "model": "model", "parent": (str,), "run_id": (str,),
    "slt_version": str, "members": "names?", "created_at": str, "weights_sha256": str,
    "distilled": "distilled",
}
