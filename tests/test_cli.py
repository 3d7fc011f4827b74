from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.main import get_command
from typer.testing import CliRunner

from slt_cli.cli import app
from slt_cli.store.checkpoints import read_sidecar
from tests.cli import slt


@pytest.fixture
def trained(tiny_toml: Path) -> Path:
    """A finished two-stage run in ./checkpoints, made through the CLI."""
    result = slt("train", "--config", str(tiny_toml), "--force")
    assert result.exit_code == 0, result.output
    return Path("checkpoints")


def test_train_through_the_cli_prints_progress_and_a_summary(trained: Path) -> None:
    # CliRunner's output is no terminal, so progress comes as plain lines.
    result = slt("list", "--json")
    names = [r["name"] for r in json.loads(result.stdout)]
    assert sorted(names) == ["best_model_stage_1", "best_model_stage_2", "stage_1_baseline",
                             "stage_2_augmentation"]


def test_train_output_has_epoch_lines_and_a_stage_table(tiny_toml: Path) -> None:
    result = slt("train", "--config", str(tiny_toml), "--stages", "1", "--epochs-per-stage", "1")
    assert result.exit_code == 0, result.output
    assert "stage 1 · baseline" in result.stderr
    assert "epoch  1/1" in result.stderr and "val acc" in result.stderr
    assert "best_model_stage_1" in result.stdout and "baseline" in result.stdout


def test_list_table_and_empty_folder(trained: Path) -> None:
    result = slt("list")
    assert result.exit_code == 0
    assert "best_model_stage_2" in result.stdout and "augmentation" in result.stdout
    empty = slt("list", "--checkpoint-dir", "nowhere")
    assert empty.exit_code == 0 and "no checkpoints in nowhere" in empty.stderr


def test_analyze_json_matches_the_sidecars(trained: Path) -> None:
    result = slt("analyze", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    first, second = (read_sidecar(trained, f"best_model_stage_{i}") for i in (1, 2))
    rows = report["stages"]
    assert [r["stage_idx"] for r in rows] == [1, 2]
    assert rows[1]["val_accuracy"] == second.val_accuracy
    assert rows[1]["accuracy_change"] == pytest.approx(
        second.val_accuracy - first.val_accuracy)
    assert rows[1]["loss_change"] == pytest.approx(second.val_loss - first.val_loss)
    assert report["total"]["loss_reduction_pct"] == pytest.approx(
        (first.val_loss - second.val_loss) / first.val_loss * 100)
    assert report["total"]["accuracy_gain_pct"] == pytest.approx(
        (second.val_accuracy - first.val_accuracy) * 100)
    table = slt("analyze", "--table")
    assert table.exit_code == 0 and "stage-by-stage" in table.stdout
    assert "total: loss reduction" in table.stdout


def test_continue_and_evaluate(trained: Path, tiny_toml: Path) -> None:
    result = slt("continue", "best_model_stage_2", "--type", "fine_tune", "--config",
                 str(tiny_toml))
    assert result.exit_code == 0, result.output
    assert read_sidecar(trained, "best_model_stage_2_fine_tune").parent == "best_model_stage_2"
    scored = slt("evaluate", "best_model_stage_2", "--split", "test", "--json")
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert {"loss", "accuracy", "top5_accuracy", "per_class"} <= set(report)
    assert 0.0 <= report["accuracy"] <= report["top5_accuracy"] <= 1.0
    assert len(report["per_class"]) == 4
    # The generated test split holds whole signers: each is scored on its own, and the
    # signers' accuracies weighted by their (equal) sizes make up the split's.
    people = report["per_signer"]
    assert len(people) == 2
    assert sum(people.values()) / len(people) == pytest.approx(report["accuracy"])
    assert report["worst_signer"]["accuracy"] == min(people.values())
    by = slt("evaluate", "best_model_stage_2", "--split", "test", "--by", "signer")
    assert by.exit_code == 0 and "accuracy by signer" in by.stdout and "← worst" in by.stdout
    table = slt("evaluate", "best_model_stage_2", "--split", "test")
    # of 4 classes every clip is in the top 5: the table leaves a line that says nothing
    assert table.exit_code == 0 and "top-5 accuracy" not in table.stdout
    assert report["top5_accuracy"] == 1.0  # --json keeps the key
    assert "weakest signers" in table.stdout


def test_signers_are_shown_by_the_names_the_data_gives(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    people = np.repeat(["ann", "bob", "cy", "dana", "eve"], 6)
    y = np.tile([0, 1], 15)
    split = np.where(np.isin(people, ["dana", "eve"]), "test",
                     np.where(people == "cy", "val", "train"))
    np.savez(tmp_path / "named.npz", x=rng.normal(size=(30, 6, 3, 2)).astype(np.float32), y=y,
             signer=people, split=split)
    assert slt("train", "--data", str(tmp_path / "named.npz"), "--stages", "1",
               "--epochs-per-stage", "1").exit_code == 0
    scored = slt("evaluate", "best_model_stage_1", "--split", "test", "--json")
    report = json.loads(scored.stdout)
    assert set(report["per_signer"]) == {"dana", "eve"}
    assert report["worst_signer"]["signer"] in ("dana", "eve")
    by = slt("evaluate", "best_model_stage_1", "--split", "test", "--by", "signer")
    assert "dana" in by.stdout and "eve" in by.stdout


def test_unknown_checkpoint_names_the_closest(trained: Path, tiny_toml: Path) -> None:
    result = slt("continue", "best_model_stage_9", "--type", "exploration",
                 "--config", str(tiny_toml))
    assert result.exit_code == 2
    assert "error: no checkpoint named 'best_model_stage_9'" in result.stderr
    assert "Did you mean: best_model_stage_2, best_model_stage_1?" in result.stderr
    assert "Traceback" not in result.output
    path = slt("evaluate", "../../etc/passwd")
    assert path.exit_code == 2 and "is not a checkpoint name" in path.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--stages", "7"], "--stages '7': no stage 7"),
    (["train", "--data", "mnist"], "unknown data source 'mnist'"),
    (["train", "--data", "missing.npz"], "missing.npz: no such data file"),
    (["train", "--config", "absent.toml"], "absent.toml: cannot read config"),
    (["train", "--device", "tpu"], "unknown device 'tpu'"),
    (["evaluate", "best_model_stage_1", "--split", "dev"], "--split 'dev'"),
    (["analyze"], "no best_model_stage_N checkpoints"),
])
def test_user_mistakes_exit_2_with_a_plain_message(args: list[str], message: str) -> None:
    result = slt(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("command", ["list", "analyze"])
def test_a_checkpoint_folder_that_is_a_file_is_refused(command: str, tmp_path: Path) -> None:
    (tmp_path / "ckpt").write_text("mine\n")
    result = slt(command, "--checkpoint-dir", str(tmp_path / "ckpt"))
    assert result.exit_code == 2
    assert f"checkpoint folder {tmp_path / 'ckpt'} is a file, not a folder" in result.stderr
    assert (tmp_path / "ckpt").read_text() == "mine\n"


def test_bad_config_lists_every_problem_and_loses_nothing(trained: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in trained.iterdir())
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nseeed = 1\n[[stages]]\nname = 'x'\nepochs = 0\n")
    result = slt("train", "--config", str(bad))
    assert result.exit_code == 2
    assert f"{bad}: run.seeed: unknown key" in result.stderr
    assert f"{bad}: stages[0].epochs: must be > 0" in result.stderr
    assert sorted(p.name for p in trained.iterdir()) == before


def test_usage_errors_exit_2() -> None:
    assert slt("train", "--no-such-flag").exit_code == 2
    assert slt("continue", "best_model_stage_1").exit_code == 2  # --type is required


def test_every_command_and_option_has_help() -> None:
    group = get_command(app)
    assert isinstance(group, TyperGroup)
    for name, cmd in group.commands.items():
        assert cmd.help, f"{name} has no help"
        for param in cmd.params:
            if isinstance(param, TyperOption) and param.name != "help":
                assert param.help, f"{name} {param.opts} has no help"
            if isinstance(param, TyperArgument):
                assert param.help, f"{name} {param.name} has no help"
    assert slt("--version").stdout.startswith("slt 0.")


def test_help_texts_hold_no_angle_brackets_that_the_help_would_eat() -> None:
    """Typer's rich help drops ``<sign>`` as markup: "DIR/<signer>/<sign>" was shown as
    "DIR///". Placeholders are written in capitals (DIR/SIGNER/SIGN)."""
    import re

    def texts(command: object) -> list[tuple[str, str]]:
        found = [(command.name, command.help or "")]
        found += [(f"{command.name} {param.name}", param.help or "")
                  for param in command.params if getattr(param, "help", None)]
        for sub in getattr(command, "commands", {}).values():
            found += texts(sub)
        return found

    eaten = [(where, text) for where, text in texts(get_command(app))
             if re.search(r"<[a-z_]+>", text)]
    assert not eaten, eaten
    shown = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).stdout
    assert "DIR/SIGNER/SIGN/SEQUENCE" in shown


def test_list_does_not_import_torch(trained: Path) -> None:
    code = ("import sys; from slt_cli.cli import main; sys.argv = ['slt', 'list', '--json'];\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "best_model_stage_1" in done.stdout


@pytest.mark.parametrize("args", [["--help"], ["list"], ["analyze", "--json"], ["train", "--help"]])
def test_commands_that_do_not_train_never_import_torch(args: list[str]) -> None:
    code = (f"import sys; from slt_cli.cli import main; sys.argv = ['slt', *{args!r}];\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_precision_is_checked(tiny_toml: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--config", str(tiny_toml), "--precision", "fp8"])
    assert result.exit_code == 2
    assert "precision: must be one of auto, bf16, fp32" in result.stderr


def test_python_dash_m_runs_the_same_app() -> None:
    done = subprocess.run([sys.executable, "-m", "slt_cli", "--help"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and "smoke" in done.stdout


def test_smoke_passes_and_can_keep_its_files(tmp_path: Path) -> None:
    result = slt("smoke", "--epochs", "1", "--keep", str(tmp_path / "kept"))
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.stdout and "FAIL" not in result.stdout
    assert (tmp_path / "kept" / "best_model_stage_5.safetensors").is_file()


def test_every_name_of_the_python_api_resolves() -> None:
    import slt_cli

    for name in slt_cli.__all__:
        assert getattr(slt_cli, name) is not None, name
    with pytest.raises(AttributeError):
        slt_cli.no_such_name  # noqa: B018


def test_help_keeps_bracketed_text() -> None:
    # Rich markup would read "[default: ...]" and "[data]" as tags and drop them.
    shown = CliRunner().invoke(app, ["list", "--help"], terminal_width=200).stdout
    assert "[default: run.checkpoint_dir of the config" in shown
    shown = CliRunner().invoke(app, ["data", "inspect", "--help"], terminal_width=200).stdout
    assert "[data] settings" in shown


def test_notes_keep_bracketed_text() -> None:
    from rich.console import Console

    from slt_cli.show.progress import RichReporter

    console = Console(record=True, width=200)
    RichReporter(console).note("kept 56 of 75 landmarks; set [data] landmarks to change")
    assert "set [data] landmarks to change" in console.export_text()


def test_config_show_prints_what_a_run_uses_and_reads_back_the_same(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text("[run]\nseed = 7\n[[stages]]\nname = 'one'\nlr = 0.01\n"
                    "[[stages]]\nname = 'two'\nepochs = 2\n")
    shown = slt("config", "show", "--config", str(mine))
    assert shown.exit_code == 0, shown.output
    assert "seed = 7" in shown.stdout and shown.stdout.count("[[stages]]") == 2
    assert shown.stdout.count("lr = 0.01") == 2  # stage two inherits stage one's rate
    again = tmp_path / "shown.toml"
    again.write_text(shown.stdout)
    assert slt("config", "show", "--config", str(again)).stdout.splitlines()[1:] == \
        shown.stdout.splitlines()[1:]
    packaged = json.loads(slt("config", "show", "--defaults", "--json").stdout)
    assert [stage["name"] for stage in packaged["stages"]] == [
        "baseline", "augmentation", "regularization", "fine_tuning", "polishing"]
    assert packaged["stages"][4]["augment"] == packaged["stages"][1]["augment"]
    # what `train --folds K` records per fold is not a user's setting: not shown unset
    assert "folds" not in packaged["data"] and "fold" not in packaged["data"]
    assert "fold" not in shown.stdout
    assert "as JSON instead of stages.toml text" in slt("config", "show", "--help").stdout


def test_config_init_writes_the_packaged_file_and_never_overwrites(tmp_path: Path) -> None:
    from slt_cli.cfg.config import default_config_text

    target = tmp_path / "stages.toml"
    assert slt("config", "init", str(target)).exit_code == 0
    assert target.read_text() == default_config_text()
    target.write_text("# mine\n")
    refused = slt("config", "init", str(target))
    assert refused.exit_code == 2 and "exists; nothing was written" in refused.stderr
    assert target.read_text() == "# mine\n"
    assert slt("config", "init", str(target), "--force").exit_code == 0
    assert target.read_text() == default_config_text()


def test_a_stage_on_other_data_than_its_start_says_what_differs(trained: Path,
                                                                 tiny_toml: Path) -> None:
    """train reads --data from the config, not from the checkpoint it starts from: the
    refusal names the difference (before: "another model or data" and no more)."""
    other = "synthetic:classes=5,signers=6,repeats=3,frames=16"
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    result = slt("train", "--config", str(tiny_toml), "--stages", "2", "--data", other)
    assert result.exit_code == 2, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: best_model_stage_1 was trained with another model or "
                            "data than this config: data 'synthetic:classes=4,"), first
    assert f"'{other}' here" in first and "classes 4 there, 5 here" in first
    assert "train reads --data and [data] from the config" in result.stderr
    assert {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()} == before


def test_a_slow_task_reports_its_rate_in_digits_that_say_something(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Five clips in 22.6 s read "(0/s)" before; now "(0.22/s)"."""
    import io

    from rich.console import Console

    from slt_cli.show import progress

    clock = iter([100.0, 122.6])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    reporter = progress.RichReporter(Console(file=out, force_terminal=False, width=200))
    reporter.task_progress(task="clips", done=0, total=5, unit="clips")
    reporter.task_progress(task="clips", done=5, total=5, unit="clips")
    assert "clips: 5 clips in 22.6s (0.22/s)" in out.getvalue()


def test_accuracy_by_class_reads_classes_and_its_title_fits_the_table(
        trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    by = slt("evaluate", "best_model_stage_2", "--split", "test", "--by", "class")
    assert by.exit_code == 0, by.output
    assert "classs" not in by.stdout and "mean of 4 classes" in by.stdout
    lines = [line.rstrip() for line in by.stdout.splitlines()]  # rich pads a title
    title = lines.index("accuracy by class, weakest first")  # one line, not wrapped
    assert lines[title + 1].startswith("┏")
    signers = slt("evaluate", "best_model_stage_2", "--split", "test", "--by", "signer")
    assert "accuracy by signer, weakest first" in [
        line.rstrip() for line in signers.stdout.splitlines()]
    assert "mean of 2 signers" in signers.stdout
