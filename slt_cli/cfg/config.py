"""Run configuration: a stages.toml found, read, laid over the packaged defaults, and
checked into the frozen dataclasses of ``settings.py`` (re-exported from here).

Loading gathers every problem in the file before it raises, so a user fixes them all
in one go: ``stages.toml: stages[2].lr: must be > 0``. Stored settings (a sidecar's, a
run plan's) go through the same checks (``build_table``, ``settings_from_dict``).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from slt_cli.cfg.config_checks import (
    build_model,
    build_presets,
    build_stages,
    build_table,
    inherit,
    unknown_keys,
)
from slt_cli.cfg.settings import (  # the dataclasses and names, re-exported from here
    BUILT_IN,
    CONTINUE_TYPES,
    DEVICE_CHOICES,
    ENSEMBLE_MODEL,
    JOINT_MODELS,
    MODEL_NAMES,
    AugmentConfig,
    Config,
    DataConfig,
    ModelConfig,
    RunConfig,
    StageConfig,
)
from slt_cli.cfg.tune_space import build_tune
from slt_cli.common.files import read_text
from slt_cli.common.ranges import setting_problems
from slt_cli.errors import ConfigError, SltError, UnreadableFile

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


def configured_checkpoint_dir(path: Path | None = None,
                              warn: Callable[[str], None] | None = None) -> Path:
    """The checkpoint folder the config in use names, read without checking the rest.

    For commands that only read checkpoints (``list``, ``analyze``): a broken
    stages.toml must not stop them, so any problem falls back to the default, and
    ``warn`` is told which file was passed over and why.
    """
    found = find_config(path)
    try:
        raw = _parse_toml(read_text(found, "toml"), str(found)) if found else {}
    except SltError as exc:
        problem = exc.message
    else:
        run = raw.get("run", {})
        folder = run.get("checkpoint_dir", RunConfig.checkpoint_dir) if isinstance(
            run, dict) else None
        if isinstance(folder, str):
            return Path(folder)
        problem = (f"{found}: [run] checkpoint_dir is not a string" if isinstance(run, dict)
                   else f"{found}: [run] is not a table")
    if warn:
        warn(f"{problem}; using the default checkpoint folder, {RunConfig.checkpoint_dir}")
    return Path(RunConfig.checkpoint_dir)


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


# A key of more parts than this (``a.b.c...``, in a header, before ``=`` or in an
# inline table) is refused
# before parsing: the TOML parser's time and memory grow with the square of a dotted
# key's parts (60,000 of them took 8 GB). slt's deepest key has 3 (stages.augment.rotate).
MAX_KEY_PARTS = 64
_KEY_PART = r"""(?:[\w\-]+|"[^"\n]*"|'[^'\n]*')[ \t]*\.[ \t]*"""  # bare or quoted
# at a line's start, in a header, or in an inline table ({a.b = 1, c.d = 2})
_LONG_KEY = re.compile(rf"(?:^|[{{,])[ \t\[]*(?:{_KEY_PART}){{{MAX_KEY_PARTS}}}", re.M)


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    found = _LONG_KEY.search(text)
    if found:
        line = text.count("\n", 0, found.start()) + 1
        raise ConfigError(f"{source}: not valid TOML: line {line} has a key of more than "
                          f"{MAX_KEY_PARTS} dotted parts")
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
            merged[key] = {**base, **{name: inherit(base.get(name, {}), table)
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


def build_config(raw: Mapping[str, Any], source: str) -> Config:
    """Check a stages.toml-shaped mapping and make a Config of it (see ``parse_config``)."""
    problems: list[str] = []

    def report(where: str, message: str) -> None:
        problems.append(f"{source}: {where}: {message}")

    unknown_keys(raw, ("run", "data", "model", "stages", "continue", "tune"), "", report)
    run = build_table(RunConfig, raw.get("run", {}), "run", report)
    data = build_table(DataConfig, raw.get("data", {}), "data", report)
    model = build_model(raw.get("model", {}), report)
    stages = build_stages(raw.get("stages", []), report)
    presets = build_presets(raw.get("continue", {}), report)
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
    run_compile, run_log_to, data_source, stage_epochs (applied to every stage).
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


__all__ = [
    "BUILT_IN", "CONFIG_FILE_NAME", "CONTINUE_TYPES", "DEVICE_CHOICES", "ENSEMBLE_MODEL",
    "JOINT_MODELS", "MODEL_NAMES", "AugmentConfig", "Config", "DataConfig", "ModelConfig",
    "RunConfig", "StageConfig", "build_config", "build_table", "configured_checkpoint_dir",
    "continue_preset", "default_config_text", "find_config", "load_config", "parse_config",
    "parse_stage_selection", "quick_test_config", "settings_from_dict", "with_overrides",
]
