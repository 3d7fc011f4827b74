"""metrics.csv: one row per finished epoch, beside the checkpoints, never lost,
never twice."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from slt_cli import RecordingReporter, Trainer, load_config
from slt_cli.run import runfolder as runfolder_module
from slt_cli.run.history import (
    COLUMNS,
    METRICS_FILE,
    EpochRow,
    append_row,
    forget_from,
    read_history,
)
from slt_cli.store.checkpoints import list_checkpoints

METRIC_FIELDS = ("stage_idx", "stage_name", "epoch", "epochs", "train_loss", "train_accuracy",
                 "val_loss", "val_accuracy", "lr", "seconds", "is_best")


def row(run_id: str = "r1", stage_idx: int = 1, epoch: int = 1, val_loss: float = 1.0,
        **changes: object) -> EpochRow:
    base = EpochRow(run_id=run_id, kind="train", stage_idx=stage_idx, stage_name="baseline",
                    epoch=epoch, epochs=2, train_loss=2.0, train_accuracy=0.25,
                    val_loss=val_loss, val_accuracy=0.5, lr=1e-3, seconds=0.5, is_best=True,
                    checkpoint=f"best_model_stage_{stage_idx}", parent=None)
    return dataclasses.replace(base, **changes)


def test_every_epoch_of_every_run_is_one_row_equal_to_what_the_reporter_saw(
        tiny_toml: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    config = load_config(tiny_toml)
    result = Trainer(config, checkpoint_dir=tmp_path, reporter=reporter).train(force=True)
    with (tmp_path / METRICS_FILE).open(newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == list(COLUMNS) == [
        "run_id", "kind", "stage_idx", "stage_name", "epoch", "epochs", "train_loss",
        "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds", "is_best",
        "checkpoint", "parent"]
    assert len(table) == 1 + 5  # 2 stages x 2 epochs, and stage 2's epoch 0
    assert table[3][4:8] == ["0", "2", "", ""]  # epoch 0: scored, not trained
    rows, problems = read_history(tmp_path)
    assert problems == []
    seen = reporter.named("epoch_done")
    assert [(r.stage_idx, r.epoch) for r in rows] == [(1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    assert rows[2].train_loss is None and rows[2].is_best
    for got, metrics in zip(rows, seen, strict=True):
        assert {f: getattr(got, f) for f in METRIC_FIELDS} == dataclasses.asdict(metrics)
        assert (got.run_id, got.kind) == (result.run_id, "train")
    assert [(r.checkpoint, r.parent) for r in rows[1:3]] == [
        ("best_model_stage_1", None), ("best_model_stage_2", "best_model_stage_1")]

    # A continue run appends its own rows; the first run's stay; `slt list` is not confused.
    continued = Trainer(config, checkpoint_dir=tmp_path).continue_from(
        "best_model_stage_2", "fine_tune")
    rows, _ = read_history(tmp_path)
    assert len(rows) == 7 and rows[:5] == read_history(tmp_path)[0][:5]
    assert [(r.kind, r.stage_idx, r.epoch, r.checkpoint, r.parent) for r in rows[5:]] == [
        ("continue", 2, e, continued.checkpoint, "best_model_stage_2") for e in (0, 1)]
    assert rows[5].run_id != result.run_id
    assert continued.val_accuracy == [r for r in rows[5:] if r.is_best][-1].val_accuracy
    records, problems = list_checkpoints(tmp_path)
    assert problems == [] and len(records) == 5


def test_a_run_killed_between_its_row_and_its_resume_state_records_each_epoch_once(
        tiny_toml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(tiny_toml)
    Trainer(config, checkpoint_dir=tmp_path / "straight").train(force=True)
    calls = []
    real_save = runfolder_module.save_resume

    def dies_at_the_end_of_epoch_2(*args: object) -> None:
        calls.append(args)
        if len(calls) == 3:  # stage 1's start, end of epoch 1, end of epoch 2: its row is out
            raise SystemExit("killed")
        real_save(*args)

    monkeypatch.setattr(runfolder_module, "save_resume", dies_at_the_end_of_epoch_2)
    folder = tmp_path / "killed"
    with pytest.raises(SystemExit):
        Trainer(config, checkpoint_dir=folder).train(force=True)
    assert [(r.stage_idx, r.epoch) for r in read_history(folder)[0]] == [(1, 1), (1, 2)]
    monkeypatch.setattr(runfolder_module, "save_resume", real_save)
    Trainer(config, checkpoint_dir=folder).resume()  # trains epoch 2 of stage 1 again

    with (folder / METRICS_FILE).open(newline="") as handle:
        keys = [(r["stage_idx"], r["epoch"]) for r in csv.DictReader(handle)]
    assert keys == [("1", "1"), ("1", "2"), ("2", "0"), ("2", "1"), ("2", "2")]  # the file
    resumed, straight = read_history(folder)[0], read_history(tmp_path / "straight")[0]
    assert len({r.run_id for r in resumed}) == 1
    for got, want in zip(resumed, straight, strict=True):
        assert dataclasses.replace(got, run_id="", seconds=0) == dataclasses.replace(
            want, run_id="", seconds=0)


def test_a_torn_last_line_is_ignored_then_cut_before_the_next_row(tmp_path: Path) -> None:
    append_row(tmp_path, row(epoch=1))
    append_row(tmp_path, row(epoch=2))
    path = tmp_path / METRICS_FILE
    whole = path.read_bytes()
    path.write_bytes(whole + b"r1,train,1,baseline,3,2,1.9,0.3")  # killed mid-row
    assert [r.epoch for r in read_history(tmp_path)[0]] == [1, 2]
    assert read_history(tmp_path)[1] == []
    append_row(tmp_path, row(epoch=3, val_loss=0.75))
    rows, problems = read_history(tmp_path)
    assert problems == [] and [(r.epoch, r.val_loss) for r in rows] == [(1, 1.0), (2, 1.0),
                                                                        (3, 0.75)]
    assert path.read_text().count("\n") == 4 and "0.3r1" not in path.read_text()


def test_bad_rows_are_named_and_repeated_epochs_count_once(tmp_path: Path) -> None:
    for epoch, loss in ((1, 1.0), (2, 0.9), (2, 0.8)):
        append_row(tmp_path, row(epoch=epoch, val_loss=loss))
    with (tmp_path / METRICS_FILE).open("a") as handle:
        handle.write("r1,train,1,baseline,three,2,1,1,1,1,1,1,1,best_model_stage_1,\n")
    append_row(tmp_path, row(run_id="r2", epoch=1, parent="best_model_stage_1"))
    rows, problems = read_history(tmp_path)
    assert [(r.run_id, r.epoch, r.val_loss) for r in rows] == [
        ("r1", 1, 1.0), ("r1", 2, 0.8), ("r2", 1, 1.0)]
    assert rows[2].parent == "best_model_stage_1" and rows[0].parent is None
    assert problems == ["metrics.csv line 5: invalid literal for int() with base 10: 'three'"]


def test_forget_from_drops_only_the_epochs_a_resume_trains_again(tmp_path: Path) -> None:
    for run_id in ("old", "r1"):
        for stage_idx, epoch in ((1, 1), (1, 2), (2, 1)):
            append_row(tmp_path, row(run_id=run_id, stage_idx=stage_idx, epoch=epoch))
    assert forget_from(tmp_path, "r1", {1: 2, 2: 1}) == 2
    assert [(r.run_id, r.stage_idx, r.epoch) for r in read_history(tmp_path)[0]] == [
        ("old", 1, 1), ("old", 1, 2), ("old", 2, 1), ("r1", 1, 1)]
    assert forget_from(tmp_path, "r1", {1: 2}) == 0
    assert forget_from(tmp_path / "absent", "r1", {1: 1}) == 0
