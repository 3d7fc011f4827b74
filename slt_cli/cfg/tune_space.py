"""The ``[tune]`` table of a stages.toml checked into a ``TuneConfig``: which stage
settings ``slt tune`` searches, over which ranges.

A search space maps a stage setting (``lr``, ``dropout``, ``augment.rotate``…) to
``{ low, high }`` (``log = true`` for a log scale, ``step`` for a grid) or to
``{ choices = [...] }``. ``[tune.space]`` is every stage's; ``[tune.stages.<name>]``
adds or replaces keys for one stage, and ``key = false`` drops one there. Each bound
and choice must be a value the stage itself accepts, so a trial can never be refused
for its settings. Problems are reported like the rest of the config:
``stages.toml: tune.space.dropout.high: must be >= 0 and < 1, got 1.5``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from slt_cli.cfg.config_checks import Report
from slt_cli.cfg.settings import PRUNERS, AugmentConfig, ParamRange, StageConfig, TuneConfig
from slt_cli.common.ranges import setting_problems

AUGMENT_PREFIX = "augment."
_NOT_TUNED = ("name", "description", "augment")
_RANGE_KEYS = ("low", "high", "log", "step", "choices")


@functools.cache
def tunable_keys() -> Mapping[str, type]:
    """Every stage setting a search space may name, with its type (int, float, str).
    Worked out once: every config read checks each bound against it."""
    stage_hints = typing.get_type_hints(StageConfig)
    augment_hints = typing.get_type_hints(AugmentConfig)
    keys = {f.name: stage_hints[f.name] for f in dataclasses.fields(StageConfig)
            if f.name not in _NOT_TUNED}
    keys.update({AUGMENT_PREFIX + f.name: augment_hints[f.name]
                 for f in dataclasses.fields(AugmentConfig)})
    return MappingProxyType(keys)


def with_params(stage: StageConfig, params: Mapping[str, Any]) -> StageConfig:
    """``stage`` with the settings ``params`` names (``augment.*`` into its augment)."""
    augment = {key.removeprefix(AUGMENT_PREFIX): value for key, value in params.items()
               if key.startswith(AUGMENT_PREFIX)}
    direct = {key: value for key, value in params.items() if not key.startswith(AUGMENT_PREFIX)}
    return dataclasses.replace(stage, **direct,
                               augment=dataclasses.replace(stage.augment, **augment))


def stage_values(stage: StageConfig, keys: Sequence[str]) -> dict[str, Any]:
    """The values ``stage`` has for ``keys`` (its untuned defaults)."""
    return {key: getattr(stage.augment, key.removeprefix(AUGMENT_PREFIX))
            if key.startswith(AUGMENT_PREFIX) else getattr(stage, key) for key in keys}


def build_tune(table: Any, stage_names: Sequence[str], report: Report) -> TuneConfig:
    """Check a ``[tune]`` table, reporting each problem as (``tune.…``, message)."""
    if not isinstance(table, dict):
        report("tune", "must be a table")
        return TuneConfig()
    known = ("trials", "pruner", "startup_trials", "warmup_epochs", "space", "stages")
    for key in table:
        if key not in known:
            report(f"tune.{key}", f"unknown key; expected one of: {', '.join(known)}")
    values: dict[str, Any] = {}
    for key, low in (("trials", 1), ("startup_trials", 0), ("warmup_epochs", 0)):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int):
                report(f"tune.{key}", "must be an integer")
            elif not low <= value <= 100_000:
                report(f"tune.{key}", f"must be between {low} and 100000, got {value}")
            else:
                values[key] = value
    if "pruner" in table:
        if table["pruner"] in PRUNERS:
            values["pruner"] = table["pruner"]
        else:
            report("tune.pruner", f"must be one of {', '.join(PRUNERS)}")
    values["space"] = _space(table.get("space", {}), "tune.space", report, allow_off=False)
    stages = table.get("stages", {})
    if not isinstance(stages, dict):
        report("tune.stages", "must be a table of stage names")
        stages = {}
    per_stage = {}
    for name, space in stages.items():
        if name not in stage_names:
            report(f"tune.stages.{name}", f"no stage {name!r}; the stages are: "
                                          f"{', '.join(stage_names)}")
            continue
        per_stage[name] = _space(space, f"tune.stages.{name}", report, allow_off=True)
    values["stages"] = per_stage
    return TuneConfig(**values)


def _space(table: Any, where: str, report: Report,
           allow_off: bool) -> dict[str, Any]:
    if not isinstance(table, dict):
        report(where, "must be a table of stage settings")
        return {}
    flat = dict(table)
    nested = flat.pop("augment", None)  # augment.rotate written unquoted: a nested table
    if isinstance(nested, dict) and not set(nested) & set(_RANGE_KEYS):
        flat.update({AUGMENT_PREFIX + key: value for key, value in nested.items()})
    elif nested is not None:
        flat["augment"] = nested
    keys = tunable_keys()
    space: dict[str, Any] = {}
    for key, spec in flat.items():
        at = f"{where}.{key}"
        if key not in keys:
            report(at, "not a stage setting slt tune can search (lr, dropout, "
                       "augment.rotate, ...)")
        elif spec is False and allow_off:
            space[key] = None
        else:
            built = _range(key, keys[key], spec, at, report)
            if built is not None:
                space[key] = built
    return space


def _range(key: str, kind: type, spec: Any, at: str, report: Report) -> ParamRange | None:
    if not isinstance(spec, dict):
        report(at, "must be { low = …, high = … } or { choices = [...] }"
                   + (" (or false to drop it for this stage)" if ".stages." in at else ""))
        return None
    unknown = [name for name in spec if name not in _RANGE_KEYS]
    for name in unknown:
        report(f"{at}.{name}", f"unknown key; expected one of: {', '.join(_RANGE_KEYS)}")
    if unknown:
        return None
    if "choices" in spec:
        return _choices(key, spec, at, report)
    if kind not in (int, float):
        report(at, "is not a number: give { choices = [...] }")
        return None
    if "low" not in spec or "high" not in spec:
        report(at, "needs low and high (or choices)")
        return None
    bad = False
    for name in ("low", "high", "step"):
        value = spec.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                kind is int and not isinstance(value, int)):
            report(f"{at}.{name}", "must be an integer" if kind is int else "must be a number")
            bad = True
        elif name != "step":
            problem = _setting_problem(key, value)
            if problem:
                report(f"{at}.{name}", problem)
                bad = True
    log = spec.get("log", False)
    if not isinstance(log, bool):
        report(f"{at}.log", "must be true or false")
        return None
    if bad:
        return None
    low, high, step = spec["low"], spec["high"], spec.get("step")
    if not low < high:
        report(at, f"low ({low}) must be below high ({high})")
    elif log and low <= 0:
        report(f"{at}.low", "must be > 0 on a log scale")
    elif log and step is not None:
        report(at, "log and step cannot go together")
    elif step is not None and not 0 < step <= high - low:
        report(f"{at}.step", f"must be > 0 and at most high - low ({high - low})")
    else:
        return ParamRange(low=low, high=high, log=log, step=step)
    return None


def _choices(key: str, spec: Mapping[str, Any], at: str, report: Report) -> ParamRange | None:
    choices = spec["choices"]
    if len(spec) > 1:
        report(at, "choices goes alone (no low, high, log or step)")
        return None
    if not isinstance(choices, list) or not choices:
        report(f"{at}.choices", "must be a non-empty array")
        return None
    good = True
    for index, value in enumerate(choices):
        problem = _setting_problem(key, value)
        if problem:
            report(f"{at}.choices[{index}]", problem)
            good = False
    return ParamRange(choices=tuple(choices)) if good else None


def _setting_problem(key: str, value: Any) -> str | None:
    """What a stage would say of ``key = value`` (None: it accepts it)."""
    kind = tunable_keys()[key]
    ok_type = (isinstance(value, (int, float)) and not isinstance(value, bool)
               if kind is float else isinstance(value, kind)
               and not (kind is int and isinstance(value, bool)))
    if not ok_type:
        return f"must be {'a number' if kind is float else kind.__name__}, got {value!r}"
    name = key.removeprefix(AUGMENT_PREFIX)
    target: Any = AugmentConfig() if key.startswith(AUGMENT_PREFIX) else StageConfig(name="x")
    try:
        checked = dataclasses.replace(target, **{name: float(value) if kind is float else value})
    except (TypeError, ValueError) as exc:
        return str(exc)
    for problem_key, message in setting_problems(checked):
        if problem_key == name:
            return f"{message}" if "got" in message else f"{message}, got {value}"
    return None
