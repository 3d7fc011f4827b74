"""Shared fixtures: every test runs in its own empty folder, on the CPU, seeded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# A pytest-xdist worker inherits COLUMNS=80 from execnet, and slt's consoles read the
# width once, at import: without these, tables would be cut as a narrow terminal cuts
# them. A worker trains on one thread, as the two workers of a 2-core machine share it.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"  # read by torch at import, and by the subprocesses

TINY_TOML = """
[run]
seed = 0
batch_size = 32
min_batches_per_epoch = 1
multi_gpu = false

[data]
source = "synthetic:classes=4,signers=6,repeats=3,frames=16"
frames = 12
normalise = "sequence"  # the tiny runs' outcomes below were set with it and z; the
coordinates = "xyz"     # defaults' own paths are tested in test_predict and test_coordinates

[model]
name = "conv_transformer"
dim = 16
depth = 1
heads = 2

[[stages]]
name = "baseline"
description = "Plain training from scratch"
epochs = 2
lr = 3e-3

[[stages]]
name = "augmentation"
description = "Augmented"
epochs = 2
lr = 1e-3
[stages.augment]
rotate = 10.0
scale = 0.1
jitter = 0.01
mirror = 0.5

[continue.fine_tune]
epochs = 1
lr = 1e-4

[continue.regularization]
epochs = 1
lr = 3e-4
dropout = 0.3

[continue.exploration]
epochs = 1
lr = 1e-3
averaging = "none"  # the packaged preset's EMA would barely move in one tiny epoch
"""


@pytest.fixture(scope="session", autouse=True)
def _user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Corpus caches go to one temporary user cache folder for the session (before any
    session fixture converts a corpus), never to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("user-cache")
        patch.setenv("XDG_CACHE_HOME", str(folder))
        patch.delenv("SLT_CACHE_DIR", raising=False)
        yield folder


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the user's folders: cwd is a fresh tmp folder."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables unwrapped, so words can be asserted
    monkeypatch.delenv("SLT_DEBUG", raising=False)


@pytest.fixture
def tiny_toml(tmp_path: Path) -> Path:
    """A two-stage config that trains in about a second on a CPU."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder with ``best_model_stage_1``: TINY_TOML's first stage, one epoch,
    with per-part normalisation and the default coordinates (the harder path for predict
    and export: 4 classes, 53 landmarks x 3 raw, of which the network reads x and y, 12
    frames; 55 landmarks after the hand positions are added); shared, so tests must not
    change it."""
    from typer.testing import CliRunner

    from slt_cli.cli import app

    root = tmp_path_factory.mktemp("tiny_checkpoint")
    config = root / "tiny.toml"
    config.write_text(TINY_TOML.replace('normalise = "sequence"', 'normalise = "parts"')
                      .replace('coordinates = "xyz"', 'coordinates = "xy"'), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--stages", "1",
                                      "--epochs-per-stage", "1", "--checkpoint-dir",
                                      str(root / "checkpoints")])
    assert result.exit_code == 0, result.output
    return root / "checkpoints"


def validation_both_ways(sidecar: object) -> tuple[object, object, object, object]:
    """A checkpoint's validation clips two ways: raw (``x``, ``lengths``: what predict and
    export take) and as training prepared them (a ``TensorSplit`` on the CPU, and the
    prepared landmarks' names), rebuilt from the data settings and seed its sidecar
    records."""
    from slt_cli.data import load_data, load_source
    from slt_cli.data.preprocess import assign_splits
    from slt_cli.run.training import TensorSplit

    settings, seed = sidecar.config.data, sidecar.config.run.seed
    raw = load_source(settings.source)
    rows = assign_splits(raw, settings.val_fraction, seed) == "val"
    prepared = load_data(settings.source, frames=settings.frames, motion=settings.motion,
                         val_fraction=settings.val_fraction, seed=seed,
                         normalise_mode=settings.normalise, coordinates=settings.coordinates)
    return (raw.x[rows], raw.lengths[rows], TensorSplit.from_split(prepared.split("val"), "cpu"),
            prepared.joints)
