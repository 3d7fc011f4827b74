"""Run configuration: frozen dataclasses, loaded and checked from a stages.toml.

Every default lives beside its field with a one-line comment. Loading gathers every
problem in the file before it raises, so a user fixes them all in one go:
``stages.toml: stages[2].lr: must be > 0``.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from slt_cli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

CONFIG_FILE_NAME = "stages.toml"
CONTINUE_TYPES = ("fine_tune", "regularization", "exploration")
MONITORS = ("val_accuracy", "val_loss")
AVERAGING = ("none", "ema", "swa")
PRECISIONS = ("auto", "bf16", "fp32")
NORMALISE_MODES = ("parts", "sequence")


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0  # seeds data generation, splits, initialisation and shuffling
    improvement_threshold: float = 0.0  # min gain of `monitor` to go on; < 0 runs every stage
    monitor: str = "val_accuracy"  # val_accuracy (higher is better) or val_loss (lower)
    checkpoint_dir: str = "checkpoints"  # where checkpoints are written, relative to cwd
    multi_gpu: bool = True  # all visible GPUs through DataParallel, batch scaled by count
    batch_size: int = 64  # per device
    min_batches_per_epoch: int = 25  # a small training set is repeated to make this many
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on the CPU), bf16 or fp32
    compile: bool = False  # torch.compile the model: a slower start, then faster steps
    mirror_average: bool = False  # score a clip by the mean probabilities of it and its mirror

    def problems(self) -> list[tuple[str, str]]:
        found = _positive(self, "batch_size", "min_batches_per_epoch")
        if self.monitor not in MONITORS:
            found.append(("monitor", f"must be one of {', '.join(MONITORS)}"))
        if self.precision not in PRECISIONS:
            found.append(("precision", f"must be one of {', '.join(PRECISIONS)}"))
        return found


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"  # "synthetic[:k=v,...]" or a path to a .npz file
    val_fraction: float = 0.2  # share held out for validation when the source has no split
    frames: int = 0  # every sequence is resampled to this many frames; 0 = from the data
    motion: bool = True  # add frame-to-frame differences to the features
    landmarks: str = "hands+pose+lips"  # groups kept of MediaPipe-named data, '+'-joined
    normalise: str = "sequence"  # sequence (one cloud) or parts (body, each hand, face apart)
    folds: int = 0  # K of K-fold cross-validation (slt train --folds K); 0 = val_fraction split
    fold: int = 0  # with folds: the fold (1..K) that validates, the others train

    def problems(self) -> list[tuple[str, str]]:
        from slt_cli.data.landmarks import problems as landmark_problems

        found = []
        if self.folds == 1 or self.folds < 0:
            found.append(("folds", "must be 0 (no cross-validation) or >= 2"))
        elif self.folds and not 1 <= self.fold <= self.folds:
            found.append(("fold", f"must be between 1 and folds ({self.folds})"))
        elif not self.folds and self.fold:
            found.append(("fold", "needs folds (K of K-fold cross-validation)"))
        found += [("landmarks", problem) for problem in landmark_problems(self.landmarks)]
        if self.normalise not in NORMALISE_MODES:
            found.append(("normalise", f"must be one of {', '.join(NORMALISE_MODES)}"))
        if not 0.0 < self.val_fraction < 1.0:
            found.append(("val_fraction", "must be between 0 and 1"))
        if self.frames < 0:
            found.append(("frames", "must be >= 1, or 0 to take it from the data"))
        return found


@dataclass(frozen=True)
class AugmentConfig:
    rotate: float = 0.0  # max rotation in degrees (about the camera axis; all axes in 3-D)
    scale: float = 0.0  # max relative change of size, e.g. 0.1 = ±10%
    shear: float = 0.0  # max horizontal shear factor, e.g. 0.2 slants by up to ±11°
    shift: float = 0.0  # max translation, in normalised units
    jitter: float = 0.0  # std of Gaussian noise added to every landmark
    speed: float = 0.0  # max relative change of tempo, e.g. 0.2 = 0.8x..1.2x
    time_mask: float = 0.0  # max share of frames blanked out in one block
    joint_drop: float = 0.0  # probability that a landmark is dropped in a sequence
    mirror: float = 0.0  # probability of a left/right flip (hands swapped when known)
    mixup: float = 0.0  # probability that a clip is blended with another (labels blended too)

    def problems(self) -> list[tuple[str, str]]:
        found = [(name, "must be >= 0") for name, value in _items(self) if value < 0]
        for name in ("scale", "speed", "time_mask", "joint_drop"):
            if getattr(self, name) >= 1.0:
                found.append((name, "must be below 1"))
        for name in ("mirror", "mixup"):
            if getattr(self, name) > 1.0:
                found.append((name, "is a probability and must be <= 1"))
        return found

    @property
    def enabled(self) -> bool:
        return any(value > 0 for _, value in _items(self))


@dataclass(frozen=True)
class StageConfig:
    name: str = ""  # short identifier, used in checkpoint names (stage_N_<name>)
    description: str = ""  # one line shown in tables and saved in the sidecar
    epochs: int = 10  # passes over the training set
    lr: float = 1e-3  # peak learning rate of AdamW
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_fraction: float = 0.1  # share of the stage's steps spent warming up linearly
    min_lr_fraction: float = 0.05  # cosine schedule ends at lr * min_lr_fraction
    label_smoothing: float = 0.0  # passed to torch's cross_entropy
    dropout: float = 0.1  # set on every nn.Dropout of the model for this stage
    drop_path: float = -1.0  # rate residual branches are dropped per clip; -1 = `dropout`
    late_dropout: float = 0.0  # dropout (not drop path) off, then this rate; 0 = not late
    late_dropout_start: float = 0.5  # share of the stage's epochs before late dropout starts
    awp: float = 0.0  # adversarial weight perturbation, relative to each weight's norm; 0 = off
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    averaging: str = "none"  # weight averaging: none, ema or swa
    ema_decay: float = 0.99  # per-step decay of the exponential moving average
    patience: int = 0  # stop after this many epochs without a new best; 0 = run every epoch
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # [stages.augment]

    def problems(self) -> list[tuple[str, str]]:
        found = _positive(self, "epochs", "lr")
        if not self.name.replace("_", "").isalnum() or not self.name.isascii():
            found.append(("name", "must be a non-empty identifier of letters, digits and _"))
        for name in ("weight_decay", "grad_clip", "patience"):
            if getattr(self, name) < 0:
                found.append((name, "must be >= 0"))
        for name in ("warmup_fraction", "min_lr_fraction", "label_smoothing", "dropout",
                     "late_dropout", "late_dropout_start", "awp"):
            if not 0.0 <= getattr(self, name) < 1.0:
                found.append((name, "must be >= 0 and < 1"))
        if not (self.drop_path == -1.0 or 0.0 <= self.drop_path < 1.0):
            found.append(("drop_path", "must be >= 0 and < 1, or -1 (the stage's dropout)"))
        if self.averaging not in AVERAGING:
            found.append(("averaging", f"must be one of {', '.join(AVERAGING)}"))
        if not 0.0 < self.ema_decay < 1.0:
            found.append(("ema_decay", "must be between 0 and 1"))
        return found


@dataclass(frozen=True)
class ModelConfig:
    name: str = "conv_transformer"  # a key of slt_cli.models.MODEL_BUILDERS
    settings: Mapping[str, Any] = field(default_factory=dict)  # the builder's keyword args


@dataclass(frozen=True)
class Config:
    """One whole run, as a stages.toml describes it."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    stages: tuple[StageConfig, ...] = ()
    presets: Mapping[str, StageConfig] = field(default_factory=dict)  # [continue.<type>]
    source: str = "<built-in stages.toml>"  # where it was read from, for messages

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain values, shaped like stages.toml, so
        ``build_config(config.to_dict(), ...)`` gives the same configuration back."""
        return {
            "run": dataclasses.asdict(self.run),
            "data": dataclasses.asdict(self.data),
            "model": {"name": self.model.name, **self.model.settings},
            "stages": [dataclasses.asdict(stage) for stage in self.stages],
            "continue": {key: dataclasses.asdict(preset) for key, preset in self.presets.items()},
        }


def default_config_text() -> str:
    """The stages.toml that ships inside the package."""
    return resources.files("slt_cli").joinpath(CONFIG_FILE_NAME).read_text(encoding="utf-8")


def find_config(path: Path | None) -> Path | None:
    """The file to read: ``--config PATH``, else ./stages.toml, else None (built-in)."""
    if path is not None:
        return path
    local = Path.cwd() / CONFIG_FILE_NAME
    return local if local.is_file() else None


def configured_checkpoint_dir(path: Path | None = None) -> Path:
    """The checkpoint folder the config in use names, read without checking the rest.

    For commands that only read checkpoints (``list``, ``analyze``): a broken
    stages.toml must not stop them, so any problem falls back to the default.
    """
    found = find_config(path)
    try:
        raw = tomllib.loads(found.read_text(encoding="utf-8")) if found else {}
        folder = raw.get("run", {}).get("checkpoint_dir", RunConfig.checkpoint_dir)
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        folder = RunConfig.checkpoint_dir
    return Path(folder if isinstance(folder, str) else RunConfig.checkpoint_dir)


def load_config(path: Path | None = None) -> Config:
    """Read and check a stages.toml (the built-in one when ``path`` is None).

    Raises:
        ConfigError: listing every problem found, each with file, table and key.
    """
    if path is None:
        return parse_config(default_config_text(), "<built-in stages.toml>")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str) -> Config:
    """Parse TOML text into a Config, gathering every problem before raising."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return build_config(raw, source)


def build_config(raw: Mapping[str, Any], source: str) -> Config:
    """Check a stages.toml-shaped mapping and make a Config of it (see ``parse_config``)."""
    problems: list[str] = []

    def report(where: str, message: str) -> None:
        problems.append(f"{source}: {where}: {message}")

    _unknown_keys(raw, ("run", "data", "model", "stages", "continue"), "", report)
    run = _build(RunConfig, raw.get("run", {}), "run", report)
    data = _build(DataConfig, raw.get("data", {}), "data", report)
    model = _build_model(raw.get("model", {}), report)
    stages = _build_stages(raw.get("stages", []), report)
    presets = _build_presets(raw.get("continue", {}), report)
    if problems:
        raise ConfigError(problems, hint="Fix the keys above, or omit --config for defaults.")
    return Config(run=run, data=data, model=model, stages=stages, presets=presets, source=source)


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
    problems = [f"{key}: {message}" for key, message in run.problems() + data.problems()]
    for stage in stages:
        problems += [f"stages.{stage.name}.{key}: {message}" for key, message in stage.problems()]
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(config, run=run, data=data, stages=stages)


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


def _build(cls: type, table: Any, where: str, report: Report, **preset: Any) -> Any:
    """Make ``cls`` from a TOML table, reporting unknown keys, bad types and values."""
    if not isinstance(table, dict):
        report(where, f"must be a table, got {_type_name(table)}")
        return cls(**preset)
    hints = typing.get_type_hints(cls)
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
    for key, message in built.problems():
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
    from slt_cli.models import model_setting_problems  # imports torch; only when training

    for problem in model_setting_problems(name, settings):
        key, _, message = problem.partition(": ")
        report(key, message)
    return ModelConfig(name=name, settings=settings)


def _build_stages(tables: Any, report: Report) -> tuple[StageConfig, ...]:
    if not isinstance(tables, list) or not tables:
        report("stages", "must be one or more [[stages]] tables")
        return ()
    stages = tuple(_build(StageConfig, t, f"stages[{i}]", report) for i, t in enumerate(tables))
    seen: set[str] = set()
    for index, stage in enumerate(stages):
        if stage.name in seen:
            report(f"stages[{index}].name", f"duplicate stage name {stage.name!r}")
        seen.add(stage.name)
    return stages


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


def _items(obj: Any) -> list[tuple[str, Any]]:
    return [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]


def _positive(obj: Any, *names: str) -> list[tuple[str, str]]:
    return [(name, "must be > 0") for name in names if not getattr(obj, name) > 0]


__all__ = [
    "CONFIG_FILE_NAME", "CONTINUE_TYPES", "AugmentConfig", "Config", "DataConfig",
    "ModelConfig", "RunConfig", "StageConfig", "build_config", "find_config", "load_config",
    "parse_config", "parse_stage_selection", "quick_test_config", "with_overrides",
]
