"""The settings of a run as frozen dataclasses: what a stages.toml holds, each default
beside its field with a one-line comment, each class able to say what is wrong with its
values (``problems()``). Loading and checking files is ``config.py``'s; every module
that needs the settings alone (and no file) can import them from here without it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BUILT_IN = "<built-in stages.toml>"  # the source name of the packaged defaults
CONTINUE_TYPES = ("fine_tune", "regularization", "exploration")
MONITORS = ("val_accuracy", "val_loss")
AVERAGING = ("none", "ema", "swa")
TEACHERS = ("none", "start", "earlier")  # [[stages]] teacher
PRECISIONS = ("auto", "bf16", "fp32")
DEVICE_CHOICES = ("auto", "cpu", "cuda")  # --device
# the keys of models.MODEL_BUILDERS
MODEL_NAMES = ("conv_transformer", "gru", "mlp", "resnet1d", "gcn")
JOINT_MODELS = ("gcn",)  # those built from the landmarks' names: models.takes_joints
ENSEMBLE_MODEL = "ensemble"  # the model record of `slt ensemble --method logits`: models.ensemble
NORMALISE_MODES = ("parts", "sequence", "sequence+hands")
SIGNER_RULES = ("csv", "top")  # [data] signer_from of mediapipe folders
PERSON_CHOICES = ("first", "best")  # [data] person of openpose folders
HAND_MODES = ("keep", "right")  # [data] dominant_hand
COORDINATE_MODES = ("xy", "xyz")  # [data] coordinates: data.preprocess.COORDINATES
TRACKERS = ("tensorboard", "mlflow")  # [run] log_to: "none", or these joined with +
MAX_STAGE_NAME = 64



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
    # > 0: validation differences within this many standard errors of the paired per-clip
    # difference are ties, which later epochs win (selection.py); 0 = the plain maximum
    selection_margin: float = 0.0
    # also log metrics.csv's numbers and the config to "tensorboard", "mlflow" or both
    # ("tensorboard+mlflow"): trackers.py; "none" = metrics.csv alone
    log_to: str = "none"

    def problems(self) -> list[tuple[str, str]]:
        found = _positive(self, "batch_size", "min_batches_per_epoch")
        if problem := _log_to_problem(self.log_to):
            found.append(("log_to", problem))
        if not 0.0 <= self.selection_margin <= 10.0:
            found.append(("selection_margin", "must be between 0 and 10 (standard errors)"))
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
    normalise: str = "sequence+hands"  # the cloud and each hand; sequence, parts (docs/data.md)
    coordinates: str = "xy"  # x and y of each landmark; "xyz": z too, where the data has it
    folds: int = 0  # K of K-fold cross-validation (slt train --folds K); 0 = val_fraction split
    fold: int = 0  # with folds: the fold (1..K) that validates, the others train
    layout: str = "auto"  # mediapipe: order of a frame's parts, e.g. pose+face+left_hand+right_hand
    signer_from: str = "csv"  # mediapipe: signers.csv (when there), or top (one per top folder)
    min_confidence: float = 0.0  # openpose: points of at most this confidence are missing
    person: str = "first"  # openpose: the first person of each frame, or the most confident (best)
    # "right": a clip whose left hand is seen in more frames than its right is mirrored,
    # so every clip signs with its right hand; "keep": clips as recorded
    dominant_hand: str = "keep"

    def problems(self) -> list[tuple[str, str]]:
        found = _reader_problems(self)
        if self.folds == 1 or self.folds < 0:
            found.append(("folds", "must be 0 (no cross-validation) or >= 2"))
        elif self.folds and not 1 <= self.fold <= self.folds:
            found.append(("fold", f"must be between 1 and folds ({self.folds})"))
        elif not self.folds and self.fold:
            found.append(("fold", "needs folds (K of K-fold cross-validation)"))
        found += [("landmarks", problem) for problem in _landmark_problems(self.landmarks)]
        if self.normalise not in NORMALISE_MODES:
            found.append(("normalise", f"must be one of {', '.join(NORMALISE_MODES)}"))
        if self.coordinates not in COORDINATE_MODES:
            found.append(("coordinates", f"must be one of {', '.join(COORDINATE_MODES)}"))
        if self.dominant_hand not in HAND_MODES:
            found.append(("dominant_hand", f"must be one of {', '.join(HAND_MODES)}"))
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
    hand_scale: float = 0.0  # max relative change of each hand's size about its wrist
    hand_rotate: float = 0.0  # max turn of each hand about its wrist, degrees (x-y plane)
    mixup: float = 0.0  # probability that a clip is blended with another (labels blended too)

    def problems(self) -> list[tuple[str, str]]:
        found = [(name, "must be >= 0") for name, value in _items(self) if value < 0]
        for name in ("scale", "hand_scale", "speed", "time_mask", "joint_drop"):
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
    # learn from soft targets too: "start" (the stage's starting weights: self-distillation)
    # or "earlier" (the mean probabilities of the earlier stages' best weights); "none"
    teacher: str = "none"
    teacher_alpha: float = 0.5  # share of the teacher's soft targets in the loss
    teacher_temperature: float = 2.0  # softens the teacher's and the stage's predictions
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # [stages.augment]

    def problems(self) -> list[tuple[str, str]]:
        found = _positive(self, "epochs", "lr")
        if not self.name.replace("_", "").isalnum() or not self.name.isascii():
            found.append(("name", "must be a non-empty identifier of letters, digits and _"))
        elif len(self.name) > MAX_STAGE_NAME:  # it goes into file names: stage_N_<name>
            found.append(("name", f"must be at most {MAX_STAGE_NAME} characters long"))
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
        if self.teacher not in TEACHERS:
            found.append(("teacher", f"must be one of {', '.join(TEACHERS)}"))
        if not 0.0 <= self.teacher_alpha <= 1.0:
            found.append(("teacher_alpha", "must be between 0 and 1"))
        if not 0.0 < self.teacher_temperature <= 100.0:
            found.append(("teacher_temperature", "must be > 0 and <= 100"))
        return found


@dataclass(frozen=True)
class ModelConfig:
    name: str = "conv_transformer"  # a key of slt_cli.models.MODEL_BUILDERS
    settings: Mapping[str, Any] = field(default_factory=dict)  # the builder's keyword args


PRUNERS = ("median", "hyperband", "none")  # [tune] pruner


@dataclass(frozen=True)
class ParamRange:
    """Where ``slt tune`` searches one stage setting: ``low``..``high`` (a log scale with
    ``log``, a grid with ``step``), or one of ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.choices:
            return {"choices": list(self.choices)}
        table: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            table["log"] = True
        if self.step is not None:
            table["step"] = self.step
        return table


@dataclass(frozen=True)
class TuneConfig:
    """The ``[tune]`` table: how ``slt tune`` searches (see ``tune/space.py``)."""

    trials: int = 20  # trials per stage (slt tune --trials)
    pruner: str = "median"  # stops hopeless trials early: median, hyperband or none
    startup_trials: int = 4  # trials that run to the end before the pruner judges others
    warmup_epochs: int = 2  # epochs of a trial before the pruner may stop it
    space: Mapping[str, ParamRange] = field(default_factory=dict)  # every stage's space
    stages: Mapping[str, Mapping[str, ParamRange | None]] = field(
        default_factory=dict)  # per stage name: keys added, replaced, or (None) dropped

    def to_dict(self) -> dict[str, Any]:
        return {"trials": self.trials, "pruner": self.pruner,
                "startup_trials": self.startup_trials, "warmup_epochs": self.warmup_epochs,
                "space": {key: value.to_dict() for key, value in self.space.items()},
                "stages": {name: {key: value.to_dict() if value else False
                                  for key, value in table.items()}
                           for name, table in self.stages.items()}}

    def space_of(self, stage_name: str) -> dict[str, ParamRange]:
        """The search space of one stage: ``space`` with the stage's own keys over it."""
        merged: dict[str, ParamRange | None] = {**self.space, **self.stages.get(stage_name, {})}
        return {key: value for key, value in merged.items() if value is not None}


@dataclass(frozen=True)
class Config:
    """One whole run, as a stages.toml describes it."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    stages: tuple[StageConfig, ...] = ()
    presets: Mapping[str, StageConfig] = field(default_factory=dict)  # [continue.<type>]
    tune: TuneConfig = field(default_factory=TuneConfig)  # [tune]: slt tune's search spaces
    source: str = field(default=BUILT_IN, compare=False)  # where it was read from, for messages

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain values, shaped like stages.toml, so
        ``build_config(config.to_dict(), ...)`` gives the same configuration back.
        ``[tune.stages]`` keeps only the stages the run has (a Config whose stages were
        replaced may still carry spaces for stages it lost)."""
        tune = self.tune.to_dict()
        names = {stage.name for stage in self.stages}
        tune["stages"] = {name: space for name, space in tune["stages"].items() if name in names}
        return {
            "run": dataclasses.asdict(self.run),
            "data": dataclasses.asdict(self.data),
            "model": {"name": self.model.name, **self.model.settings},
            "stages": [dataclasses.asdict(stage) for stage in self.stages],
            "continue": {key: dataclasses.asdict(preset) for key, preset in self.presets.items()},
            "tune": tune,
        }


def trackers_of(log_to: str) -> tuple[str, ...]:
    """The trackers a checked ``[run] log_to`` names, in its order ("none": none)."""
    return () if log_to == "none" else tuple(log_to.split("+"))


def _log_to_problem(log_to: str) -> str | None:
    names = trackers_of(log_to)
    if not all(name in TRACKERS for name in names):
        return (f"must be none, {', '.join(TRACKERS)} or {'+'.join(TRACKERS)} (both), "
                f"got {log_to!r}")
    if len(set(names)) < len(names):
        return f"names a tracker twice: {log_to!r}"
    return None


def _items(obj: Any) -> list[tuple[str, Any]]:
    return [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]


def _positive(obj: Any, *names: str) -> list[tuple[str, str]]:
    return [(name, "must be > 0") for name in names if not getattr(obj, name) > 0]


@functools.lru_cache(maxsize=64)
def _reader_problems(data: DataConfig) -> list[tuple[str, str]]:
    """What is wrong with the settings that say how mediapipe and openpose folders are read."""
    from slt_cli.data.mediapipe import layout_problem

    found = []
    if problem := layout_problem(data.layout):
        found.append(("layout", problem))
    if data.signer_from not in SIGNER_RULES:
        found.append(("signer_from", f"must be one of {', '.join(SIGNER_RULES)}"))
    if not 0.0 <= data.min_confidence < 1.0:
        found.append(("min_confidence", "must be >= 0 and below 1"))
    if data.person not in PERSON_CHOICES:
        found.append(("person", f"must be one of {', '.join(PERSON_CHOICES)}"))
    return found


def _landmark_problems(spec: str) -> tuple[str, ...]:
    """What is wrong with a ``[data] landmarks`` spec, once per spec: ``slt list`` checks
    the same spec in every sidecar."""
    from slt_cli.data.landmarks import problems

    return tuple(problems(spec))
