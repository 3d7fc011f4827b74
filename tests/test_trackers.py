"""TensorBoard and MLflow logging (``[run] log_to``, ``--log-to``), tried for real: a run
writes an event file and a local MLflow store, read back by the libraries' own readers,
and what they hold is what ``metrics.csv`` and the sidecars hold."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slt_cli.common.reporting import EpochMetrics, RecordingReporter
from slt_cli.run.engine import Trainer
from tests.cli import slt

QUICK = ("--stages", "1", "--epochs-per-stage", "1")


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "metrics.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MLflow settings of the user's; whatever the run sets is undone afterwards."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.setenv(name, "")  # remembered as absent, so restored as absent
        monkeypatch.delenv(name)
    return monkeypatch


def _mlflow_client(uri: str) -> Any:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_tensorboard_event_file_holds_what_metrics_csv_holds(tiny_toml: Path,
                                                              tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    folder = tmp_path / "ck"
    result = slt("train", "--config", str(tiny_toml), *QUICK, "--log-to", "tensorboard",
                 "--checkpoint-dir", str(folder))
    assert result.exit_code == 0, result.output
    [row] = _rows(folder)
    events = EventAccumulator(str(folder / "tensorboard" / row["run_id"]),
                              size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()

    # the epoch's numbers, at its epoch; TensorBoard keeps float32, metrics.csv the double
    for name in ("val_accuracy", "val_loss", "train_loss", "lr"):
        [point] = events.Scalars(f"stage_1_baseline/{name}")
        assert point.step == 1
        assert point.value == pytest.approx(float(row[name]), rel=1e-6)
    sidecar = json.loads((folder / "best_model_stage_1.json").read_text(encoding="utf-8"))
    [best] = events.Scalars("best/val_accuracy")
    assert (best.step, best.value) == (1, pytest.approx(sidecar["val_accuracy"], rel=1e-6))

    # the resolved config as text, and the settings as hparams
    [text] = events.Tensors("config/text_summary")
    config = json.loads(tensor_util.make_ndarray(text.tensor_proto).item().decode().strip("`\n"))
    assert config["model"]["settings"]["dim"] == 16 and config["run"]["batch_size"] == 32
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["stage_1_baseline.lr"].number_value == pytest.approx(3e-3)
    assert hparams["data.source"].string_value.startswith("synthetic:classes=4")


def test_mlflow_run_in_a_local_mlruns_holds_what_metrics_csv_holds(
        tiny_toml: Path, tmp_path: Path, mlflow_env: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    config = tmp_path / "mlflow.toml"  # switched on by the setting, not a flag
    config.write_text(tiny_toml.read_text(encoding="utf-8").replace(
        "[run]\n", '[run]\nlog_to = "mlflow"\n'), encoding="utf-8")
    folder = tmp_path / "ck"
    trained = slt("train", "--config", str(config), *QUICK, "--checkpoint-dir", str(folder))
    assert trained.exit_code == 0, trained.output
    continued = slt("continue", "best_model_stage_1", "--type", "fine_tune", "--config",
                    str(config), "--checkpoint-dir", str(folder))
    assert continued.exit_code == 0, continued.output

    store = Path.cwd() / "mlruns"  # MLFLOW_TRACKING_URI unset: a local folder
    assert store.is_dir()
    mlflow_env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads it only so
    client = _mlflow_client(store.as_uri())
    experiment = client.get_experiment_by_name("slt")
    runs = {run.data.tags["slt.kind"]: run for run in client.search_runs(
        [experiment.experiment_id])}
    assert set(runs) == {"train", "continue"}
    rows = _rows(folder)
    for kind, run in runs.items():
        assert run.info.status == "FINISHED"
        last = [row for row in rows if row["kind"] == kind][-1]
        assert run.data.tags["slt.run_id"] == run.info.run_name == last["run_id"]
        prefix = f"stage_{last['stage_idx']}_{last['stage_name']}"
        history = client.get_metric_history(run.info.run_id, f"{prefix}/val_accuracy")
        assert [(point.step, point.value) for point in history] == [
            (int(row["epoch"]), float(row["val_accuracy"]))
            for row in rows if row["run_id"] == last["run_id"]]
    train = runs["train"].data
    assert train.params["run.seed"] == "0" and train.params["model.name"] == "conv_transformer"
    assert float(train.params["stage_1_baseline.lr"]) == 3e-3
    assert "run.log_to" not in train.params  # where it logs is no setting of the run
    sidecar = json.loads((folder / "best_model_stage_1.json").read_text(encoding="utf-8"))
    assert train.metrics["best/val_accuracy"] == sidecar["val_accuracy"]
    saved = Path(client.download_artifacts(runs["train"].info.run_id, "config.json",
                                           str(tmp_path)))
    assert json.loads(saved.read_text(encoding="utf-8"))["data"]["frames"] == 12
    assert runs["continue"].data.tags["slt.start"] == "best_model_stage_1"


def test_a_tracker_failing_mid_run_is_told_once_and_training_goes_on(
        tiny_toml: Path, tmp_path: Path, mlflow_env: pytest.MonkeyPatch) -> None:
    """The MLflow store disappears after the first epoch (as a full or lost disk would
    make it fail): one note, and every checkpoint and row of metrics.csv is written."""
    pytest.importorskip("mlflow")
    from slt_cli.cfg.config import load_config, with_overrides

    store = tmp_path / "store"
    mlflow_env.setenv("MLFLOW_TRACKING_URI", store.as_uri())

    class Saboteur(RecordingReporter):
        def epoch_done(self, metrics: EpochMetrics) -> None:
            super().epoch_done(metrics)
            if len(self.named("epoch_done")) == 1:
                for run in store.glob("[0-9]*/*/"):  # the run's folder becomes a file
                    shutil.rmtree(run)
                    run.write_text("not a folder", encoding="utf-8")

    config = with_overrides(load_config(tiny_toml), run_log_to="mlflow", stage_epochs=2)
    reporter = Saboteur()
    result = Trainer(config, checkpoint_dir=tmp_path / "ck", device="cpu",
                     reporter=reporter).train(force=True)
    notes = [note for note in reporter.named("note") if "MLflow" in note]
    assert len(notes) == 1 and notes[0].startswith("MLflow logging stopped: ")
    assert notes[0].endswith("training goes on (checkpoints and metrics.csv are kept)")
    assert [stage.checkpoint for stage in result.stages] == ["best_model_stage_1",
                                                             "best_model_stage_2"]
    assert len(_rows(tmp_path / "ck")) == 2 + 3  # stage 2 has its epoch 0


def test_a_resumed_run_carries_on_its_tensorboard_folder_and_mlflow_run(
        tiny_toml: Path, tmp_path: Path, mlflow_env: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from slt_cli.cfg.config import load_config, with_overrides
    from slt_cli.errors import RunInterrupted

    store = tmp_path / "store"
    mlflow_env.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    folder = tmp_path / "ck"
    config = with_overrides(load_config(tiny_toml), run_log_to="tensorboard+mlflow")
    trainer = Trainer(config, checkpoint_dir=folder, device="cpu")

    class StopAfterFirstEpoch(RecordingReporter):
        def epoch_done(self, metrics: EpochMetrics) -> None:
            trainer.request_stop()  # as Ctrl-C does: the next batch stops the run

    trainer.reporter = StopAfterFirstEpoch()
    with pytest.raises(RunInterrupted):
        trainer.train(force=True)
    Trainer(load_config(), checkpoint_dir=folder, device="cpu").resume("train")

    rows = _rows(folder)
    [run_id] = {row["run_id"] for row in rows}
    client = _mlflow_client(store.as_uri())
    [run] = client.search_runs([client.get_experiment_by_name("slt").experiment_id])
    assert (run.info.run_name, run.info.status) == (run_id, "FINISHED")
    [board] = (folder / "tensorboard").iterdir()
    events = EventAccumulator(str(board), size_guidance={"scalars": 0})
    events.Reload()
    for stage in ("1_baseline", "2_augmentation"):
        logged = [(int(row["epoch"]), float(row["val_accuracy"])) for row in rows
                  if f"{row['stage_idx']}_{row['stage_name']}" == stage]
        assert len(logged) == (2 if stage == "1_baseline" else 3)  # each epoch once
        key = f"stage_{stage}/val_accuracy"
        assert [(point.step, point.value)
                for point in client.get_metric_history(run.info.run_id, key)] == logged
        assert [(point.step, pytest.approx(point.value, rel=1e-6))
                for point in events.Scalars(key)] == logged


def test_a_store_that_cannot_open_stops_the_run_before_it_trains(
        tiny_toml: Path, tmp_path: Path, mlflow_env: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    mlflow_env.setenv("MLFLOW_TRACKING_URI", (blocker / "mlruns").as_uri())
    result = slt("train", "--config", str(tiny_toml), *QUICK, "--log-to", "mlflow",
                 "--checkpoint-dir", str(tmp_path / "ck"))
    assert result.exit_code == 2
    store = (blocker / "mlruns").as_uri()
    assert result.stderr.startswith(f"error: cannot log to MLflow at {store}: ")
    assert "--log-to none" in result.stderr
    assert not list((tmp_path / "ck").glob("*.safetensors"))


@pytest.mark.parametrize("log_to", ["tensorboard", "mlflow"])
def test_a_store_that_cannot_open_moves_none_of_the_earlier_files(
        tiny_toml: Path, tmp_path: Path, mlflow_env: pytest.MonkeyPatch, log_to: str) -> None:
    """Before, ``train`` archived the earlier run's checkpoints, then found the store
    unusable: exit 2 with the folder's checkpoints gone to archive/."""
    pytest.importorskip("tensorboard" if log_to == "tensorboard" else "mlflow")
    folder = tmp_path / "ck"
    assert slt("train", "--config", str(tiny_toml), *QUICK, "--checkpoint-dir",
               str(folder)).exit_code == 0
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    if log_to == "tensorboard":  # not slt's folder: it refuses to write there
        (folder / "tensorboard").write_text("mine", encoding="utf-8")
        before["tensorboard"] = b"mine"
    else:
        (tmp_path / "a-file").write_text("", encoding="utf-8")
        mlflow_env.setenv("MLFLOW_TRACKING_URI", (tmp_path / "a-file" / "mlruns").as_uri())
    result = slt("train", "--config", str(tiny_toml), *QUICK, "--log-to", log_to,
                 "--checkpoint-dir", str(folder))
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    assert "moved" not in result.stderr and not (folder / "archive").exists()
    after = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    assert {name: data for name, data in after.items() if name in before} == before
    assert {name for name in after if name not in before} <= {".slt.lock", ".slt-index"}


@pytest.mark.parametrize(("log_to", "label", "package", "extra"), [
    ("tensorboard", "TensorBoard", "tensorboard", "tensorboard"),
    ("mlflow+tensorboard", "MLflow", "mlflow-skinny", "mlflow"),  # the first one missing
])
def test_a_missing_extra_is_one_error_before_training(
        tiny_toml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_to: str,
        label: str, package: str, extra: str) -> None:
    for module in ("tensorboard", "mlflow"):
        monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    result = slt("train", "--config", str(tiny_toml), *QUICK, "--log-to", log_to,
                 "--checkpoint-dir", str(tmp_path / "ck"))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"error: logging to {label} ([run] log_to, --log-to) needs {package}, which is not "
        "installed")
    assert f"pip install 'slt[{extra}]'" in result.stderr
    assert not (tmp_path / "ck").exists()


def test_log_to_is_checked_like_every_setting(tiny_toml: Path, tmp_path: Path) -> None:
    flag = slt("train", "--config", str(tiny_toml), "--log-to", "tensorbord")
    assert flag.exit_code == 2
    assert ("log_to: must be none, tensorboard, mlflow or tensorboard+mlflow (both), got "
            "'tensorbord'") in flag.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\nlog_to = "mlflow+mlflow"\nbatch_size = 0\n', encoding="utf-8")
    result = slt("continue", "best_model_stage_1", "--type", "fine_tune", "--config", str(bad))
    assert result.exit_code == 2
    assert f"{bad}: run.batch_size: must be > 0" in result.stderr  # every problem at once
    assert f"{bad}: run.log_to: names a tracker twice: 'mlflow+mlflow'" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["list"], ["train", "--help"]])
def test_commands_that_do_not_train_import_no_tracker(args: list[str]) -> None:
    code = (f"import sys; from slt_cli.cli import main; sys.argv = ['slt', *{args!r}];\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'tensorboard', 'mlflow') if m in sys.modules]\n"
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
