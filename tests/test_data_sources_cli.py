"""Frame-folder corpora through the command line: ``slt data inspect`` with its quality
report and filmstrips, training on a ``mediapipe:`` folder and predicting one sequence
folder. (Kept out of ``tests/data``: they run after the CLI tests have imported torch
and matplotlib, so they cost only their own work.)"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slt_cli.cli import app
from tests.cli import slt
from tests.corpora import write_mediapipe


def test_inspect_reports_quality_and_draws_filmstrips(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    root = tmp_path / "mp"
    write_mediapipe(root, signs=("yes", "no"), sequences=2, frames=3)  # small: 6 panels
    with open(root / "signers.csv", "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([["folder", "signer"], ["yes", "ann"], ["no/0", "bob"],
                                    ["no/1", "ann"]])
    image = tmp_path / "strips.png"
    result = CliRunner().invoke(app, ["data", "inspect", f"mediapipe:{root}", "--json",
                                      "--landmarks", "hands+pose", "--plot", str(image)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["few_signers"] == ["yes"]  # only ann signs it
    assert report["per_signer"] == {"min": 1, "median": 2.0, "max": 3}
    zeros, missing = report["zero_filled"], report["missing"]
    assert 0.3 < zeros["left_hand"] == missing["left_hand"] and zeros["pose"] == 0.0
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = CliRunner().invoke(app, ["data", "inspect", f"mediapipe:{root}"])
    assert "classes with < 2 signers │" in table.stdout and "written as zeros" in table.stdout


def test_train_on_frame_folders_then_predict_one_folder(tmp_path: Path, tiny_toml: Path) -> None:
    root = tmp_path / "mp"
    write_mediapipe(root, order=("pose", "left_hand", "right_hand", "face"), frames=8,
                    sequences=4)
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--config", str(tiny_toml), "--data",
                                  f"mediapipe:{root}", "--stages", "1", "--epochs-per-stage",
                                  "1", "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert trained.exit_code == 0, trained.output
    assert "in the order pose+left_hand+right_hand+face" in trained.stderr
    result = runner.invoke(app, ["predict", "best_model_stage_1", str(root / "Yes" / "1"),
                                 "--checkpoint-dir", str(tmp_path / "ckpt"), "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["input"] == str(root / "Yes" / "1") and len(row["top"]) == 3
    every = runner.invoke(app, ["predict", "best_model_stage_1", str(root), "--json",
                                "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert every.exit_code == 0, every.output
    rows = json.loads(every.stdout)  # every sequence under the folder, labelled by its sign
    sequences = [path for path in root.glob("*/*") if not path.parent.name.startswith(".")]
    assert len(rows) == len(sequences) and rows[0]["label"] is not None  # not the cache
    refused = runner.invoke(app, ["predict", "best_model_stage_1", str(tmp_path / "ckpt"),
                                  "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert refused.exit_code == 2 and "holds no sequence slt can classify" in refused.stderr


@pytest.mark.parametrize("kind", ["mediapipe", "openpose"])
def test_a_folder_given_without_its_kind_is_named_with_the_prefix(tmp_path: Path,
                                                                   kind: str) -> None:
    from tests.corpora import write_openpose

    root = tmp_path / "data"
    (write_mediapipe if kind == "mediapipe" else write_openpose)(root)
    result = slt("data", "inspect", str(root))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: unknown data source '{root}': a folder, whose "
                                    f"files look like {kind}'s")
    assert f"hint: Name its kind: {kind}:{root}" in result.stderr
    missing = slt("data", "inspect", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "no such file or folder" in missing.stderr
