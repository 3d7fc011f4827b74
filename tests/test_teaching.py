"""Stages that learn from a teacher: their own start, or the run's earlier stages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from slt_cli import RecordingReporter, Trainer, load_config
from slt_cli.cfg.config import Config
from slt_cli.errors import ConfigError
from slt_cli.store.checkpoints import load_weights, read_sidecar


def four_stages(tiny_toml: Path, third: str, fourth: str) -> Config:
    config = load_config(tiny_toml)
    second = config.stages[1]
    stages = (config.stages[0], second,
              dataclasses.replace(second, name="third", teacher=third),
              dataclasses.replace(second, name="fourth", teacher=fourth))
    return dataclasses.replace(config, stages=stages,
                               run=dataclasses.replace(config.run, selection_margin=0.0))


def final_weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    return load_weights(folder, name, read_sidecar(folder, name))


def test_a_teacher_changes_what_a_stage_learns_and_is_reproducible(tiny_toml: Path,
                                                                    tmp_path: Path) -> None:
    plain = four_stages(tiny_toml, "none", "none")
    taught = four_stages(tiny_toml, "start", "earlier")
    Trainer(plain, checkpoint_dir=tmp_path / "plain").train(force=True)
    for run in ("a", "b"):
        Trainer(taught, checkpoint_dir=tmp_path / run).train(force=True)
    for name in ("stage_3_third", "stage_4_fourth"):
        a, b = final_weights(tmp_path / "a", name), final_weights(tmp_path / "b", name)
        assert all(torch.equal(a[k], b[k]) for k in a)
        other = final_weights(tmp_path / "plain", name)
        assert any(not torch.equal(a[k], other[k]) for k in a)
    # stages 1-2 had no teacher: the same weights either way
    a, other = final_weights(tmp_path / "a", "stage_2_augmentation"), final_weights(
        tmp_path / "plain", "stage_2_augmentation")
    assert all(torch.equal(a[k], other[k]) for k in a)


def test_a_stage_without_the_teacher_it_asks_for_says_so(tiny_toml: Path,
                                                         tmp_path: Path) -> None:
    config = load_config(tiny_toml)
    first = dataclasses.replace(config.stages[0], teacher="start")  # fresh weights
    config = dataclasses.replace(config, stages=(first,))
    reporter = RecordingReporter()
    Trainer(config, checkpoint_dir=tmp_path, reporter=reporter).train()
    assert ("stage 1 (baseline) has no teacher (start): it learns from labels alone"
            in reporter.named("note"))


def test_teacher_settings_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[stages]]\nname = 'a'\nteacher = 'mentor'\nteacher_alpha = 1.5\n"
                    "teacher_temperature = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    for key in ("teacher", "teacher_alpha", "teacher_temperature"):
        assert f"stages[0].{key}:" in text


def test_a_taught_stage_stopped_and_resumed_equals_the_uninterrupted(tiny_toml: Path,
                                                                     tmp_path: Path) -> None:
    """Stopped in stage 4, whose teacher is the ensemble of stages 2 and 3: the resumed
    run reads them from disk and trains exactly as the uninterrupted one did."""
    from slt_cli.errors import RunInterrupted
    from tests.test_faults import StopAtBatch

    config = four_stages(tiny_toml, "start", "earlier")
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, batch_size=8))
    Trainer(config, checkpoint_dir=tmp_path / "straight").train(force=True)
    reporter = StopAtBatch(20)  # 3 batches an epoch, 2 epochs a stage: stage 4, epoch 1
    trainer = Trainer(config, checkpoint_dir=tmp_path / "stopped", reporter=reporter)
    reporter.trainer = trainer
    with pytest.raises(RunInterrupted, match="stage 4"):
        trainer.train(force=True)
    Trainer(config, checkpoint_dir=tmp_path / "stopped").resume()
    got = final_weights(tmp_path / "stopped", "stage_4_fourth")
    want = final_weights(tmp_path / "straight", "stage_4_fourth")
    assert all(torch.equal(got[k], want[k]) for k in want)
