"""Model registry: architectures by name, and checks of a ``[model]`` table.

Every model maps keypoint clips ``(B, T, F)`` (float32) to class logits ``(B, K)``.
A model is made by a builder function with keyword-only arguments (torchtune's
model builders): the data arguments ``in_features`` (F), ``num_classes`` (K),
``num_frames`` (T) and, for a builder that takes it, ``joints`` (the landmarks' names,
which a graph network reads its skeleton from) come from the data, and every other
argument is a user setting with a documented default. A setting's default is also its type
specification, which is how `model_setting_problems` checks a TOML table.

All dropout in these models is done by ``nn.Dropout`` modules created with
``p=0.0``; the engine sets their ``p`` per stage. No model uses BatchNorm.

May import: ``errors``, ``common``, ``data`` (the landmarks' names). The config checks a
``[model]`` table through ``model_setting_problems``, so this package knows no config.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence

from torch import nn

from slt_cli.common.ranges import MODEL_FLOAT_MAX, MODEL_INT_MAX
from slt_cli.errors import ConfigError
from slt_cli.models.conv_transformer import (
    build_conv_transformer,
    conv_transformer_setting_problems,
    data_sized,
)
from slt_cli.models.gcn import build_gcn, gcn_setting_problems
from slt_cli.models.gru import build_gru
from slt_cli.models.mlp import build_mlp
from slt_cli.models.resnet1d import build_resnet1d

MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "conv_transformer": build_conv_transformer,
    "gru": build_gru,
    "mlp": build_mlp,
    "resnet1d": build_resnet1d,
    "gcn": build_gcn,
}
DEFAULT_MODEL = "conv_transformer"

# Builder arguments that the data decides; a user may not set them.
_DATA_ARGUMENTS = ("in_features", "num_classes", "num_frames", "joints")

# Settings a user may leave at "auto", and what sizes them from the data (training
# sequences, classes); the checkpoint's record stores the sizes chosen.
AUTO = "auto"
_AUTO_SIZERS: dict[str, tuple[tuple[str, ...], Callable[[int, int], dict[str, int]]]] = {
    "conv_transformer": (("dim", "depth"), data_sized),
}

# Checks that relate two settings of one model; each gets every setting (defaults
# filled in) and runs only once each setting is valid on its own.
_COMBINED_CHECKS: dict[str, Callable[[dict[str, object]], list[str]]] = {
    "conv_transformer": conv_transformer_setting_problems,
    "gcn": gcn_setting_problems,
}


def build_model(
    name: str, *, in_features: int, num_classes: int, num_frames: int,
    joints: Sequence[str] | None = None, **settings: object
) -> nn.Module:
    """Build a registered model.

    Args:
        name: A key of `MODEL_BUILDERS`.
        in_features: Features per frame (F).
        num_classes: Number of classes (K).
        num_frames: Frames per clip (T).
        joints: The landmarks' names, for a model that `takes_joints` (required there).
        **settings: The model's user settings; missing ones take the builder's defaults.

    Returns:
        A freshly initialised model (seed ``torch`` first for a reproducible one),
        in training mode, on the CPU.

    Raises:
        ConfigError: The name is unknown or a setting is invalid; lists every problem.
    """
    problems = model_setting_problems(name, settings)
    if problems:
        raise ConfigError(problems)
    builder = MODEL_BUILDERS[name]
    if takes_joints(name):
        if joints is None:
            raise TypeError(f"model {name!r} needs the landmarks' names (joints)")
        settings = {**settings, "joints": tuple(joints)}
    return builder(
        in_features=in_features, num_classes=num_classes, num_frames=num_frames, **settings
    )


def takes_joints(name: str) -> bool:
    """Whether model ``name`` is built from the landmarks' names (a graph network)."""
    return "joints" in inspect.signature(MODEL_BUILDERS[name]).parameters


def model_setting_problems(name: str, settings: Mapping[str, object]) -> list[str]:
    """Check a model name and its settings against the builder's signature.

    Args:
        name: The model's name, as given in ``[model] name``.
        settings: The rest of the ``[model]`` table (TOML values: int, float, bool,
            str). A ``name`` key left in it is ignored.

    Returns:
        One message per problem, each starting with the setting's path, such as
        ``"model.dim: must be an integer between 1 and 4096, got -3"``; empty when all is well.
    """
    if name not in MODEL_BUILDERS:
        known = ", ".join(sorted(MODEL_BUILDERS))
        return [f"model.name: unknown model {name!r}; expected one of: {known}"]
    defaults = _setting_defaults(MODEL_BUILDERS[name])
    problems: list[str] = []
    for key, value in settings.items():
        if key == "name":
            continue
        if key in _DATA_ARGUMENTS:
            problems.append(f"model.{key}: set from the data, not a model setting")
        elif key not in defaults:
            accepted = ", ".join(defaults)
            problems.append(f"model.{key}: unknown setting; expected one of: {accepted}")
        elif value == AUTO and key in _AUTO_SIZERS.get(name, ((), None))[0]:
            continue
        else:
            problem = _value_problem(defaults[key], value)
            if problem:
                problems.append(f"model.{key}: {problem}, got {_show(value)}")
    if not problems and name in _COMBINED_CHECKS:
        resolved = {**defaults, **{k: v for k, v in settings.items() if k != "name"}}
        if AUTO not in resolved.values():  # sized ones are checked once sized
            problems.extend(_COMBINED_CHECKS[name](resolved))
    return problems


def resolved_settings(name: str, settings: Mapping[str, object], *, sequences: int = 0,
                      classes: int = 0) -> dict[str, object]:
    """Every setting of model ``name``, the builder's defaults filled in and ``"auto"``
    ones sized from ``sequences`` (training sequences) and ``classes``.

    A checkpoint stores this, so it rebuilds the same network even after a default
    changes in a later version.

    Raises:
        ConfigError: the sized settings do not fit the others (e.g. ``heads``).
    """
    defaults = _setting_defaults(MODEL_BUILDERS[name])
    resolved = {**defaults, **{key: value for key, value in settings.items() if key != "name"}}
    if AUTO in resolved.values():
        keys, sizer = _AUTO_SIZERS[name]
        sized = sizer(sequences, classes)
        resolved |= {key: sized[key] for key in keys if resolved[key] == AUTO}
        problems = _COMBINED_CHECKS[name](resolved) if name in _COMBINED_CHECKS else []
        if problems:
            raise ConfigError([f"{problem} (sized from the data)" for problem in problems])
    return resolved


def _setting_defaults(builder: Callable[..., nn.Module]) -> dict[str, object]:
    """A builder's user settings and their defaults, in signature order."""
    return {
        parameter.name: parameter.default
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.name not in _DATA_ARGUMENTS
    }


def _value_problem(default: object, value: object) -> str | None:
    """What is wrong with ``value`` for a setting whose default is ``default``, if anything.

    Every numeric setting of our models is a size, a count or a ratio, so all
    numbers must be positive.
    """
    # bool before int: in Python True is an int, in TOML it is not a number.
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MODEL_INT_MAX
        return None if ok else f"must be an integer between 1 and {MODEL_INT_MAX}"
    if isinstance(default, float):
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and 0 < value <= MODEL_FLOAT_MAX
        )
        return None if ok else f"must be a number > 0 and <= {MODEL_FLOAT_MAX:g}"
    if isinstance(default, str):
        return None if isinstance(value, str) else "must be a string"
    raise TypeError(f"builder default {default!r} is not an int, float, bool or str")


def _show(value: object) -> str:
    """A value the way the user wrote it in TOML (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
