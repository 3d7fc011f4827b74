"""``[data] coordinates``: the default ``"xy"`` drops z before anything else, in training,
evaluation and the raw path that predict and export take alike; ``"xyz"`` keeps it, and a
checkpoint written before the setting existed reads as ``"xyz"``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from slt_cli.data import load_data, load_source, prepare
from slt_cli.data.base import RawData
from slt_cli.store.checkpoints import read_sidecar
from slt_cli.use.inference import load_model
from tests.cli import slt
from tests.conftest import TINY_TOML
from tests.test_predict import HOLISTIC, holistic_npz

MODEL = "best_model_stage_1"


def raw_clips(z: float) -> RawData:
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.1, size=(12, 8, 4, 3)).astype(np.float32)
    x[..., 2] = z * rng.normal(size=(12, 8, 4))
    x[0, 3, 1] = np.nan
    return RawData(x=x, y=np.arange(12) % 2, classes=("a", "b"),
                   lengths=np.full(12, 8), split=None)


def test_xy_prepares_the_image_plane_alone_whatever_z_holds() -> None:
    options = {"frames": 8, "motion": True, "val_fraction": 0.25, "seed": 0, "source": "t",
               "normalise_mode": "sequence"}
    flat = prepare(raw_clips(0.0), **options, coordinates="xy")
    deep = prepare(raw_clips(5.0), **options, coordinates="xy")
    assert flat.split("train").x.shape[-1] == 2
    for name in ("train", "val"):
        np.testing.assert_array_equal(flat.split(name).x, deep.split(name).x)
    kept = prepare(raw_clips(5.0), **options, coordinates="xyz")
    assert kept.split("train").x.shape[-1] == 3
    # z took part in the scale before: the x and y of "xyz" are not those of "xy"
    assert not np.allclose(kept.split("train").x[..., :2], deep.split("train").x)
    two_d = RawData(x=raw_clips(0.0).x[..., :2], y=np.arange(12) % 2, classes=("a", "b"),
                    lengths=np.full(12, 8), split=None)
    np.testing.assert_array_equal(prepare(two_d, **options, coordinates="xyz").split("val").x,
                                  flat.split("val").x)  # 2-D data is the same either way


def test_a_default_run_reads_x_and_y_and_predicts_alike_on_any_z(tmp_path: Path) -> None:
    data = holistic_npz(tmp_path / "holistic.npz")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML.replace('coordinates = "xyz"', ""), encoding="utf-8")
    folder = tmp_path / "checkpoints"
    result = slt("train", "--config", str(config), "--data", str(data), "--stages", "1",
                 "--epochs-per-stage", "1", "--checkpoint-dir", str(folder))
    assert result.exit_code == 0, result.output
    sidecar = read_sidecar(folder, MODEL)
    assert sidecar.config.data.coordinates == "xy"
    assert sidecar.model["in_features"] == 56 * 2 * 2 + 56  # 56 kept landmarks, x and y
    with np.load(data) as arrays:
        x, y = arrays["x"], arrays["y"]
    moved = x.copy()
    undetected = (x == 0).all(axis=-1)  # written as zeros: missing, whatever the setting
    moved[..., 2] = np.where(undetected, 0.0, np.random.default_rng(2).normal(size=x.shape[:3]))
    flat = np.where(undetected[..., None], 0.0, x)[..., :2]  # a 2-D tracker's view
    for name, clips in (("as.npz", x), ("moved.npz", moved), ("flat.npz", flat)):
        np.savez(tmp_path / name, x=clips, y=y, classes=np.array(["a", "b", "c"]),
                 joints=np.array(HOLISTIC))
    scored = [json.loads(slt("predict", MODEL, str(tmp_path / name), "--json", "--top-k", "3",
                             "--checkpoint-dir", str(folder)).stdout)
              for name in ("as.npz", "moved.npz", "flat.npz")]
    for other in scored[1:]:
        assert scored[0] == [{**row, "input": scored[0][i]["input"]}
                             for i, row in enumerate(other)]
    model = load_model(folder, MODEL)  # the raw path reads 2-D input alike
    raw = load_source(str(data))  # the 56 landmarks the run kept
    lengths = torch.from_numpy(raw.lengths)
    with torch.no_grad():
        three = model.classifier(torch.from_numpy(raw.x), lengths)
        two = model.classifier(torch.from_numpy(np.ascontiguousarray(raw.x[..., :2])), lengths)
    torch.testing.assert_close(three, two)
    evaluated = slt("evaluate", MODEL, "--json", "--checkpoint-dir", str(folder))
    assert json.loads(evaluated.stdout)["accuracy"] == sidecar.val_accuracy
    prepared = load_data(str(data), frames=sidecar.config.data.frames, motion=True,
                         val_fraction=0.2, seed=0)
    assert prepared.split("val").x.shape[-1] == 2


def test_a_checkpoint_from_before_the_setting_kept_z(tiny_checkpoint: Path,
                                                     tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "checkpoints"))
    assert read_sidecar(folder, MODEL).config.data.coordinates == "xy"
    path = folder / f"{MODEL}.json"
    sidecar = json.loads(path.read_text(encoding="utf-8"))
    del sidecar["config"]["data"]["coordinates"]
    path.write_text(json.dumps(sidecar), encoding="utf-8")
    assert read_sidecar(folder, MODEL).config.data.coordinates == "xyz"


def test_coordinates_takes_xy_or_xyz(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(TINY_TOML.replace('coordinates = "xyz"', 'coordinates = "xz"'),
                      encoding="utf-8")
    result = slt("train", "--config", str(config))
    assert result.exit_code == 2
    assert "data.coordinates: must be one of xy, xyz" in result.stderr


def test_the_configs_choices_and_defaults_are_the_readers_own() -> None:
    # cfg.settings keeps its own copies so that checking a config imports no numpy
    from slt_cli.cfg.settings import COORDINATE_MODES, NORMALISE_MODES, DataConfig
    from slt_cli.data import DEFAULT_NORMALISE
    from slt_cli.data.preprocess import COORDINATES, DEFAULT_COORDINATES

    assert tuple(COORDINATES) == COORDINATE_MODES
    assert DataConfig().coordinates == DEFAULT_COORDINATES
    assert DataConfig().normalise == DEFAULT_NORMALISE
    raw = raw_clips(1.0)
    options = {"frames": 8, "motion": True, "val_fraction": 0.25, "seed": 0, "source": "t"}
    for mode in NORMALISE_MODES:
        assert prepare(raw, **options, normalise_mode=mode).split("train").x.shape[-1] == 2
