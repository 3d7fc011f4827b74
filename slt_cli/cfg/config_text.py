"""A configuration written back as stages.toml text: what ``slt config show`` prints.

Every stage is written whole (inheritance resolved), so the text states the exact
settings a run would use, and reading it back gives the same configuration.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from slt_cli.cfg.config import BUILT_IN, Config

# [data] keys a run records (slt train --folds K sets them per fold), not for a user's
# file: shown only when set
RECORDED_KEYS = ("folds", "fold")


def shown_tables(config: Config) -> dict[str, Any]:
    """``config.to_dict()`` as ``slt config show`` prints it: without the recorded
    ``[data]`` keys while they are unset."""
    tables = config.to_dict()
    data = tables["data"]
    if not any(data.get(key) for key in RECORDED_KEYS):
        tables["data"] = {key: value for key, value in data.items() if key not in RECORDED_KEYS}
    return tables


def config_toml(config: Config) -> str:
    """``config`` as TOML: [run], [data], [model], each [[stages]], each preset, [tune]."""
    tables = shown_tables(config)
    where = ("the packaged defaults" if config.source == BUILT_IN
             else f"{config.source} over the packaged defaults")
    lines = [f"# the effective configuration: {where}"]
    for name in ("run", "data", "model"):
        lines += ["", f"[{name}]", *_keys(tables[name])]
    for stage in tables["stages"]:
        lines += ["", "[[stages]]", *_keys(stage), "[stages.augment]", *_keys(stage["augment"])]
    for name, preset in tables["continue"].items():
        lines += ["", f"[continue.{name}]", *_keys(preset),
                  f"[continue.{name}.augment]", *_keys(preset["augment"])]
    tune = tables["tune"]
    lines += ["", "[tune]", *_keys(tune), "", "[tune.space]", *_space(tune["space"])]
    for name, space in tune["stages"].items():
        lines += ["", f"[tune.stages.{name}]", *_space(space)]
    return "\n".join(lines) + "\n"


def _space(space: Mapping[str, Any]) -> list[str]:
    """A [tune] search space: ``"key" = { low = …, high = … }`` (or false) per setting."""
    return [f"{json.dumps(key)} = " + (_value(False) if spec is False else
            "{ " + ", ".join(f"{name} = {_value(value)}" for name, value in spec.items())
            + " }") for key, spec in space.items()]


def _keys(table: Mapping[str, Any]) -> list[str]:
    return [f"{key} = {_value(value)}" for key, value in table.items()
            if not isinstance(value, Mapping)]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")
