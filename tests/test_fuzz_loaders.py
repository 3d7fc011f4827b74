"""Property tests (Hypothesis) for the loaders: whatever a file holds, slt ends with
exit 0, or exit 2 and one ``error:`` line; never a traceback, never exit 1 "This is a
bug". Deterministic (``derandomize=True``) and bounded, so the suite stays fast.

Each loader is one ``Fuzzed`` entry: a strategy for what goes into a file, a function
that writes it into a folder, and the command that reads it. A new kind of input (a
sidecar, a run plan) is one more entry in ``FUZZED``.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from typer.testing import CliRunner

from slt_cli.cli import app
from tests.conftest import TINY_TOML

# 30 examples per loader keep the suite fast; SLT_FUZZ_EXAMPLES=1000 searches harder.
FUZZ = settings(derandomize=True, max_examples=int(os.environ.get("SLT_FUZZ_EXAMPLES", "30")),
                deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_exit_0_or_one_error(result: Any) -> None:
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output and "This is a bug" not in result.output
    if result.exit_code == 2:  # notes may come first; then one error line
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and result.stderr.count("error:") == 1, result.stderr


def small_npz(path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(8, 6, 3, 2)).astype(np.float32), y=np.arange(8) % 2)


# --- TOML values for every config key ----------------------------------------------------

KEYS: list[tuple[Any, ...]] = [
    ("run", "seed"), ("run", "improvement_threshold"), ("run", "batch_size"),
    ("run", "min_batches_per_epoch"), ("run", "monitor"), ("run", "precision"),
    ("run", "multi_gpu"), ("run", "unknown"), ("data", "frames"), ("data", "val_fraction"),
    ("data", "folds"), ("data", "fold"), ("data", "landmarks"), ("data", "normalise"),
    ("model", "dim"), ("model", "depth"), ("model", "heads"), ("model", "expand"),
    ("model", "name"), ("stages", 0, "epochs"), ("stages", 0, "lr"), ("stages", 0, "name"),
    ("stages", 0, "grad_clip"), ("stages", 0, "dropout"), ("stages", 0, "ema_decay"),
    ("stages", 0, "averaging"), ("stages", 0, "patience"), ("stages", 1, "augment", "shift"),
    ("stages", 1, "augment", "rotate"), ("stages", 1, "augment", "mirror"),
    ("stages", 1, "augment"), ("continue", "fine_tune", "lr"), ("continue", "extra"),
]
SCALARS = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=12),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(st.text("abcz_", min_size=1, max_size=4), SCALARS,
                                   max_size=2))


def toml_value(value: Any) -> str:
    """``value`` as inline TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)  # inf, -inf, 1e+30: TOML too
    if isinstance(value, str):
        return json.dumps(value)  # ASCII with \\u escapes: a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def toml_text(config: dict[str, Any]) -> str:
    """A stages.toml-shaped mapping as TOML (tables of inline values)."""
    lines = []
    for table in ("run", "data", "model"):
        lines += [f"[{table}]"] + [f"{k} = {toml_value(v)}" for k, v in config[table].items()]
    for stage in config["stages"]:
        lines += ["[[stages]]"] + [f"{k} = {toml_value(v)}" for k, v in stage.items()]
    lines += ["[continue]"] + [f"{k} = {toml_value(v)}" for k, v in config["continue"].items()]
    return "\n".join(lines) + "\n"


def write_config(folder: Path, change: tuple[tuple[Any, ...], Any]) -> list[str]:
    where, value = change
    config = tomllib.loads(TINY_TOML)
    table = config
    for step in where[:-1]:
        table = table[step]
    table[where[-1]] = value
    (folder / "fuzz.toml").write_text(toml_text(config), encoding="utf-8")
    small_npz(folder / "ok.npz")
    return ["data", "inspect", str(folder / "ok.npz"), "--config", str(folder / "fuzz.toml")]


# --- npz headers and arrays --------------------------------------------------------------

DTYPES = ["<f4", "<f8", ">f4", "<f2", "<i8", "<i4", "|u1", "|b1", "<c8", "<U3", "|S2", "|O"]


@st.composite
def lying_headers(draw: Callable[..., Any]) -> dict[str, bytes]:
    """Members whose .npy header declares any shape and dtype, over a short payload."""
    members = {}
    for name in draw(st.lists(st.sampled_from(["x", "y", "lengths", "classes"]), min_size=1,
                              max_size=3, unique=True)):
        header = {"descr": draw(st.sampled_from(DTYPES)), "fortran_order": draw(st.booleans()),
                  "shape": tuple(draw(st.lists(st.integers(0, 10**12), max_size=4)))}
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, header)
        members[f"{name}.npy"] = buffer.getvalue() + draw(st.binary(max_size=64))
    return members


@st.composite
def real_arrays(draw: Callable[..., Any]) -> dict[str, np.ndarray]:
    """Real arrays, mostly of the right shapes (so the checks past the first run) and
    of any dtype, values finite or not, labels of any size."""
    n, t, j = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    shape = draw(st.just((n, t, j, draw(st.sampled_from([2, 3]))))
                 | hnp.array_shapes(min_dims=1, max_dims=5, max_side=4))
    x = draw(hnp.arrays(st.sampled_from([np.float32, np.float64]), shape,
                        elements=st.floats(allow_nan=True, allow_infinity=True, width=32)
                        | st.just(1e30))
             | hnp.arrays(np.int16, shape))
    arrays = {"x": x, "y": draw(hnp.arrays(np.int64, (n,), elements=st.integers(-1, 10**12))
                                | hnp.arrays(np.int64, (n,), elements=st.integers(0, 3)))}
    for name in draw(st.lists(st.sampled_from(["y", "lengths", "classes", "split", "signer",
                                               "joints"]), unique=True, max_size=3)):
        arrays[name] = draw(hnp.arrays(
            st.sampled_from([np.int64, np.float32, np.dtype("U5"), np.dtype("S3"), np.bool_]),
            st.just((n,)) | st.just((j,)) | hnp.array_shapes(min_dims=0, max_dims=2,
                                                              max_side=5)))
    return arrays


def write_members(folder: Path, members: dict[str, bytes]) -> list[str]:
    with zipfile.ZipFile(folder / "fuzz.npz", "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    return ["data", "inspect", str(folder / "fuzz.npz")]


def write_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> list[str]:
    np.savez(folder / "fuzz.npz", **arrays)
    return ["data", "inspect", str(folder / "fuzz.npz")]


# --- sidecars: one key of a real checkpoint's sidecar edited ------------------------------

SIDECAR_KEYS = [
    ("val_loss",), ("val_accuracy",), ("epoch",), ("stage_idx",), ("classes",), ("joints",),
    ("parent",), ("schema_version",), ("weights_sha256",), ("run_id",), ("config",),
    ("model",), ("model", "name"), ("model", "in_features"), ("model", "num_classes"),
    ("model", "num_frames"), ("model", "settings"), ("model", "settings", "dim"),
    ("model", "settings", "depth"), ("model", "settings", "expand"),
    ("config", "run"), ("config", "run", "seed"), ("config", "data"),
    ("config", "data", "frames"), ("config", "data", "source"), ("config", "data", "landmarks"),
    ("config", "data", "normalise"), ("config", "data", "folds"), ("config", "stage", "lr"),
    ("config", "stage", "augment", "rotate"), ("config", "model"), ("extra",),
]
SIDECAR_VALUES = VALUES | st.integers(min_value=-10, max_value=10**12) | st.none()


def write_sidecar(folder: Path, change: tuple[tuple[str, ...], Any]) -> list[str]:
    """A copy of the tiny checkpoint whose sidecar has one value replaced, then scored:
    ``slt evaluate`` reads the sidecar, rebuilds the network and data it describes."""
    import shutil

    where, value = change
    copy = Path(shutil.copytree(TEMPLATE[0], folder / "ck"))
    path = copy / "best_model_stage_1.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    table = record
    for step in where[:-1]:
        table = table.setdefault(step, {}) if isinstance(table.get(step), dict) else {}
    table[where[-1]] = value
    path.write_text(json.dumps(record), encoding="utf-8")
    return ["evaluate", "best_model_stage_1", "--checkpoint-dir", str(copy)]


TEMPLATE: list[Path] = []  # the tiny checkpoint folder, set by the test that uses it


@dataclass(frozen=True)
class Fuzzed:
    """One loader under fuzzing: what to generate, and how to write and read it."""

    strategy: Any
    write: Callable[[Path, Any], list[str]]  # writes the example, returns slt's arguments


FUZZED = {
    "config value": Fuzzed(st.tuples(st.sampled_from(KEYS), VALUES), write_config),
    "npz header": Fuzzed(lying_headers(), write_members),
    "npz arrays": Fuzzed(real_arrays(), write_arrays),
    "sidecar": Fuzzed(st.tuples(st.sampled_from(SIDECAR_KEYS), SIDECAR_VALUES), write_sidecar),
}


@pytest.mark.parametrize("kind", FUZZED)
def test_a_loader_never_crashes(kind: str, tiny_checkpoint: Path) -> None:
    fuzzed = FUZZED[kind]
    TEMPLATE[:] = [tiny_checkpoint]

    @FUZZ
    @given(fuzzed.strategy)
    def check(example: Any) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            arguments = fuzzed.write(Path(scratch), example)
            assert_exit_0_or_one_error(CliRunner().invoke(app, arguments))

    check()
