from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from slt_cli import RecordingReporter, Trainer, load_config
from slt_cli.cfg.config import Config
from slt_cli.errors import CheckpointError, ConfigError, DataError
from slt_cli.run.history import read_history
from slt_cli.store.checkpoints import list_checkpoints, load_weights, read_sidecar
from slt_cli.store.sidecar import SIDECAR_KEYS


def tiny(tiny_toml: Path, **run: object) -> Config:
    config = load_config(tiny_toml)
    return dataclasses.replace(config, run=dataclasses.replace(config.run, **run))


def weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    return load_weights(folder, name, read_sidecar(folder, name))


def test_a_run_saves_both_checkpoints_of_every_stage(tiny_toml: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    result = Trainer(tiny(tiny_toml), checkpoint_dir=tmp_path, reporter=reporter).train()
    assert [s.checkpoint for s in result.stages] == ["best_model_stage_1", "best_model_stage_2"]
    assert sorted(r.name for r in list_checkpoints(tmp_path)[0]) == [
        "best_model_stage_1", "best_model_stage_2", "stage_1_baseline", "stage_2_augmentation"]
    sidecar = read_sidecar(tmp_path, "best_model_stage_2")
    assert set(SIDECAR_KEYS) <= set(json.loads((tmp_path / "best_model_stage_2.json").read_text()))
    assert sidecar.parent == "best_model_stage_1" and sidecar.stage_name == "augmentation"
    assert sidecar.config.stage.lr == 1e-3
    assert sidecar.config.data.source.startswith("synthetic:")
    assert sidecar.model["name"] == "conv_transformer" and sidecar.classes[0] == "sign_000"
    assert sidecar.model["settings"]["dim"] == 16  # from the config
    assert sidecar.model["settings"]["kernel_size"] > 0  # a builder default, resolved
    epochs = reporter.named("epoch_done")  # stage 2 scores its starting weights first
    assert [(m.stage_idx, m.epoch) for m in epochs] == [(1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    # the saved best is the last epoch judged a new best (selection.py's rule)
    best = [m for m in epochs if m.stage_idx == 2 and m.is_best][-1]
    assert sidecar.val_accuracy == pytest.approx(best.val_accuracy)
    assert sidecar.epoch == best.epoch


def test_runs_are_deterministic(tiny_toml: Path, tmp_path: Path) -> None:
    Trainer(tiny(tiny_toml), checkpoint_dir=tmp_path / "a").train([1])
    Trainer(tiny(tiny_toml), checkpoint_dir=tmp_path / "b").train([1])
    first, second = weights(tmp_path / "a", "stage_1_baseline"), weights(tmp_path / "b",
                                                                          "stage_1_baseline")
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_two_stages_equal_one_stage_plus_continue(tiny_toml: Path, tmp_path: Path) -> None:
    config = tiny(tiny_toml)
    # The preset is stage 2 itself, so continuing stage 1 must retrace stage 2 exactly.
    config = dataclasses.replace(config, presets={**config.presets, "same": config.stages[1]})
    Trainer(config, checkpoint_dir=tmp_path / "run").train([1, 2], force=True)
    Trainer(config, checkpoint_dir=tmp_path / "split").train([1])
    result = Trainer(config, checkpoint_dir=tmp_path / "split").continue_from(
        "best_model_stage_1", "same")
    assert result.checkpoint == "best_model_stage_1_same"
    straight = weights(tmp_path / "run", "best_model_stage_2")
    continued = weights(tmp_path / "split", "best_model_stage_1_same")
    assert straight.keys() == continued.keys()
    assert all(torch.equal(straight[k], continued[k]) for k in straight)


def test_continue_records_lineage_and_never_overwrites(tiny_toml: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny(tiny_toml), checkpoint_dir=tmp_path)
    trainer.train([1])
    first = trainer.continue_from("best_model_stage_1", "exploration")
    second = trainer.continue_from("best_model_stage_1", "exploration", epochs=1)
    assert (first.checkpoint, second.checkpoint) == (
        "best_model_stage_1_exploration", "best_model_stage_1_exploration_2")
    sidecar = read_sidecar(tmp_path, first.checkpoint)
    assert sidecar.parent == "best_model_stage_1" and sidecar.stage_name == "exploration"
    assert sidecar.stage_idx == 1
    with pytest.raises(ConfigError, match="no continue preset 'wild'"):
        trainer.continue_from("best_model_stage_1", "wild")
    with pytest.raises(CheckpointError) as caught:
        trainer.continue_from("best_model_stage_3", "exploration")
    assert caught.value.hint.startswith("Did you mean: best_model_stage_1")


def test_threshold_stops_early_and_force_runs_everything(tiny_toml: Path, tmp_path: Path) -> None:
    strict = tiny(tiny_toml, improvement_threshold=2.0)  # no stage can gain 2.0 accuracy
    config = dataclasses.replace(strict, stages=strict.stages + (
        dataclasses.replace(strict.stages[1], name="third"),))
    stopped = Trainer(config, checkpoint_dir=tmp_path / "strict").train()
    assert [s.stage_idx for s in stopped.stages] == [1, 2]
    assert "stage 2 (augmentation) improved val_accuracy by" in stopped.stopped
    assert stopped.stages[1].gain is not None and stopped.stages[1].gain < 2.0
    forced = Trainer(config, checkpoint_dir=tmp_path / "forced").train(force=True)
    assert [s.stage_idx for s in forced.stages] == [1, 2, 3] and forced.stopped is None


def test_starting_later_uses_the_saved_stage_before(tiny_toml: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny(tiny_toml), checkpoint_dir=tmp_path)
    trainer.train([1])
    result = trainer.train([2])
    assert result.stages[0].parent == "best_model_stage_1"
    assert read_sidecar(tmp_path, "best_model_stage_2").parent == "best_model_stage_1"


def test_a_new_run_moves_the_old_files_aside(tiny_toml: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny(tiny_toml), checkpoint_dir=tmp_path)
    old = trainer.train([1])
    old_hash = read_sidecar(tmp_path, "best_model_stage_1").weights_sha256
    new = trainer.train([1])
    assert set(new.archived) == {"best_model_stage_1", "stage_1_baseline"}
    kept = read_sidecar(tmp_path / "archive" / new.run_id, "best_model_stage_1")
    assert kept.weights_sha256 == old_hash and kept.run_id == old.run_id


def test_evaluate_reproduces_the_saved_score(tiny_toml: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny(tiny_toml), checkpoint_dir=tmp_path)
    trainer.train([1])
    sidecar = read_sidecar(tmp_path, "best_model_stage_1")
    scored = trainer.evaluate("best_model_stage_1", split="val")
    assert scored.accuracy == pytest.approx(sidecar.val_accuracy, abs=1e-6)
    assert scored.loss == pytest.approx(sidecar.val_loss, rel=1e-5)
    assert scored.top5_accuracy == 1.0  # only 4 classes
    assert set(scored.per_class) == set(sidecar.classes)
    test = trainer.evaluate("best_model_stage_1", split="test")
    assert test.count == 4 * 2 * 3  # classes x test signers x repeats
    with pytest.raises(DataError, match=r"does not fit checkpoint best_model_stage_1: classes: "
                                        r"1 here that the checkpoint lacks \(sign_004\)$"):
        trainer.evaluate("best_model_stage_1", data_spec="synthetic:classes=5,signers=6")


def test_config_without_gpu_asks_for_cuda(tiny_toml: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    from slt_cli.errors import SltError

    with pytest.raises(SltError, match="no GPU is visible"):
        Trainer(tiny(tiny_toml), device="cuda")


def test_small_training_sets_are_repeated_to_a_minimum_of_batches(tiny_toml: Path,
                                                                 tmp_path: Path) -> None:
    config = tiny(tiny_toml, min_batches_per_epoch=5, batch_size=8)  # 24 train sequences
    reporter = RecordingReporter()
    Trainer(config, checkpoint_dir=tmp_path, reporter=reporter).train([1])
    assert reporter.named("stage_started")[0]["batches"] == 6  # 24 x 2 repeats / 8
    epochs = reporter.named("epoch_done")
    assert all(0.0 <= m.train_accuracy <= 1.0 for m in epochs)


@pytest.mark.parametrize(("joints", "channels", "longest"), [(1, 2, 4), (543, 3, 300)])
def test_any_layout_trains_one_landmark_to_full_holistic(
        tiny_toml: Path, tmp_path: Path, joints: int, channels: int, longest: int) -> None:
    # One tracked point in 2-D with a few frames, and all 543 MediaPipe Holistic
    # landmarks in 3-D with up to 300 frames, hands missing in some frames.
    rng = np.random.default_rng(0)
    count = 24
    lengths = rng.integers(max(2, longest // 4), longest + 1, size=count)
    x = np.full((count, longest, joints, channels), np.nan, np.float32)
    y = np.arange(count) % 3
    for i, length in enumerate(lengths):
        path = np.cumsum(rng.normal(size=(length, 1, channels)), axis=0) * (1 + y[i])
        x[i, :length] = path + rng.normal(scale=0.1, size=(length, joints, channels))
    if joints > 1:
        x[::3, 5:9, -42:] = np.nan  # undetected hands
    data = tmp_path / "layout.npz"
    np.savez(data, x=x, y=y, lengths=lengths)
    config = load_config(tiny_toml)
    config = dataclasses.replace(
        config, stages=config.stages[:1],
        data=dataclasses.replace(config.data, source=str(data), val_fraction=0.25))
    result = Trainer(config, checkpoint_dir=tmp_path / "ck").train()
    stage = result.stages[0]
    assert np.isfinite(stage.val_loss) and 0.0 <= stage.val_accuracy <= 1.0
    sidecar = read_sidecar(tmp_path / "ck", "best_model_stage_1")
    assert sidecar.model["in_features"] == joints * channels * 2 + joints


def test_single_frame_clips_train_without_temporal_augmentation(tiny_toml: Path,
                                                                tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.arange(48) % 4
    x = (rng.normal(size=(48, 1, 6, 2)) + y[:, None, None, None]).astype(np.float32)
    np.savez(tmp_path / "letters.npz", x=x, y=y)
    config = tiny(tiny_toml)
    stage = config.stages[1]
    stage = dataclasses.replace(stage, augment=dataclasses.replace(
        stage.augment, time_mask=0.5, speed=0.3, rotate=10.0))
    config = dataclasses.replace(
        config, stages=(config.stages[0], stage),
        data=dataclasses.replace(config.data, source=str(tmp_path / "letters.npz"), frames=0))
    reporter = RecordingReporter()
    Trainer(config, checkpoint_dir=tmp_path / "run", reporter=reporter).train(force=True)
    sidecar = read_sidecar(tmp_path / "run", "best_model_stage_2")
    assert sidecar.config.data.frames == 1  # taken from the data
    augment = sidecar.config.stage.augment
    assert augment.time_mask == 0 and augment.speed == 0 and augment.rotate == 10.0
    assert any("single frame" in message for message in reporter.named("note"))
    evaluation = Trainer(config, checkpoint_dir=tmp_path / "run").evaluate("best_model_stage_2")
    assert evaluation.count > 0


def with_hands(config: Config, scale: float, source: str | None = None) -> Config:
    """One epoch of each stage, the second's hands scaled and turned by ``scale``."""
    first, second = (dataclasses.replace(stage, epochs=1) for stage in config.stages[:2])
    second = dataclasses.replace(second, augment=dataclasses.replace(
        second.augment, hand_scale=scale, hand_rotate=20.0 if scale else 0.0))
    data = config.data if source is None else dataclasses.replace(config.data, source=source)
    return dataclasses.replace(config, stages=(first, second), data=data)


def test_hand_augmentation_moves_named_hands_in_training_and_says_when_none_are_named(
        tiny_toml: Path, tmp_path: Path) -> None:
    trained = {}
    for scale in (0.0, 0.3):
        folder = tmp_path / f"hands_{scale}"
        Trainer(with_hands(tiny(tiny_toml), scale), checkpoint_dir=folder,
                reporter=RecordingReporter()).train(force=True)
        trained[scale] = weights(folder, "best_model_stage_2")
        assert read_sidecar(folder, "best_model_stage_2").config.stage.augment.hand_scale == scale
    assert any(not torch.equal(trained[0.0][key], trained[0.3][key]) for key in trained[0.0])
    rng = np.random.default_rng(0)
    y = np.arange(48) % 4
    np.savez(tmp_path / "unnamed.npz", y=y,
             x=(rng.normal(size=(48, 8, 6, 2)) + y[:, None, None, None]).astype(np.float32))
    reporter = RecordingReporter()
    Trainer(with_hands(tiny(tiny_toml), 0.3, str(tmp_path / "unnamed.npz")),
            checkpoint_dir=tmp_path / "unnamed", reporter=reporter).train(force=True)
    assert any("name no hands" in message for message in reporter.named("note"))


def wrecking(config: Config, **changes: object) -> Config:
    """Stage 1, then a stage whose weight decay wipes the weights out (its every epoch
    is worse than its start), then a gentle stage 3."""
    wreck = dataclasses.replace(config.stages[1], name="wreck", weight_decay=990.0,
                                warmup_fraction=0.0, **changes)
    gentle = dataclasses.replace(config.stages[0], name="gentle", epochs=1, lr=1e-4)
    return dataclasses.replace(config, stages=(config.stages[0], wreck, gentle))


def test_a_stage_that_only_hurts_keeps_its_start_and_the_next_starts_there(
        tiny_toml: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from slt_cli.cli import app
    from slt_cli.show.console import stage_table

    reporter = RecordingReporter()
    result = Trainer(wrecking(tiny(tiny_toml)), checkpoint_dir=tmp_path,
                     reporter=reporter).train(force=True)
    first, wrecked, gentle = result.stages
    epochs = [(m.stage_idx, m.epoch) for m in reporter.named("epoch_done")]
    assert epochs == [(1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0), (3, 1)]  # no epoch 0 in 1
    trained = [m for m in reporter.named("epoch_done") if m.stage_idx == 2 and m.epoch > 0]
    assert all(m.val_accuracy < first.val_accuracy and not m.is_best for m in trained)

    assert (wrecked.best_epoch, wrecked.kept_start, wrecked.gain) == (0, True, 0.0)
    assert (wrecked.epochs_run, first.kept_start) == (2, False)  # patience 0: every epoch
    sidecar = read_sidecar(tmp_path, "best_model_stage_2")
    assert (sidecar.epoch, sidecar.parent) == (0, "best_model_stage_1")
    assert sidecar.val_accuracy == read_sidecar(tmp_path, "best_model_stage_1").val_accuracy \
        == first.val_accuracy
    kept, start = weights(tmp_path, "best_model_stage_2"), weights(tmp_path, "best_model_stage_1")
    assert kept.keys() == start.keys() and all(torch.equal(kept[k], start[k]) for k in kept)
    final = weights(tmp_path, "stage_2_wreck")  # the end of the stage is the wrecked one
    assert not all(torch.equal(final[k], start[k]) for k in final)
    # The whole stage's time, beside the time until its (here: starting) best.
    assert sidecar.stage_time == pytest.approx(wrecked.training_time, abs=1e-3)
    assert sidecar.stage_time > sidecar.training_time
    assert read_sidecar(tmp_path, "stage_2_wreck").stage_time == sidecar.stage_time

    # Stage 3 starts from the kept weights: its epoch 0 scores exactly what stage 1 did.
    assert gentle.parent == "best_model_stage_2"
    assert reporter.named("stage_started")[2]["start"] == "best_model_stage_2"
    start3 = next(m for m in reporter.named("epoch_done") if (m.stage_idx, m.epoch) == (3, 0))
    assert (start3.val_loss, start3.val_accuracy) == (first.val_loss, first.val_accuracy)

    console = Console(record=True, width=200)
    console.print(stage_table(result.stages, "run"))
    assert "0/2 start kept" in console.export_text()
    table = CliRunner().invoke(app, ["analyze", "--checkpoint-dir", str(tmp_path)])
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if "wreck" in line)
    assert "0 start kept" in row
    report = CliRunner().invoke(app, ["analyze", "--json", "--checkpoint-dir", str(tmp_path)])
    rows = json.loads(report.stdout)["stages"]
    assert [(r["best_epoch"], r["kept_start"]) for r in rows] == [
        (s.best_epoch, s.kept_start) for s in result.stages]
    assert (rows[0]["kept_start"], rows[1]["best_epoch"], rows[1]["kept_start"]) == (False, 0,
                                                                                     True)
    assert rows[1]["stage_time"] == sidecar.stage_time


def test_patience_stops_a_stage_that_gains_nothing(tiny_toml: Path, tmp_path: Path) -> None:
    config = wrecking(tiny(tiny_toml), epochs=3, patience=1)
    trainer = Trainer(config, checkpoint_dir=tmp_path)
    trainer.train([1])
    reporter = RecordingReporter()
    trainer.reporter = reporter
    result = trainer.train([2])  # from best_model_stage_1 on disk
    stage = result.stages[0]
    # patience counts in the stage's second half: epoch 1 of 3 is still its first
    assert (stage.best_epoch, stage.epochs_run, stage.epochs) == (0, 2, 3)
    assert [m.epoch for m in reporter.named("epoch_done")] == [0, 1, 2]
    assert reporter.named("note")[-1] == (
        "stage 2 (wreck) stopped early at epoch 2 of 3: no gain for 1 epoch")
    assert read_sidecar(tmp_path, "best_model_stage_2").epoch == 0
    assert read_sidecar(tmp_path, "stage_2_wreck").epoch == 2  # the weights at the stop
    rows = [(r.stage_idx, r.epoch) for r in read_history(tmp_path)[0] if r.run_id ==
            result.run_id]
    assert rows == [(2, 0), (2, 1), (2, 2)]


def test_a_start_misfits_on_any_key_of_its_model_record(tiny_checkpoint: Path) -> None:
    """Stage N starts from best_model_stage_{N-1} only when their network records are
    equal, every key of them: the named ones in the user's words, any other by its key."""
    from slt_cli.run.records import start_misfits

    sidecar = read_sidecar(tiny_checkpoint, "best_model_stage_1")
    record, data = dict(sidecar.model), sidecar.config.data
    assert start_misfits(sidecar, record, data) == []
    assert start_misfits(sidecar, {**record, "num_frames": 99}, data) == [
        f"frames {record['num_frames']} there, 99 here"]
    assert start_misfits(sidecar, {**record, "variant": 2}, data) == [
        "model variant None there, 2 here"]


def test_record_differences_name_the_landmarks_that_differ() -> None:
    """Landmarks are compared by name: the checkpoint's missing ones first (three named),
    then the ones it lacks, then their order; the count alone would hide a renaming."""
    from slt_cli.run.records import record_differences

    base = {"name": "gcn", "settings": {}, "num_classes": 3, "in_features": 8, "num_frames": 4}
    hand = [f"left_hand_{i}" for i in range(5)]
    assert record_differences({**base, "joints": hand}, {**base, "joints": hand}) == []
    assert record_differences({**base, "joints": hand}, {**base, "joints": hand[:1]}) == [
        "landmarks: 4 of the checkpoint's 5 missing here (left_hand_1, left_hand_2, "
        "left_hand_3, ...)"]
    assert record_differences({**base, "joints": hand[:2]}, {**base, "joints": hand[:3]}) == [
        "landmarks: 1 here that the checkpoint lacks (left_hand_2)"]
    assert record_differences({**base, "joints": hand}, {**base, "joints": hand[::-1]}) == [
        "landmarks in another order"]
