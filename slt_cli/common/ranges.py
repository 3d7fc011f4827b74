"""The range of every numeric setting, checked wherever settings come from: a
stages.toml, a flag that overrides it, a sidecar's or a run plan's stored settings.

Each dataclass's own ``problems()`` says what makes sense together (``fold <= folds``);
this module adds what every number needs: to be finite, and to lie in a range that a
real run can use, so a typo such as ``batch_size = 1000000000`` or ``lr = inf`` is
named at load instead of crashing (or hanging) mid-run.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# (table, key) -> (lowest, highest) accepted, both inclusive. Lower bounds that a
# dataclass's problems() states with its own words (> 0, < 1) are not repeated here.
SEED_MAX = 2**32 - 1  # numpy's SeedSequence and torch.manual_seed both take this range
LIMITS: dict[tuple[str, str], tuple[float, float]] = {
    ("RunConfig", "seed"): (0, SEED_MAX),
    ("RunConfig", "improvement_threshold"): (-1e6, 1e6),
    ("RunConfig", "batch_size"): (-math.inf, 65_536),
    ("RunConfig", "min_batches_per_epoch"): (-math.inf, 1_000_000),
    ("DataConfig", "frames"): (-math.inf, 10_000),
    ("DataConfig", "folds"): (-math.inf, 100),
    ("StageConfig", "epochs"): (-math.inf, 100_000),
    ("StageConfig", "lr"): (-math.inf, 10.0),
    ("StageConfig", "weight_decay"): (-math.inf, 10_000.0),
    ("StageConfig", "grad_clip"): (-math.inf, 1e6),
    ("StageConfig", "patience"): (-math.inf, 100_000),
    ("AugmentConfig", "rotate"): (-math.inf, 180.0),
    ("AugmentConfig", "shear"): (-math.inf, 10.0),
    ("AugmentConfig", "shift"): (-math.inf, 100.0),
    ("AugmentConfig", "jitter"): (-math.inf, 100.0),
}
# Every integer setting of a model builder (dim, depth, heads, hidden, ...) and every
# number (expand): sizes and counts, so one bound each keeps a network buildable.
MODEL_INT_MAX = 4_096
MODEL_FLOAT_MAX = 64.0


def setting_problems(settings: Any) -> list[tuple[str, str]]:
    """Every problem of a settings dataclass as (key, message): numbers that are not
    finite or out of range first, then the dataclass's own ``problems()`` for the
    other keys (so one key gets one message)."""
    found = []
    table = type(settings).__name__
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            found.append((item.name, f"must be a finite number, got {value}"))
            continue
        low, high = LIMITS.get((table, item.name), (-math.inf, math.inf))
        if not low <= value <= high:
            found.append((item.name, f"must be {_range(low, high)}, got {value}"))
    named = {key for key, _ in found}
    return found + [(key, message) for key, message in settings.problems() if key not in named]


def _range(low: float, high: float) -> str:
    if low == -math.inf:
        return f"<= {_show(high)}"
    return f"between {_show(low)} and {_show(high)}"


def _show(bound: float) -> str:
    """A bound as people write it: 4294967295 and 65536, but 1e+06 for a float."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"
