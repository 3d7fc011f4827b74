"""Every kind of bad input ends with exit status 2 (1 for a machine fault), one or two
plain lines, no traceback, and leaves what was saved untouched.

`python benchmarks/bad_inputs.py` prints this matrix as a table."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from slt_cli.cli import app
from tests.conftest import TINY_TOML


def npz(path: str, **change: object) -> Callable[[Path], list[str]]:
    """A small valid .npz with ``change`` applied; the case trains on it."""

    def make(work: Path) -> list[str]:
        rng = np.random.default_rng(0)
        arrays: dict[str, object] = {
            "x": rng.normal(size=(40, 10, 3, 2)).astype(np.float32), "y": np.arange(40) % 4,
            "split": np.array((["train"] * 4 + ["val"]) * 8)}  # every class in both
        arrays.update(change)
        np.savez(work / path, **{k: v for k, v in arrays.items() if v is not None})
        return ["train", "--config", "tiny.toml", "--data", path, "--checkpoint-dir", "other"]

    return make


def toml(text: str) -> Callable[[Path], list[str]]:
    def make(work: Path) -> list[str]:
        (work / "bad.toml").write_text(text)
        return ["train", "--config", "bad.toml", "--checkpoint-dir", "other"]

    return make


def args(*words: str) -> Callable[[Path], list[str]]:
    return lambda work: list(words)


def tamper_weights(work: Path) -> list[str]:
    path = work / "checkpoints" / "best_model_stage_1.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x55
    path.write_bytes(bytes(blob))
    return ["evaluate", "best_model_stage_1"]


def mistype_sidecar(work: Path) -> list[str]:
    path = work / "checkpoints" / "best_model_stage_1.json"
    record = json.loads(path.read_text())
    record["val_accuracy"] = "high"
    path.write_text(json.dumps(record))
    return ["evaluate", "best_model_stage_1"]


def edit_sidecar(keys: list[str], value: object) -> Callable[[Path], list[str]]:
    """A hand edit of stage 1's sidecar: the value at ``keys`` replaced (None: removed)."""

    def make(work: Path) -> list[str]:
        path = work / "checkpoints" / "best_model_stage_1.json"
        record = json.loads(path.read_text())
        table = record
        for key in keys[:-1]:
            table = table[key]
        table.pop(keys[-1]) if value is None else table.__setitem__(keys[-1], value)
        path.write_text(json.dumps(record))
        return ["continue", "best_model_stage_1", "--type", "fine_tune"]

    return make


def foreign_weights(work: Path) -> list[str]:
    import torch
    from safetensors.torch import save_file

    path = work / "checkpoints" / "best_model_stage_1.safetensors"
    save_file({"stem.weight": torch.zeros(3, 3)}, str(path))
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    record["weights_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(record))
    return ["evaluate", "best_model_stage_1"]


def file_as_folder(work: Path) -> list[str]:
    (work / "taken").write_text("a file, not a folder")
    return ["train", "--config", "tiny.toml", "--checkpoint-dir", "taken"]


def existing(path: str, *words: str) -> Callable[[Path], list[str]]:
    """``words`` run with a user's file already at ``path``."""

    def make(work: Path) -> list[str]:
        (work / path).write_text("a user's file")
        return list(words)

    return make


def linked(folder: str, *words: str) -> Callable[[Path], list[str]]:
    """``words`` run with checkpoints/``folder`` a symbolic link to a folder elsewhere."""

    def make(work: Path) -> list[str]:
        (work / "elsewhere").mkdir()
        (work / "checkpoints" / folder).symlink_to(work / "elsewhere")
        return list(words)

    return make


EXPORT = ("export", "best_model_stage_1", "--format", "torchscript", "--samples", "2")
CONVERT = ("data", "convert", "synthetic:classes=3,signers=6,repeats=2,frames=8")

# (what, how to make it, exit status, words the user reads)
CASES: list[tuple[str, Callable[[Path], list[str]], int, str]] = [
    ("malformed TOML", toml("[run\n"), 2, "bad.toml: not valid TOML"),
    ("unknown key in TOML", toml(TINY_TOML.replace("seed = 0", "seeed = 0")), 2,
     "bad.toml: run.seeed: unknown key; expected one of: seed,"),
    ("wrong type in TOML", toml(TINY_TOML.replace("seed = 0", 'seed = "zero"')), 2,
     "bad.toml: run.seed: must be an integer, got a string"),
    ("impossible value in TOML", toml(TINY_TOML.replace("epochs = 2\nlr = 3e-3",
                                                        "epochs = 0\nlr = 3e-3")), 2,
     "bad.toml: stages[0].epochs: must be > 0"),
    ("unknown stage name", args("train", "--config", "tiny.toml", "--stages", "polish"), 2,
     "--stages 'polish': no stage 'polish'"),
    ("stage range out of bounds", args("train", "--config", "tiny.toml", "--stages", "2-7"), 2,
     "--stages '2-7': no stage 7; the config has 1..2"),
    ("missing data file", args("train", "--config", "tiny.toml", "--data", "gone.npz"), 2,
     "gone.npz: no such data file"),
    ("empty data file", lambda w: (w / "empty.npz").write_bytes(b"") or
     ["train", "--config", "tiny.toml", "--data", "empty.npz"], 2, "not a readable .npz file"),
    ("x of the wrong shape", npz("shape.npz", x=np.zeros((40, 10, 2), np.float32)), 2,
     "'x' must be a float array (N, T, J, C), got float32 (40, 10, 2)"),
    ("x of the wrong dtype", npz("dtype.npz", x=np.zeros((40, 10, 3, 2), np.int64)), 2,
     "'x' must be a float array (N, T, J, C), got int64"),
    ("label out of range", npz("labels.npz", classes=np.array(["a", "b", "c"])), 2,
     "'y' holds class 3 but 'classes' names only 3"),
    ("only empty sequences", npz("nan.npz", x=np.full((40, 10, 3, 2), np.nan, np.float32)), 2,
     "no sequence holds any landmark (all NaN or exactly zero)"),
    ("checkpoint folder is a file", file_as_folder, 2, "checkpoint folder taken is a file"),
    ("unknown checkpoint", args("evaluate", "best_model_stage_9"), 2,
     "no checkpoint named 'best_model_stage_9'"),
    ("a path as checkpoint name", args("continue", "../../etc/passwd", "--type", "fine_tune"),
     2, "'../../etc/passwd' is not a checkpoint name"),
    ("tampered weights", tamper_weights, 2, "do not match the sidecar's SHA-256"),
    ("mistyped sidecar", mistype_sidecar, 2,
     "sidecar key 'val_accuracy': must be a finite number, got a string"),
    ("sidecar with a string seed", edit_sidecar(["config", "run", "seed"], "7"), 2,
     "best_model_stage_1.json: sidecar key 'config.run.seed': must be an integer, got a string"),
    ("sidecar of an unknown model", edit_sidecar(["model", "name"], "resnet"), 2,
     "sidecar key 'model.name': unknown model 'resnet'"),
    ("sidecar without its data", edit_sidecar(["config", "data"], None), 2,
     "sidecar key 'config.data': must be a table"),
    ("weights that do not fit the model", foreign_weights, 2,
     "best_model_stage_1: weights do not fit the network its sidecar describes"),
    ("data of another layout", args("evaluate", "best_model_stage_1", "--data",
                                    "synthetic:classes=5,signers=6"), 2,
     "does not fit checkpoint best_model_stage_1"),
    ("unknown device", args("train", "--config", "tiny.toml", "--device", "tpu"), 2,
     "unknown device 'tpu'"),
    ("resume with nothing to resume", args("train", "--resume", "--checkpoint-dir", "other"), 2,
     "nothing to resume in other"),
    ("export over a user's file", existing("model.pt", *EXPORT, "--out", "model.pt"), 2,
     "model.pt exists; slt export does not replace a file without --force"),
    ("export into the resume folder", args(*EXPORT, "--out", "checkpoints/resume/state.json"),
     2, "exports do not go into the checkpoint folder itself"),
    ("convert over a user's file", existing("data.npz", *CONVERT, "data.npz"), 2,
     "data.npz exists; slt data convert does not replace a file without --overwrite"),
    ("archive folder is a link", linked("archive", "train", "--config", "tiny.toml", "--stages",
                                        "1"), 2, "checkpoints/archive is a symbolic link"),
    ("exports folder is a link", linked("exports", *EXPORT), 2,
     "checkpoints/exports is a symbolic link"),
]


@pytest.fixture
def work(tiny_toml: Path) -> Path:
    """The cwd, holding tiny.toml and a trained stage 1 in ./checkpoints."""
    here = Path.cwd()
    (here / "tiny.toml").write_text(tiny_toml.read_text())
    done = CliRunner().invoke(app, ["train", "--config", "tiny.toml", "--stages", "1"])
    assert done.exit_code == 0, done.output
    return here


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("what", "make", "status", "message"), CASES,
                         ids=[case[0] for case in CASES])
def test_bad_input(work: Path, what: str, make: Callable[[Path], list[str]], status: int,
                   message: str) -> None:
    arguments = make(work)
    before = snapshot(work / "checkpoints")
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == status, result.output
    assert message in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) <= 2 + result.stderr.count(".toml: ")
    assert snapshot(work / "checkpoints") == before  # nothing saved was changed
