"""Corpora through the command line: train, evaluate, ``slt data inspect`` and
``slt data convert``, and bad corpora (exit 2, the file named)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.main import get_command

from slt_cli.cli import app
from slt_cli.data import load_source
from slt_cli.data.cache import cache_root
from slt_cli.store.checkpoints import read_sidecar
from tests.cli import slt

pq = pytest.importorskip("pyarrow.parquet")

FIRST = "train_landmark_files/10000/0.parquet"


@pytest.fixture(scope="module")
def gislr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.corpora import write_gislr

    return write_gislr(tmp_path_factory.mktemp("corpora") / "asl", signers=4)


@pytest.fixture
def own_gislr(gislr: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(gislr, tmp_path / "asl",
                                ignore=shutil.ignore_patterns(".slt-cache")))


def test_train_and_evaluate_on_a_gislr_corpus(gislr: Path, tiny_toml: Path,
                                              tmp_path: Path) -> None:
    result = slt("train", "--config", str(tiny_toml), "--data", f"gislr:{gislr}", "--force",
                 "--epochs-per-stage", "1")
    assert result.exit_code == 0, result.output
    assert "18 train / 6 validation sequences" in result.stderr  # 1 of 4 participants held out
    sidecar = read_sidecar(Path("checkpoints"), "best_model_stage_2")
    assert sidecar.config.data.source == f"gislr:{gislr.resolve()}"
    assert sidecar.config.data.landmarks == "hands+pose+lips"
    # 96 landmarks (one-cloud normalisation, the default, adds no hand positions)
    assert len(sidecar.joints) == 96
    assert sidecar.model["in_features"] == 96 * 3 * 2 + 96
    # A second run finds the cache: no conversion line.
    again = slt("train", "--config", str(tiny_toml), "--data", f"gislr:{gislr}", "--force",
                "--stages", "1", "--epochs-per-stage", "1", "--checkpoint-dir", "second")
    assert again.exit_code == 0, again.output
    assert "converting" not in again.stderr and "preparing" not in again.stderr
    evaluation = slt("evaluate", "best_model_stage_2", "--json")
    assert evaluation.exit_code == 0, evaluation.output
    assert json.loads(evaluation.stdout)["count"] == 6


def test_train_on_a_pose_folder(tiny_toml: Path, tmp_path: Path) -> None:
    pytest.importorskip("pose_format")
    from tests.corpora import write_pose_folder

    folder = write_pose_folder(tmp_path / "clips", signers=3)
    result = slt("train", "--config", str(tiny_toml), "--data", f"pose:{folder}", "--stages",
                 "1", "--force")
    assert result.exit_code == 0, result.output
    assert "converting pose:" in result.stderr and "18 sequences" in result.stderr


def test_inspect_reports_counts_lengths_and_missing_landmarks(gislr: Path) -> None:
    result = slt("data", "inspect", f"gislr:{gislr}", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["sequences"], summary["classes"], summary["signers"]) == (24, 3, 4)
    assert summary["per_class"] == {"min": 8, "median": 8.0, "max": 8}
    assert 8 <= summary["lengths"]["min"] <= summary["lengths"]["max"] <= 20
    assert summary["missing"]["left_hand"] > 0.5 and summary["missing"]["pose"] == 0.0
    assert summary["landmarks"] == 96 and summary["cache"].startswith(str(cache_root(gislr)))
    table = slt("data", "inspect", f"gislr:{gislr}", "--landmarks", "hands")
    assert table.exit_code == 0, table.output
    for words in ("sequences per class", "frames per sequence", "missing right_hand",
                  "42 × 3-D"):
        assert words in table.stdout
    assert slt("data", "inspect", "synthetic:classes=4,signers=6,repeats=3").exit_code == 0


def test_convert_writes_an_npz_that_loads_back(gislr: Path) -> None:
    result = slt("data", "convert", f"gislr:{gislr}", "out.npz", "--landmarks", "hands+pose")
    assert result.exit_code == 0, result.output
    assert "wrote out.npz: 24 sequences" in result.stderr
    raw = load_source("out.npz")
    assert raw.x.shape[0] == 24 and raw.x.shape[2:] == (56, 3)
    assert raw.joints[0] == "left_hand_0" and raw.classes == ("sign0", "sign1", "sign2")
    assert len(np.unique(raw.signer)) == 4
    first = pq.read_table(gislr / FIRST)
    assert raw.lengths[0] == len(set(first.column("frame").to_pylist()))
    synthetic = slt("data", "convert", "synthetic:classes=4,signers=6,repeats=3", "syn.npz")
    assert synthetic.exit_code == 0 and load_source("syn.npz").x.shape[0] == 72


def _drop_column(path: Path) -> None:
    pq.write_table(pq.read_table(path).drop_columns(["x"]), path)


@pytest.mark.parametrize(("breakage", "named", "words"), [
    (lambda root: (root / FIRST).unlink(), FIRST, "no such file"),
    (lambda root: _drop_column(root / FIRST), FIRST, "missing column(s) x"),
    (lambda root: (root / "train.csv").write_text(
        "path,participant_id,sequence_id,sign\n" + FIRST + ",1,1,goodbye\n"), "train.csv",
     "sign 'goodbye' is not in"),
    (lambda root: [shutil.rmtree(p) if p.is_dir() else p.unlink() for p in root.iterdir()],
     "asl", "no sign_to_prediction_index_map.json"),
])
@pytest.mark.parametrize("command", ["train", "inspect"])
def test_bad_corpora_exit_2_naming_the_file(own_gislr: Path, tiny_toml: Path, breakage,
                                            named: str, words: str, command: str) -> None:
    breakage(own_gislr)
    spec = f"gislr:{own_gislr}"
    args = (["train", "--config", str(tiny_toml), "--data", spec] if command == "train"
            else ["data", "inspect", spec])
    result = slt(*args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr and named in result.stderr and words in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.output


def test_a_damaged_cache_is_rebuilt_with_a_warning(own_gislr: Path) -> None:
    spec = f"gislr:{own_gislr}"
    assert slt("data", "inspect", spec).exit_code == 0
    (frames,) = cache_root(own_gislr).glob("gislr-*/frames.f16")
    frames.write_bytes(frames.read_bytes()[:-10])
    result = slt("data", "inspect", spec, "--json")
    assert result.exit_code == 0, result.output
    assert "rebuilding the cache" in result.stderr and "wrong size" in result.stderr
    assert json.loads(result.stdout)["sequences"] == 24


def test_landmark_mistakes_are_caught(gislr: Path, tmp_path: Path) -> None:
    result = slt("data", "inspect", f"gislr:{gislr}", "--landmarks", "hands+tail")
    assert result.exit_code == 2 and "unknown group tail" in result.stderr
    config = tmp_path / "bad.toml"
    config.write_text('[data]\nlandmarks = "hands+feet"\n', encoding="utf-8")
    result = slt("train", "--config", str(config))
    assert result.exit_code == 2 and "data.landmarks: must join groups" in result.stderr


def test_data_commands_have_help() -> None:
    group = get_command(app).commands["data"]
    for name, cmd in group.commands.items():
        assert cmd.help, name
        for param in cmd.params:
            assert param.name == "help" or param.help, f"data {name} {param.name}"


def test_prepared_splits_are_cached_per_normalisation(own_gislr: Path) -> None:
    from slt_cli.data.corpus import open_corpus, prepared_splits
    from slt_cli.data.landmarks import PartsLayout

    store = open_corpus(f"gislr:{own_gislr}", "hands+pose+lips")
    labels = np.where(np.arange(len(store)) % 4 == 0, "val", "train")
    layout = PartsLayout.of(store.joints)
    assert prepared_splits(store, labels, 8)["train"].x.shape[2] == 96
    by_parts = prepared_splits(store, labels, 8, layout=layout)["val"].x
    assert by_parts.shape[2] == 98  # the hands' positions
    shapes = PartsLayout.of(store.joints, shapes=True)
    assert prepared_splits(store, labels, 8, layout=shapes)["val"].x.shape[2] == 96 + 40
    assert prepared_splits(store, labels, 8)["train"].x.shape[2] == 96  # never the others'
    assert prepared_splits(store, labels, 8, layout=layout)["val"].x.shape[2] == 98
    assert prepared_splits(store, labels, 8)["train"].x.shape[3] == 2  # x and y, by default
    assert prepared_splits(store, labels, 8, coordinates="xyz")["train"].x.shape[3] == 3
