"""Nothing lost: Ctrl-C, resume, kill -9 at many moments, numerical faults, one run
per folder. Real `slt` subprocesses where a signal or a fresh interpreter matters."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from slt_cli import Trainer, load_config
from slt_cli.cfg.config import Config
from slt_cli.cli import app
from slt_cli.common.reporting import Reporter
from slt_cli.errors import RunInterrupted, SltError, TrainingDiverged
from slt_cli.run.history import read_history
from slt_cli.run.resume import has_resume
from slt_cli.store.checkpoints import list_checkpoints, load_weights, read_sidecar
from slt_cli.store.lock import folder_lock
from tests.cli import slt
from tests.conftest import TINY_TOML

NAMES = ["best_model_stage_1", "stage_1_baseline", "best_model_stage_2", "stage_2_augmentation"]


def small_batches(tiny_toml: Path) -> Config:
    """The tiny run with 3 batches an epoch, so there is a middle to stop in."""
    config = load_config(tiny_toml)
    return dataclasses.replace(config, run=dataclasses.replace(config.run, batch_size=8))


def write_config(config: Config, path: Path) -> Path:
    """The same run as a TOML file, for subprocesses."""
    text = path.parent.joinpath("tiny.toml").read_text()
    path.write_text(text.replace("batch_size = 32", "batch_size = 8"))
    assert load_config(path) == dataclasses.replace(config, source=str(path))
    return path


def weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    return load_weights(folder, name, read_sidecar(folder, name))


def assert_same_checkpoints(folder: Path, reference: Path) -> None:
    for name in NAMES:
        got, want = weights(folder, name), weights(reference, name)
        assert got.keys() == want.keys(), name
        assert all(torch.equal(got[k], want[k]) for k in want), f"{name} differs"
        mine, theirs = read_sidecar(folder, name), read_sidecar(reference, name)
        assert (mine.val_loss, mine.val_accuracy, mine.epoch) == (
            theirs.val_loss, theirs.val_accuracy, theirs.epoch), name


def assert_every_checkpoint_whole(folder: Path) -> int:
    records, problems = list_checkpoints(folder)
    assert problems == []
    for record in records:
        load_weights(folder, record.name, read_sidecar(folder, record.name))
    return len(records)


def assert_no_leftovers(folder: Path) -> None:
    """No temporary file anywhere in the folder once a writing command has run."""
    assert not [str(p) for p in folder.rglob("*.tmp")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run to compare against (one for the whole module)."""
    base = tmp_path_factory.mktemp("reference")
    (base / "tiny.toml").write_text(TINY_TOML)
    Trainer(small_batches(base / "tiny.toml"), checkpoint_dir=base / "checkpoints").train(
        force=True)
    return base / "checkpoints"


class StopAtBatch(Reporter):
    """Asks the trainer to stop once ``count`` batches have run, as Ctrl-C does."""

    def __init__(self, count: int) -> None:
        self.count, self.seen, self.trainer = count, 0, None

    def batch_done(self, *, batch: int, batches: int, loss: float) -> None:
        self.seen += 1
        if self.seen == self.count:
            self.trainer.request_stop()


@pytest.mark.parametrize("stop_after", [1, 3, 7, 12])
def test_stopped_and_resumed_equals_uninterrupted(tiny_toml: Path, tmp_path: Path,
                                                  reference: Path, stop_after: int) -> None:
    # 2 stages x 2 epochs x 3 batches: 3 ends epoch 1, 7 is mid stage 2, 12 the very last.
    config, folder = small_batches(tiny_toml), tmp_path / "stopped"
    reporter = StopAtBatch(stop_after)
    trainer = Trainer(config, checkpoint_dir=folder, reporter=reporter)
    reporter.trainer = trainer
    with pytest.raises(RunInterrupted) as caught:
        trainer.train(force=True)
    assert caught.value.exit_code == 130 and "slt train --resume" in caught.value.hint
    assert has_resume(folder)
    assert_every_checkpoint_whole(folder)
    assert_no_leftovers(folder)
    result = Trainer(config, checkpoint_dir=folder).resume()
    assert [s.checkpoint for s in result.stages] == ["best_model_stage_1", "best_model_stage_2"]
    assert not has_resume(folder)
    assert_same_checkpoints(folder, reference)


@pytest.mark.parametrize(("stop_after", "epoch"), [(8, 1), (12, 2)])
def test_a_resumed_stage_keeps_its_epoch_0_and_stops_where_patience_did(
        tiny_toml: Path, tmp_path: Path, stop_after: int, epoch: int) -> None:
    # Stage 2 first hurts (weight decay wipes the weights out); patience 1 counts from its
    # half-way epoch, so it runs all 3 epochs (epochs 2 and 3 score best). 8 stops
    # mid-epoch 1 while epoch 0 is its best, 12 at the end of epoch 2.
    config = small_batches(tiny_toml)
    wreck = dataclasses.replace(config.stages[1], weight_decay=500.0, warmup_fraction=0.0,
                                epochs=3, patience=1)
    config = dataclasses.replace(config, stages=(config.stages[0], wreck))
    straight = Trainer(config, checkpoint_dir=tmp_path / "straight").train(force=True)
    assert (straight.stages[1].best_epoch, straight.stages[1].epochs_run) == (3, 3)
    folder, reporter = tmp_path / "stopped", StopAtBatch(stop_after)
    trainer = Trainer(config, checkpoint_dir=folder, reporter=reporter)
    reporter.trainer = trainer
    with pytest.raises(RunInterrupted, match=f"stage 2 .* epoch {epoch}, after batch"):
        trainer.train(force=True)
    resumed = Trainer(config, checkpoint_dir=folder).resume()
    assert resumed.stages[1] == dataclasses.replace(
        straight.stages[1], training_time=resumed.stages[1].training_time)
    assert_same_checkpoints(folder, tmp_path / "straight")
    assert [(r.stage_idx, r.epoch) for r in read_history(folder)[0]] == [
        (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (2, 3)]


def test_continue_can_be_stopped_and_resumed(tiny_toml: Path, tmp_path: Path) -> None:
    config = small_batches(tiny_toml)
    config = dataclasses.replace(config, presets={**config.presets, "long": dataclasses.replace(
        config.presets["exploration"], epochs=3)})
    for folder in (tmp_path / "a", tmp_path / "b"):
        Trainer(config, checkpoint_dir=folder).train([1])
    Trainer(config, checkpoint_dir=tmp_path / "a").continue_from("best_model_stage_1", "long")
    reporter = StopAtBatch(4)
    trainer = Trainer(config, checkpoint_dir=tmp_path / "b", reporter=reporter)
    reporter.trainer = trainer
    with pytest.raises(RunInterrupted, match="epoch 2"):
        trainer.continue_from("best_model_stage_1", "long")
    with pytest.raises(SltError, match="is `slt continue`, not `slt train`"):
        Trainer(config, checkpoint_dir=tmp_path / "b").resume("train")
    resumed = Trainer(config, checkpoint_dir=tmp_path / "b").resume("continue")
    assert resumed.stages[0].checkpoint == "best_model_stage_1_long"
    got = weights(tmp_path / "b", "best_model_stage_1_long")
    want = weights(tmp_path / "a", "best_model_stage_1_long")
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_new_run_will_not_bury_an_interrupted_one(tiny_toml: Path, tmp_path: Path) -> None:
    reporter = StopAtBatch(2)
    trainer = Trainer(small_batches(tiny_toml), checkpoint_dir=tmp_path, reporter=reporter)
    reporter.trainer = trainer
    with pytest.raises(RunInterrupted):
        trainer.train()
    with pytest.raises(SltError, match="holds an interrupted run"):
        Trainer(small_batches(tiny_toml), checkpoint_dir=tmp_path).train()
    with pytest.raises(SltError, match="nothing to resume"):
        Trainer(small_batches(tiny_toml), checkpoint_dir=tmp_path / "empty").resume()


def test_one_run_per_folder(tiny_toml: Path, tmp_path: Path) -> None:
    folder = tmp_path / "busy"
    with folder_lock(folder, "20260101T000000Z"):
        result = CliRunner().invoke(app, ["train", "--config", str(tiny_toml),
                                          "--checkpoint-dir", str(folder)])
    assert result.exit_code == 2
    assert f"{folder} is in use by run 20260101T000000Z (pid {os.getpid()}" in result.stderr
    # A dead run's lock file (no process holds it any more) blocks nothing.
    assert (folder / ".slt.lock").exists()
    done = CliRunner().invoke(app, ["train", "--config", str(tiny_toml), "--stages", "1",
                                    "--checkpoint-dir", str(folder)])
    assert done.exit_code == 0, done.output


def test_a_diverging_stage_stops_and_keeps_only_finite_weights(tiny_toml: Path,
                                                               tmp_path: Path) -> None:
    config = small_batches(tiny_toml)
    wild = dataclasses.replace(config.stages[1], lr=10.0, weight_decay=10_000.0, grad_clip=0.0,
                               warmup_fraction=0.0)  # in range, and still explodes
    config = dataclasses.replace(config, stages=(config.stages[0], wild))
    with pytest.raises(TrainingDiverged) as caught:
        Trainer(config, checkpoint_dir=tmp_path).train(force=True)
    assert caught.value.exit_code == 1
    assert "stage 2 (augmentation):" in caught.value.message and "became nan" in (
        caught.value.message.lower())
    assert assert_every_checkpoint_whole(tmp_path) >= 2  # stage 1's two checkpoints
    assert_no_leftovers(tmp_path)
    for record in list_checkpoints(tmp_path)[0]:
        tensors = weights(tmp_path, record.name)
        assert all(torch.isfinite(t).all() for t in tensors.values())


# --- real processes ----------------------------------------------------------------------


def slt_process(*args: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("SLT_TEST_KILL_AT", None)
    if kill_at is not None:
        env["SLT_TEST_KILL_AT"] = str(kill_at)
    return subprocess.run([sys.executable, "-m", "slt_cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def killed_then_finished(config_path: Path, folder: Path, kill_at: int) -> bool:
    """Kill a real run at its ``kill_at``-th fault point, check every file, then finish
    it (resume, or start again when it died before its first save). False when the run
    has fewer fault points than ``kill_at`` (it finished untouched).

    Only the killed run needs a process of its own; the run that finishes reads what it
    left from disk, in this process (a fresh interpreter costs seconds of imports)."""
    args = ["train", "--config", str(config_path), "--checkpoint-dir", str(folder), "--force"]
    first = slt_process(*args, kill_at=kill_at)
    if first.returncode == 0:
        return False
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert_every_checkpoint_whole(folder)
    finish = slt(*args, "--resume") if has_resume(folder) else slt(*args)
    assert finish.exit_code == 0, finish.output
    assert_no_leftovers(folder)
    return True


# The first save, and one late in the run; the points between run under -m slow (below).
@pytest.mark.parametrize("kill_at", [2, pytest.param(14, marks=pytest.mark.slow), 31])
def test_kill_nine_at_a_fault_point_loses_nothing(tiny_toml: Path, tmp_path: Path,
                                                  reference: Path, kill_at: int) -> None:
    config_path = write_config(small_batches(tiny_toml), tmp_path / "small.toml")
    folder = tmp_path / f"killed{kill_at}"
    assert killed_then_finished(config_path, folder, kill_at)
    assert_same_checkpoints(folder, reference)


@pytest.mark.slow
def test_kill_nine_at_every_fault_point(tiny_toml: Path, tmp_path: Path,
                                        reference: Path) -> None:
    config_path = write_config(small_batches(tiny_toml), tmp_path / "small.toml")
    survived = 0
    for kill_at in range(1, 500):
        folder = tmp_path / f"killed{kill_at}"
        if not killed_then_finished(config_path, folder, kill_at):
            break
        assert_same_checkpoints(folder, reference)
        survived += 1
    print(f"\nkill points tried and survived: {survived}")
    assert survived > 20


def signalled_once_training(args: list[str], signum: int) -> tuple[int, str]:
    """Run ``slt ARGS`` in a real process, send ``signum`` once its first epoch is under
    way, and return its exit status and the rest of its stderr."""
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen([sys.executable, "-m", "slt_cli", *args], env=env,
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:  # wait until training is under way
        if "epoch  1/2" in line:
            break
    process.send_signal(signum)
    _, rest = process.communicate(timeout=120)
    return process.returncode, rest


def test_kill_nine_at_random_moments(tiny_toml: Path, tmp_path: Path, reference: Path) -> None:
    config_path = write_config(small_batches(tiny_toml), tmp_path / "small.toml")
    args_for = lambda folder: ["train", "--config", str(config_path), "--checkpoint-dir",  # noqa: E731
                               str(folder), "--force"]
    for delay in (2.0,):
        folder = tmp_path / f"timed{delay}"
        process = subprocess.Popen([sys.executable, "-m", "slt_cli", *args_for(folder)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.kill()
        process.wait(timeout=60)
        assert_every_checkpoint_whole(folder) if folder.exists() else None
        args = args_for(folder) + (["--resume"] if has_resume(folder) else [])
        finish = slt(*args)
        assert finish.exit_code == 0, finish.output
        assert_no_leftovers(folder)
        assert_same_checkpoints(folder, reference)


@pytest.mark.parametrize(("signum", "folds"), [(signal.SIGINT, None), (signal.SIGTERM, 2)])
def test_ctrl_c_or_sigterm_saves_resume_state_and_exits_130_or_143(
        tiny_toml: Path, tmp_path: Path, reference: Path, signum: int,
        folds: int | None) -> None:
    # Ctrl-C, or what kill, timeout, Slurm and Kubernetes send: finish the batch, save,
    # say how to carry on; train and train --folds (continue shares the same handler).
    config_path = write_config(small_batches(tiny_toml), tmp_path / "small.toml")
    folder = tmp_path / "interrupted"
    args = ["train", "--config", str(config_path), "--checkpoint-dir", str(folder), "--force",
            *(["--folds", str(folds)] if folds else [])]
    returncode, rest = signalled_once_training(args, signum)
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert returncode == 128 + signum, rest
    assert f"stopping after this batch; {name} again to quit at once" in rest
    resume = f"slt train --folds {folds} --resume" if folds else "slt train --resume"
    assert f"Carry on with: {resume}" in rest and "Traceback" not in rest
    assert has_resume(folder / "fold_1" if folds else folder)
    finish = slt(*args, "--resume")  # in this process: only the signalled run needs its own
    assert finish.exit_code == 0, finish.output
    assert ("resuming run" in finish.stderr) if not folds else ("(resumed)" in finish.stderr)
    assert_no_leftovers(folder)
    if not folds:
        assert_same_checkpoints(folder, reference)


def export_pair_agrees(out: Path) -> None:
    import hashlib
    import json

    metadata = json.loads(out.with_name(out.name + ".json").read_text())
    assert metadata["file_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def killed_export_then_finished(checkpoint: Path, out: Path, kill_at: int) -> bool:
    """Kill ``slt export`` at its ``kill_at``-th fault point, check what it left, then
    export again with --force (as a user replacing the file would). False when the
    export has fewer fault points (it finished untouched).

    Each kill leaves either nothing, or a pair whose FILE.json names FILE's hash, or a
    FILE whose FILE.json waits under slt's temporary name; the next export finishes or
    tidies it."""
    args = ["export", "best_model_stage_1", "--format", "torchscript", "--samples", "2",
            "--checkpoint-dir", str(checkpoint), "--out", str(out)]
    out.parent.mkdir()
    first = slt_process(*args, kill_at=kill_at)
    if first.returncode == 0:
        return False
    assert first.returncode == -signal.SIGKILL, first.stderr
    meta = out.with_name("m.pt.json")
    if meta.exists():
        export_pair_agrees(out)
    elif out.exists():  # killed between the renames: the .json is pending
        assert [p.name for p in out.parent.glob(".m.pt.json.slt-*.tmp")]
    again = slt(*args, "--force")  # in this process: only the killed export needs its own
    assert again.exit_code == 0, again.output
    export_pair_agrees(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.pt", "m.pt.json"]
    return True


def test_kill_nine_between_the_export_renames(tiny_checkpoint: Path, tmp_path: Path) -> None:
    # fault points 1 and 2 follow each temporary file; 3 is the instant between renames
    assert killed_export_then_finished(tiny_checkpoint, tmp_path / "k3" / "m.pt", 3)
    assert (tmp_path / "k3" / "m.pt").exists()


@pytest.mark.slow
def test_kill_nine_at_every_export_fault_point(tiny_checkpoint: Path, tmp_path: Path) -> None:
    killed = 0
    for kill_at in range(1, 20):
        if not killed_export_then_finished(tiny_checkpoint, tmp_path / f"k{kill_at}" / "m.pt",
                                           kill_at):
            break
        killed += 1
    assert killed >= 3  # both temporary files and the instant between the renames


def test_kill_nine_at_every_convert_fault_point(tmp_path: Path) -> None:
    spec = "synthetic:classes=3,signers=6,repeats=2,frames=8"
    killed = 0
    for kill_at in range(1, 20):
        out = tmp_path / f"k{kill_at}" / "data.npz"
        out.parent.mkdir()
        first = slt_process("data", "convert", spec, str(out), kill_at=kill_at)
        if first.returncode == 0:
            break
        assert first.returncode == -signal.SIGKILL, first.stderr
        killed += 1
        assert not out.exists()  # never a partial .npz under the real name
        again = slt_process("data", "convert", spec, str(out))
        assert again.returncode == 0, again.stderr
        assert [p.name for p in out.parent.iterdir()] == ["data.npz"]  # leftover cleaned
    assert killed >= 2
