"""Run configuration: a stages.toml found, read, laid over the packaged defaults, and
checked into the frozen dataclasses of ``settings.py`` (re-exported from here).

Loading gathers every problem in the file before it raises, so a user fixes them all
in one go: ``stages.toml: stages[2].lr: must be > 0``. Stored settings (a sidecar's, a
run plan's) go through the same checks (``build_table``, ``settings_from_dict``).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from slt_cli.errors import ConfigError, SltError, UnreadableFile
from slt_cli.files import read_text
from slt_cli.ranges import setting_problems
from slt_cli.settings import (  # the dataclasses and names, re-exported from here
    BUILT_IN,
    CONTINUE_TYPES,
    DEVICE_CHOICES,
    ENSEMBLE_MODEL,
    MODEL_NAMES,
    AugmentConfig,
    Config,
    DataConfig,
    ModelConfig,
    RunConfig,
    StageConfig,
)
from slt_cli.tune_space import build_tune

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

T = TypeVar("T")
CONFIG_FILE_NAME = "stages.toml"


def default_config_text() -> str:
    """The stages.toml that ships inside the package."""
    return resources.files("slt_cli").joinpath(CONFIG_FILE_NAME).read_text(encoding="utf-8")


def find_config(path: Path | None) -> Path | None:
    """The file to read: ``--config PATH``, else ./stages.toml, else None (built-in).

    A ./stages.toml that is there but is no regular file (a FIFO, a link to a device)
    is still the one named, so that reading it says what is wrong with it.
    """
    if path is not None:
        return path
    local = Path.cwd() / CONFIG_FILE_NAME
    return local if local.exists() or local.is_symlink() else None


def configured_checkpoint_dir(path: Path | None = None) -> Path:
    """The checkpoint folder the config in use names, read without checking the rest.

    For commands that only read checkpoints (``list``, ``analyze``): a broken
    stages.toml must not stop them, so any problem falls back to the default.
    """
    found = find_config(path)
    try:
        raw = _parse_toml(read_text(found, "toml"), str(found)) if found else {}
        folder = raw.get("run", {}).get("checkpoint_dir", RunConfig.checkpoint_dir)
    except (SltError, AttributeError):
        folder = RunConfig.checkpoint_dir
    return Path(folder if isinstance(folder, str) else RunConfig.checkpoint_dir)


def load_config(path: Path | None = None) -> Config:
    """Read and check a stages.toml (the built-in one when ``path`` is None).

    A user's file states only what differs from the packaged defaults: tables and keys
    it leaves out are the packaged ones (see ``over_packaged``).

    Raises:
        ConfigError: listing every problem found, each with file, table and key.
    """
    if path is None:
        return parse_config(default_config_text(), BUILT_IN)
    try:
        text = read_text(path, "toml")
    except UnreadableFile as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.reason})") from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str) -> Config:
    """Parse TOML text into a Config over the packaged defaults, gathering every
    problem before raising."""
    raw = _parse_toml(text, source)
    if source != BUILT_IN:
        raw = over_packaged(raw)
    return build_config(raw, source)


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid TOML: nested too deeply") from None


def over_packaged(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A user's stages.toml laid over the packaged one: ``[run]`` and ``[data]`` key by
    key, ``[model]`` key by key when it names the same architecture, each
    ``[continue.<type>]`` over the packaged preset of that name (its augment table key
    by key); ``[[stages]]``, when given, replace the packaged stages."""
    packaged = tomllib.loads(default_config_text())
    merged = dict(packaged)
    for key, value in raw.items():
        base = packaged.get(key)
        if not isinstance(value, dict) or not isinstance(base, dict):
            merged[key] = value  # stages replace; anything else is checked as given
        elif key == "continue":
            merged[key] = {**base, **{name: _over(base.get(name, {}), table)
                                      for name, table in value.items()}}
        elif key != "model" or value.get("name", base.get("name")) == base.get("name"):
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    return _tune_for_stages(merged, packaged)


def _tune_for_stages(merged: dict[str, Any], packaged: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the packaged ``[tune.stages.<name>]`` spaces of stages a user's own
    ``[[stages]]`` do not have: they were written for the packaged stages."""
    tune, stages = merged.get("tune"), merged.get("stages")
    if (not isinstance(tune, dict) or not isinstance(stages, list)
            or tune.get("stages") is not packaged.get("tune", {}).get("stages")):
        return merged
    names = {stage.get("name") for stage in stages if isinstance(stage, dict)}
    kept = {name: space for name, space in tune["stages"].items() if name in names}
    return {**merged, "tune": {**tune, "stages": kept}}


def _over(base: Any, table: Any) -> Any:
    """A stage table over ``base``: keys replaced, the augment table merged key by key."""
    if not isinstance(base, dict) or not isinstance(table, dict):
        return table
    merged = {**base, **table}
    if isinstance(base.get("augment"), dict) and isinstance(table.get("augment"), dict):
        merged["augment"] = {**base["augment"], **table["augment"]}
    return merged


def build_config(raw: Mapping[str, Any], source: str) -> Config:
    """Check a stages.toml-shaped mapping and make a Config of it (see ``parse_config``)."""
    problems: list[str] = []

    def report(where: str, message: str) -> None:
        problems.append(f"{source}: {where}: {message}")

    _unknown_keys(raw, ("run", "data", "model", "stages", "continue", "tune"), "", report)
    run = _build(RunConfig, raw.get("run", {}), "run", report)
    data = _build(DataConfig, raw.get("data", {}), "data", report)
    model = _build_model(raw.get("model", {}), report)
    stages = _build_stages(raw.get("stages", []), report)
    presets = _build_presets(raw.get("continue", {}), report)
    tune = build_tune(raw.get("tune", {}), [stage.name for stage in stages], report)
    if problems:
        raise ConfigError(problems, hint="Fix the keys above, or omit --config for defaults.")
    return Config(run=run, data=data, model=model, stages=stages, presets=presets, tune=tune,
                  source=source)


def settings_from_dict(cls: type[T], table: Any, source: str, where: str) -> T:
    """One settings table stored as JSON (a run plan's data or stage) back as ``cls``
    (RunConfig, DataConfig, StageConfig): ``build_table``, raising what it reports.

    Raises:
        ConfigError: listing every problem, each as ``source: where.key: message``.
    """
    problems: list[str] = []
    built = build_table(cls, table, where, lambda at, message: problems.append(
        f"{source}: {at}: {message}"))
    if problems:
        raise ConfigError(problems, hint="The file was edited or damaged; restore it, or "
                                         "train again.")
    return built


def with_overrides(config: Config, **changes: Any) -> Config:
    """A copy with dotted-path changes, e.g. ``run.seed=3`` given as ``run_seed=3``.

    Supported keys: run_seed, run_checkpoint_dir, run_multi_gpu, run_precision,
    run_compile, data_source, stage_epochs (applied to every stage).
    """
    run, data, stages = config.run, config.data, config.stages
    for key, value in changes.items():
        if value is None:
            continue
        table, _, name = key.partition("_")
        if table == "run":
            run = dataclasses.replace(run, **{name: value})
        elif table == "data":
            data = dataclasses.replace(data, **{name: value})
        elif table == "stage":
            stages = tuple(dataclasses.replace(stage, **{name: value}) for stage in stages)
        else:
            raise KeyError(key)
    problems = [f"{flag}: {message}" for flag, message in
                setting_problems(run) + setting_problems(data)]
    for stage in stages:
        problems += [f"stages.{stage.name}.{key}: {message}"
                     for key, message in setting_problems(stage)]
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(config, run=run, data=data, stages=stages)


def continue_preset(config: Config, name: str) -> StageConfig:
    """The ``[continue.<name>]`` preset of ``config``.

    Raises:
        ConfigError: when the config has no such preset.
    """
    if name not in config.presets:
        raise ConfigError(f"no continue preset {name!r} in {config.source}",
                          hint=f"Known: {', '.join(config.presets)}.")
    return config.presets[name]


def parse_stage_selection(text: str, names: Sequence[str]) -> list[int]:
    """``all``, ``3``, ``2-4``, ``1,3,5``, stage names (``augmentation``,
    ``baseline-regularization``) or a mix, as sorted 1-based indices.

    Raises:
        ConfigError: for anything else, or a stage the config does not have.
    """
    count = len(names)
    if text.strip() == "all":
        return list(range(1, count + 1))

    def index(word: str) -> int:
        word = word.strip()
        if word.isdigit():
            if not 1 <= int(word) <= count:
                raise ConfigError(f"--stages {text!r}: no stage {word}; the config has 1..{count}")
            return int(word)
        if word in names:
            return names.index(word) + 1
        raise ConfigError(f"--stages {text!r}: no stage {word!r}",
                          hint=f"Use all, N, N-M, N,M or stage names: {', '.join(names)}.")

    chosen: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        low, high = index(first), index(last) if dash else index(first)
        if low > high:
            raise ConfigError(f"--stages {text!r}: {part.strip()!r} runs backwards")
        chosen.update(range(low, high + 1))
    return sorted(chosen)


def quick_test_config(epochs_per_stage: int = 1, config: Config | None = None) -> Config:
    """The default run (or ``config``) with every stage cut to ``epochs_per_stage``.

    This is the seed's one-epoch quick test: every stage runs, whatever the gain.
    """
    base = config if config is not None else load_config()
    quick = with_overrides(base, stage_epochs=epochs_per_stage)
    forced = dataclasses.replace(quick.run, improvement_threshold=-1.0)
    return dataclasses.replace(quick, run=forced)


# --- building dataclasses from TOML tables -------------------------------------------

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
    _unknown_keys(table, names, where, report)
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


def _build_model(table: Any, report: Report) -> ModelConfig:
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


def _build_stages(tables: Any, report: Report) -> tuple[StageConfig, ...]:
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
            stages.append(_build(StageConfig, _over(inherited, table), where,
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


def _build_presets(table: Any, report: Report) -> dict[str, StageConfig]:
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


def _unknown_keys(table: Mapping[str, Any], known: Any, where: str, report: Report) -> None:
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


__all__ = [
    "BUILT_IN", "CONFIG_FILE_NAME", "CONTINUE_TYPES", "DEVICE_CHOICES", "ENSEMBLE_MODEL",
    "MODEL_NAMES", "AugmentConfig", "Config", "DataConfig", "ModelConfig", "RunConfig",
    "StageConfig", "build_config", "build_table", "configured_checkpoint_dir",
    "continue_preset", "default_config_text", "find_config", "load_config", "parse_config",
    "parse_stage_selection", "quick_test_config", "settings_from_dict", "with_overrides",
]
