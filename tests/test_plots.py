"""Figures: `slt analyze --plot` and `slt evaluate --confusion`, the series behind them,
and the most-confused pairs."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from slt_cli import Trainer, load_config
from slt_cli.run.history import METRICS_FILE, EpochRow, read_history
from slt_cli.run.results import ConfusedPair, Evaluation, most_confused
from slt_cli.show.plots import row_normalised, training_curves
from slt_cli.store.checkpoints import list_checkpoints
from tests.cli import slt
from tests.conftest import TINY_TOML

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-stage, two-epoch run (one for the module)."""
    base = tmp_path_factory.mktemp("trained")
    (base / "tiny.toml").write_text(TINY_TOML)
    Trainer(load_config(base / "tiny.toml"), checkpoint_dir=base / "checkpoints").train(
        force=True)
    return base / "checkpoints"


def epoch(run_id: str, stage_idx: int, number: int, val_loss: float,
          val_accuracy: float) -> EpochRow:
    return EpochRow(run_id=run_id, kind="train", stage_idx=stage_idx, stage_name=f"s{stage_idx}",
                    epoch=number, epochs=3, train_loss=val_loss + 1, train_accuracy=0.1,
                    val_loss=val_loss, val_accuracy=val_accuracy, lr=1e-3, seconds=1.0,
                    is_best=True, checkpoint=f"best_model_stage_{stage_idx}", parent=None)


def record(**keys: object) -> SimpleNamespace:
    """The sidecar keys the curves read (a Sidecar has them all)."""
    return SimpleNamespace(**keys)


def test_the_curves_follow_the_runs_of_the_best_checkpoints_stage_after_stage() -> None:
    records = [  # stage 1 from run A, stage 2 from a later run B, stage 3 never recorded
        record(name="best_model_stage_2", stage_idx=2, stage_name="s2", run_id="B", epoch=1),
        record(name="best_model_stage_1", stage_idx=1, stage_name="s1", run_id="A", epoch=2),
        record(name="stage_1_s1", stage_idx=1, stage_name="s1", run_id="A", epoch=3),
        record(name="best_model_stage_3", stage_idx=3, stage_name="s3", run_id=None, epoch=1),
    ]
    rows = [epoch("A", 1, n, 3.0 - n, 0.2 * n) for n in (1, 2, 3)]
    rows += [epoch("A", 2, 1, 9.0, 0.0)]  # run A's stage 2 was archived: not plotted
    rows += [epoch("B", 2, n, 1.0 / n, 0.5 + 0.1 * n) for n in (2, 1)]  # any order
    curves = training_curves(records, rows)
    assert curves.missing == (3,)
    first, second = curves.stages
    assert (first.stage_idx, first.run_id, first.x, first.best_x) == (1, "A", (1, 2, 3), 2)
    assert first.val_loss == (2.0, 1.0, 0.0) and first.train_loss == (3.0, 2.0, 1.0)
    assert first.val_accuracy == pytest.approx((0.2, 0.4, 0.6))
    assert (second.stage_idx, second.run_id, second.x, second.best_x) == (2, "B", (4, 5), 4)
    assert second.val_loss == (1.0, 0.5) and second.val_accuracy == pytest.approx((0.6, 0.7))


def test_a_stage_s_epoch_0_is_its_first_point_without_training_numbers() -> None:
    records = [record(name=f"best_model_stage_{i}", stage_idx=i, stage_name=f"s{i}",
                      run_id="A", epoch=epoch_) for i, epoch_ in ((1, 2), (2, 0))]
    start = dataclasses.replace(epoch("A", 2, 0, 0.5, 0.8), train_loss=None,
                                train_accuracy=None)
    rows = [epoch("A", 1, n, 1.0 / n, 0.4 * n) for n in (1, 2)]
    rows += [start, epoch("A", 2, 1, 0.7, 0.7), epoch("A", 2, 2, 0.9, 0.6)]
    first, second = training_curves(records, rows).stages
    assert (first.x, first.start_x) == ((1, 2), None)
    assert (second.x, second.start_x, second.best_x) == ((3, 4, 5), 3, 3)  # the start kept
    assert math.isnan(second.train_loss[0]) and second.train_loss[1:] == (1.7, 1.9)
    assert math.isnan(second.train_accuracy[0]) and second.val_accuracy[0] == 0.8


def test_analyze_plot_draws_the_recorded_epochs_of_a_real_run(trained: Path,
                                                             tmp_path: Path) -> None:
    curves = training_curves(list_checkpoints(trained)[0], read_history(trained)[0])
    rows = read_history(trained)[0]
    # stage 2 starts with its epoch 0 (stage 1's best weights, scored), a place of its own
    assert curves.missing == () and [c.x for c in curves.stages] == [(1, 2), (3, 4, 5)]
    assert [c.start_x for c in curves.stages] == [None, 3]
    assert [v for c in curves.stages for v in c.val_loss] == [r.val_loss for r in rows]
    for curve in curves.stages:  # the star sits on the epoch the sidecar says was best
        mine = [r for r in rows if r.stage_idx == curve.stage_idx]
        best = [r for r in mine if r.is_best][-1]  # the last epoch judged a new best
        assert curve.best_x == curve.x[mine.index(best)]

    image = tmp_path / "curves.png"
    result = slt("analyze", "--checkpoint-dir", str(trained), "--plot", str(image))
    assert result.exit_code == 0, result.output
    assert f"wrote {image}" in result.stderr and "augmentation" in result.stdout
    assert png_size(image) == (1200, 900)  # 10 x 7.5 inches at 120 dpi
    assert image.stat().st_size > 20_000
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left


def test_analyze_plot_without_recorded_epochs_says_why(trained: Path, tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    for path in trained.glob("best_model_stage_1.*"):
        (folder / path.name).write_bytes(path.read_bytes())
    result = slt("analyze", "--checkpoint-dir", str(folder), "--plot", str(tmp_path / "c.png"))
    assert result.exit_code == 2
    assert f"no recorded epochs of the best_model_stage_N checkpoints in {folder}/" \
           f"{METRICS_FILE}" in result.stderr
    assert "train them again" in result.stderr and not (tmp_path / "c.png").exists()


def test_evaluate_confusion_draws_the_matrix_and_lists_the_pairs(trained: Path,
                                                                tmp_path: Path) -> None:
    scored = Trainer(load_config(), checkpoint_dir=trained).evaluate("best_model_stage_1")
    assert len(scored.confusion) == len(scored.classes) == 4
    assert sum(map(sum, scored.confusion)) == scored.count
    assert sum(scored.confusion[k][k] for k in range(4)) / scored.count == pytest.approx(
        scored.accuracy)
    pairs = scored.most_confused()
    assert pairs, "the tiny model should confuse some classes"  # deterministic run

    image = tmp_path / "confusion.png"
    result = slt("evaluate", "best_model_stage_1", "--checkpoint-dir", str(trained),
                 "--confusion", str(image), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["most_confused"] == [
        {"true": p.true, "predicted": p.predicted, "count": p.count, "share": p.share}
        for p in pairs]
    assert "confusion" not in report and report["count"] == scored.count
    width, height = png_size(image)
    assert (width, height) == (900, 720)  # the smallest matrix: 7.5 x 6 inches at 120 dpi

    table = slt("evaluate", "best_model_stage_1", "--checkpoint-dir", str(trained))
    assert "most confused (true → predicted)" in table.stdout
    for pair in pairs:
        assert re.search(rf"│ {pair.true} +│ {pair.predicted} +│ +{pair.count} │ +"
                         rf"{pair.share:.1%} │", table.stdout), pair


def test_most_confused_pairs_of_a_hand_made_matrix() -> None:
    classes = ("a", "b", "c", "d")
    confusion = [[5, 3, 0, 0],   # a: 3 of 8 went to b
                 [1, 4, 0, 3],   # b: 3 of 8 went to d, 1 to a
                 [0, 3, 3, 0],   # c: 3 of 6 went to b: the larger share of the three 3s
                 [0, 0, 0, 0]]   # d: no sequences
    assert most_confused(confusion, classes) == (
        ConfusedPair("c", "b", 3, 0.5), ConfusedPair("a", "b", 3, 3 / 8),
        ConfusedPair("b", "d", 3, 3 / 8), ConfusedPair("b", "a", 1, 1 / 8))
    assert most_confused(confusion, classes, top=1) == (ConfusedPair("c", "b", 3, 0.5),)
    assert most_confused([[4, 0], [0, 2]], ("a", "b")) == ()
    shares = row_normalised(confusion)
    assert shares[2] == [0.0, 0.5, 0.5, 0.0] and all(v != v for v in shares[3])  # NaN
    evaluation = Evaluation("m", "synthetic", "val", 22, 1.0, 0.5, 1.0, {}, classes,
                            tuple(map(tuple, confusion)))
    assert evaluation.to_dict()["most_confused"][0] == {
        "true": "c", "predicted": "b", "count": 3, "share": 0.5}


def test_a_missing_matplotlib_names_the_extra(trained: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    for args in (["analyze", "--plot", str(tmp_path / "c.png")],
                 ["evaluate", "best_model_stage_1", "--confusion", str(tmp_path / "m.png")]):
        result = slt(*args, "--checkpoint-dir", str(trained))
        assert result.exit_code == 2, result.output
        assert "drawing figures needs matplotlib, which is not installed" in result.stderr
        assert "pip install 'slt[plot]'" in result.stderr and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("target", "message"), [
    ("absent/curves.png", "the folder absent does not exist"),
    ("curves.txt", "cannot tell the image type from '.txt'"),
    ("curves", "cannot tell the image type from 'no suffix'"),
    ("folder.png", "folder.png is a folder"),
])
def test_a_bad_image_path_exits_2_before_any_work(trained: Path, target: str,
                                                  message: str) -> None:
    Path("folder.png").mkdir()
    for args in (["analyze", "--plot", target],
                 ["evaluate", "best_model_stage_1", "--confusion", target]):
        result = slt(*args, "--checkpoint-dir", str(trained))
        assert result.exit_code == 2, result.output
        assert message in result.stderr and "Traceback" not in result.output
        assert "loss" not in result.stdout  # refused before analysing or evaluating
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["folder.png"]


def test_analyze_without_plot_imports_neither_matplotlib_nor_torch(trained: Path) -> None:
    code = ("import sys; from typer.testing import CliRunner; from slt_cli.cli import app; "
            f"r = CliRunner().invoke(app, ['analyze', '--checkpoint-dir', {str(trained)!r}]); "
            "assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
