"""Config tables checked into dataclasses: every problem of a stages.toml (or of a
recorded config: a sidecar's, a run plan's) reported at its key, not the first alone.

``config.build_config`` assembles a whole ``Config`` from these pieces.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping
from typing import Any

from slt_cli.cfg.settings import CONTINUE_TYPES, MODEL_NAMES, ModelConfig, StageConfig
from slt_cli.common.ranges import setting_problems

Report = Callable[[str, str], None]


def build_table(cls: type, table: Any, where: str, report: Report) -> Any:
    """Make the config dataclass ``cls`` from a TOML or JSON table through the checks a
    stages.toml gets (unknown keys, types, ranges), reporting each problem at ``where``;
    a recorded config (a sidecar's, a run plan's) is checked this way too."""
    return _build(cls, table, where, report)


def _build(cls: type, table: Any, where: str, report: Report, **preset: Any) -> Any:
    """Make ``cls`` from a TOML table, reporting unknown keys, bad types and values."""
    if not isinstance(table, dict):
        report(where, f"must be a table, got {_type_name(table)}")
        return cls(**preset)
    hints = _type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown_keys(table, names, where, report)
    values = dict(preset)
    for name in names:
        if name not in table:
            continue
        value, expected = table[name], hints[name]
        if dataclasses.is_dataclass(expected):
            values[name] = _build(expected, value, f"{where}.{name}", report)
        elif _is_instance(value, expected):
            values[name] = float(value) if expected is float else value
        else:
            report(f"{where}.{name}", f"must be {_describe(expected)}, got {_type_name(value)}")
    built = cls(**values)
    for key, message in setting_problems(built):
        report(f"{where}.{key}", message)
    return built


def build_model(table: Any, report: Report) -> ModelConfig:
    if not isinstance(table, dict):
        report("model", f"must be a table, got {_type_name(table)}")
        return ModelConfig()
    settings = {key: value for key, value in table.items() if key != "name"}
    name = table.get("name", ModelConfig.name)
    if not isinstance(name, str):
        report("model.name", f"must be a string, got {_type_name(name)}")
        return ModelConfig()
    if name not in MODEL_NAMES:
        report("model.name", f"unknown model {name!r}; expected one of: "
                             f"{', '.join(sorted(MODEL_NAMES))}")
        return ModelConfig()
    if not settings:  # nothing to check against a builder: torch stays unimported
        return ModelConfig(name=name)
    from slt_cli.models import model_setting_problems  # imports torch

    for problem in model_setting_problems(name, settings):
        key, _, message = problem.partition(": ")
        report(key, message)
    return ModelConfig(name=name, settings=settings)


def build_stages(tables: Any, report: Report) -> tuple[StageConfig, ...]:
    """Each ``[[stages]]`` table starts from the stage before it (all but its name and
    description) and states what changes; a problem is reported where it was written."""
    if not isinstance(tables, list) or not tables:
        report("stages", "must be one or more [[stages]] tables")
        return ()
    stages: list[StageConfig] = []
    for index, table in enumerate(tables):
        where = f"stages[{index}]"
        if stages and isinstance(table, dict):
            inherited = {key: value for key, value in dataclasses.asdict(stages[-1]).items()
                         if key not in ("name", "description")}
            stages.append(_build(StageConfig, inherit(inherited, table), where,
                                 _where_written(table, where, report)))
        else:
            stages.append(_build(StageConfig, table, where, report))
    seen: set[str] = set()
    for index, stage in enumerate(stages):
        if stage.name in seen:
            report(f"stages[{index}].name", f"duplicate stage name {stage.name!r}")
        seen.add(stage.name)
    return tuple(stages)


def _where_written(table: Mapping[str, Any], where: str, report: Report) -> Report:
    """``report``, for the keys ``table`` states: an inherited value's problem was
    reported at the stage that wrote it."""

    def written(path: str, message: str) -> None:
        keys = path.removeprefix(f"{where}.").split(".")
        if keys[0] in ("name", "description"):  # never inherited
            report(path, message)
            return
        value: Any = table
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return
            value = value[key]
        report(path, message)

    return written


def build_presets(table: Any, report: Report) -> dict[str, StageConfig]:
    if not isinstance(table, dict):
        report("continue", f"must be a table, got {_type_name(table)}")
        return {}
    presets = {key: _build(StageConfig, value, f"continue.{key}", report, name=key)
               for key, value in table.items()}
    for required in CONTINUE_TYPES:
        if required not in presets:
            report(f"continue.{required}", "missing preset table")
    return presets


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # compiles each annotation: once per class is enough


def unknown_keys(table: Mapping[str, Any], known: Any, where: str, report: Report) -> None:
    for key in table:
        if key not in known:
            path = f"{where}.{key}" if where else key
            report(path, f"unknown key; expected one of: {', '.join(known)}")


def _is_instance(value: Any, expected: Any) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected in (str, bool):
        return isinstance(value, expected)
    return False


def _describe(expected: Any) -> str:
    return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(
        expected, str(expected)
    )


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)




def inherit(base: Any, table: Any) -> Any:
    """A stage table over ``base``: keys replaced, the augment table merged key by key."""
    if not isinstance(base, dict) or not isinstance(table, dict):
        return table
    merged = {**base, **table}
    if isinstance(base.get("augment"), dict) and isinstance(table.get("augment"), dict):
        merged["augment"] = {**base["augment"], **table["augment"]}
    return merged
