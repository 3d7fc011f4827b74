"""slt deletes, moves or overwrites only files it can prove it wrote: its own names, in
its own folders, never through a symbolic link; a user's file is replaced only with an
explicit flag. Output that is cut short or is not a finite number stays well-formed."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slt_cli.cli import app
from tests.cli import slt
from tests.conftest import TINY_TOML


def dead_temp(final: str) -> str:
    """A temporary file of slt's scheme left by a process that is gone."""
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    return f".{final}.slt-{dead}-0123abcd.tmp"


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both stages of TINY_TOML, trained once for the module; tests work on copies."""
    root = tmp_path_factory.mktemp("trained")
    (root / "tiny.toml").write_text(TINY_TOML)
    done = CliRunner().invoke(app, ["train", "--config", str(root / "tiny.toml"), "--force",
                                    "--checkpoint-dir", str(root / "ck")])
    assert done.exit_code == 0, done.output
    return root


@pytest.fixture
def work(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained folder as ./ck, with ./tiny.toml; the cwd is ``tmp_path``."""
    shutil.copytree(trained / "ck", tmp_path / "ck")
    shutil.copy(trained / "tiny.toml", tmp_path / "tiny.toml")
    os.chdir(tmp_path)
    return tmp_path


def train(*extra: str):  # noqa: ANN201
    return slt("train", "--config", "tiny.toml", "--checkpoint-dir", "ck", *extra)


# --- the resume folder and temporary files --------------------------------------------


def test_a_finished_run_removes_only_its_own_resume_files(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    os.chdir(tmp_path)
    (tmp_path / "ck" / "resume").mkdir(parents=True)
    (tmp_path / "ck" / "resume" / "notes.txt").write_text("mine")
    assert train("--stages", "1", "--epochs-per-stage", "1").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "ck" / "resume").iterdir()) == ["notes.txt"]
    (tmp_path / "ck" / "resume" / "notes.txt").unlink()
    assert train("--stages", "1", "--epochs-per-stage", "1").exit_code == 0
    assert not (tmp_path / "ck" / "resume").exists()  # empty: the folder goes too


def test_readers_delete_nothing_and_work_in_a_read_only_folder(work: Path) -> None:
    ck = work / "ck"
    (ck / ".draft.tmp").write_text("another program's")
    (ck / dead_temp("best_model_stage_1.safetensors")).write_bytes(b"a killed run's")
    before = tree(ck)
    ck.chmod(0o555)
    try:
        for args in (["list"], ["list", "--json"], ["analyze"],
                     ["evaluate", "best_model_stage_1"]):
            result = slt(*args, "--checkpoint-dir", "ck")
            assert result.exit_code == 0, (args, result.output)
    finally:
        ck.chmod(0o755)
    assert tree(ck) == before


def test_a_writing_command_removes_only_slts_own_leftovers(work: Path) -> None:
    ck = work / "ck"
    (ck / ".draft.tmp").write_text("another program's")
    (ck / ".best_model_stage_1.json.abc123.tmp").write_text("not slt's naming scheme")
    (ck / dead_temp("best_model_stage_1.safetensors")).write_bytes(b"a killed run's")
    assert train("--stages", "2", "--epochs-per-stage", "1").exit_code == 0
    assert (ck / ".draft.tmp").exists() and (ck / ".best_model_stage_1.json.abc123.tmp").exists()
    assert not list(ck.glob(".*.slt-*.tmp"))


def test_checkpoints_and_exports_follow_the_umask(tmp_path: Path, trained: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    os.chdir(tmp_path)
    previous = os.umask(0o027)
    try:
        assert train("--stages", "1", "--epochs-per-stage", "1").exit_code == 0
        exported = slt("export", "best_model_stage_1", "--format", "torchscript",
                       "--samples", "2", "--checkpoint-dir", "ck")
        assert exported.exit_code == 0, exported.output
    finally:
        os.umask(previous)
    for path in [*(tmp_path / "ck").glob("*_stage_1*"), *(tmp_path / "ck" / "exports").iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o640, path


# --- replacing files ---------------------------------------------------------------------


def export(*extra: str):  # noqa: ANN201
    return slt("export", "best_model_stage_1", "--format", "torchscript", "--samples", "2",
               "--checkpoint-dir", "ck", *extra)


def test_export_replaces_an_existing_file_only_with_force(work: Path) -> None:
    (work / "important.txt").write_text("keep me")
    (work / "important.txt.json").write_text("{}")
    refused = export("--out", "important.txt")
    assert refused.exit_code == 2
    assert refused.stderr.startswith(
        "error: important.txt exists; slt export does not replace a file without --force")
    assert (work / "important.txt").read_text() == "keep me"
    (work / "important.txt").unlink()
    only_json = export("--out", "important.txt")  # its .json alone is protected too
    assert only_json.exit_code == 2 and "important.txt.json exists" in only_json.stderr
    assert export("--out", "important.txt", "--force").exit_code == 0
    assert json.loads((work / "important.txt.json").read_text())["checkpoint"] == (
        "best_model_stage_1")


@pytest.mark.parametrize("out", ["ck/resume/state.json", "ck/archive/m.pt", "ck/m.pt",
                                 "ck/best_model_stage_1.safetensors", "ck/fold_1/m.pt"])
def test_export_never_writes_among_the_checkpoint_folders_own_files(work: Path,
                                                                   out: str) -> None:
    before = tree(work / "ck")
    result = export("--out", out, "--force")
    assert result.exit_code == 2
    assert "exports do not go into the checkpoint folder itself" in result.stderr
    assert tree(work / "ck") == before


# Every command that writes a file the user names: (its arguments before the output,
# the flag that lets it replace a file, what it does then); the output goes last.
OUTPUTS = {
    "config init": (["config", "init"], "--force"),
    "data convert": (["data", "convert", "synthetic:classes=3,signers=6,repeats=2,frames=8"],
                     "--overwrite"),
    "export": (["export", "best_model_stage_1", "--format", "torchscript", "--checkpoint-dir",
                "ck", "--out"], "--force"),
    "analyze --plot": (["analyze", "--checkpoint-dir", "ck", "--plot"], "--force"),
    "evaluate --confusion": (["evaluate", "best_model_stage_1", "--checkpoint-dir", "ck",
                              "--confusion"], "--force"),
    "data inspect --plot": (["data", "inspect", "synthetic:classes=3,signers=6,repeats=2",
                             "--plot"], "--force"),
    "tune --promote": (["tune", "--config", "tiny.toml", "--checkpoint-dir", "ck",
                        "--promote"], "--force"),
    "tune --plot": (["tune", "--config", "tiny.toml", "--checkpoint-dir", "ck", "--plot"],
                    "--force"),
}


def _suffix(command: str) -> str:
    return {"config init": ".toml", "data convert": ".npz", "export": ".pt",
            "tune --promote": ".toml"}.get(command, ".png")


@pytest.mark.parametrize("command", sorted(OUTPUTS))
def test_an_existing_output_is_replaced_only_with_its_flag(work: Path, command: str) -> None:
    args, flag = OUTPUTS[command]
    out = work / f"mine{_suffix(command)}"
    out.write_text("keep me")
    refused = slt(*args, str(out))
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.startswith("error: ") and "exists" in refused.stderr.splitlines()[0]
    assert flag in refused.stderr
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("command", sorted(OUTPUTS))
@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_a_link_or_a_fifo_as_output_is_never_written_even_with_the_flag(
        work: Path, command: str, kind: str) -> None:
    args, flag = OUTPUTS[command]
    out = work / f"out{_suffix(command)}"
    target = work / "target.txt"
    target.write_text("keep me")
    if kind == "link":
        out.symlink_to(target)
    else:
        os.mkfifo(out)
    refused = slt(*args, str(out), flag)
    assert refused.exit_code == 2, refused.output
    first = refused.stderr.splitlines()[0]
    assert first == (f"error: {out} is a symbolic link; slt writes only regular files, never "
                     "through a link" if kind == "link" else
                     f"error: {out} is a FIFO, not a file slt may replace"), first
    assert out.is_symlink() if kind == "link" else stat.S_ISFIFO(out.lstat().st_mode)
    assert target.read_text() == "keep me"


def test_distill_never_replaces_an_export_it_did_not_write(work: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    (work / "ck" / "exports").mkdir(exist_ok=True)
    theirs = work / "ck" / "exports" / "student.onnx"
    theirs.write_text("keep me")
    refused = slt("distill", "best_model_stage_1", "--name", "student", "--epochs", "1",
                  "--config", "tiny.toml", "--checkpoint-dir", "ck")
    assert refused.exit_code == 2, refused.output
    assert "student.onnx exists" in refused.stderr.splitlines()[0]
    assert theirs.read_text() == "keep me"
    assert not (work / "ck" / "student.json").exists()  # refused before any training


def test_convert_replaces_an_existing_file_only_with_overwrite(work: Path) -> None:
    spec = "synthetic:classes=3,signers=6,repeats=2,frames=8"
    (work / "data.npz").write_text("keep me")
    refused = slt("data", "convert", spec, "data.npz")
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: data.npz exists; slt data convert does not "
                                     "replace a file without --overwrite")
    assert (work / "data.npz").read_text() == "keep me"
    assert slt("data", "convert", spec, "data.npz", "--overwrite").exit_code == 0
    assert (work / "data.npz").read_bytes()[:2] == b"PK"


def test_an_interrupted_convert_leaves_no_partial_file(work: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from slt_cli.data import summary

    real = summary.raw_arrays

    def interrupted_midway(raw):  # noqa: ANN001, ANN202
        shape, blocks, arrays = real(raw)

        def then_ctrl_c():  # noqa: ANN202
            yield from blocks
            raise KeyboardInterrupt

        return shape, then_ctrl_c(), arrays

    monkeypatch.setattr(summary, "raw_arrays", interrupted_midway)
    result = slt("data", "convert", "synthetic:classes=3,signers=6,repeats=2,frames=8",
                 "data.npz")
    assert result.exit_code == 130
    assert result.stderr == "error: interrupted; no partial .npz file is left\n"
    assert not [p.name for p in work.iterdir() if "data.npz" in p.name]


# --- symbolic links -------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["archive", "resume", "exports"])
def test_a_linked_bookkeeping_folder_is_refused(work: Path, folder: str) -> None:
    (work / "elsewhere").mkdir()
    (work / "ck" / folder).symlink_to(work / "elsewhere")
    before = tree(work / "ck")
    result = export() if folder == "exports" else train("--stages", "1")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: ck/{folder} is a symbolic link")
    assert tree(work / "ck") == before and not list((work / "elsewhere").iterdir())


def test_a_linked_lock_file_is_never_written_through(work: Path) -> None:
    (work / "precious.txt").write_text("keep me")
    (work / "ck" / ".slt.lock").unlink()
    (work / "ck" / ".slt.lock").symlink_to(work / "precious.txt")
    result = train("--stages", "1")
    assert result.exit_code == 2 and "ck/.slt.lock is a symbolic link" in result.stderr
    assert (work / "precious.txt").read_text() == "keep me"


# --- lineage ----------------------------------------------------------------------------


def test_retraining_a_stage_archives_what_was_trained_from_it(work: Path) -> None:
    ck = work / "ck"
    grown = slt("continue", "best_model_stage_2", "--type", "fine_tune", "--config", "tiny.toml",
                "--checkpoint-dir", "ck")
    assert grown.exit_code == 0, grown.output
    result = train("--stages", "1", "--epochs-per-stage", "1")
    assert result.exit_code == 0, result.output
    assert "moved 5 earlier checkpoint(s)" in result.stderr
    assert ("3 of them trained from the stages this run replaces (best_model_stage_2, "
            "stage_2_augmentation, best_model_stage_2_fine_tune)") in " ".join(
        result.stderr.split())
    listed = json.loads(slt("list", "--json", "--checkpoint-dir", "ck").stdout)
    assert sorted(r["name"] for r in listed) == ["best_model_stage_1", "stage_1_baseline"]
    analysis = json.loads(slt("analyze", "--json", "--checkpoint-dir", "ck").stdout)
    assert [row["stage_idx"] for row in analysis["stages"]] == [1]
    (archived,) = (ck / "archive").iterdir()
    assert len(list(archived.glob("*.json"))) == 5


# --- output ------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["list", "--json"], ["list"], ["analyze", "--json"]])
def test_a_closed_stdout_ends_the_command_quietly(work: Path, args: list[str]) -> None:
    process = subprocess.Popen([sys.executable, "-m", "slt_cli", *args, "--checkpoint-dir",
                                "ck"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert process.stdout is not None
    process.stdout.close()  # as `| head -1` does once it has its line
    _, err = process.communicate(timeout=60)
    assert process.returncode == 141 and err == b""


def test_json_output_has_null_for_numbers_that_are_not_finite(
        capsys: pytest.CaptureFixture[str]) -> None:
    from slt_cli.show import console

    console.print_json({"loss": math.nan, "gain": [math.inf, -math.inf, 1.5], "n": 2})
    assert json.loads(capsys.readouterr().out) == {"loss": None, "gain": [None, None, 1.5],
                                                   "n": 2}


def test_json_of_a_sidecar_holding_nan_is_still_json(work: Path) -> None:
    path = work / "ck" / "best_model_stage_2.json"
    record = json.loads(path.read_text())
    record["val_loss"] = math.nan  # json.dumps writes NaN, which json.loads reads back
    path.write_text(json.dumps(record))

    def refuse(word: str) -> float:
        raise AssertionError(f"{word} in --json output")

    for args in (["list", "--json"], ["analyze", "--json"]):
        result = slt(*args, "--checkpoint-dir", "ck")
        assert result.exit_code == 0, result.output
        json.loads(result.stdout, parse_constant=refuse)
