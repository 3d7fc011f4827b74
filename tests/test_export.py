"""``slt export``: TorchScript and ONNX files that take raw landmarks of any length and
compute what PyTorch computes; the metadata beside them; refusals that write nothing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slt_cli.store.checkpoints import read_sidecar
from slt_cli.use.inference import SequenceClassifier, load_model
from tests.cli import slt

runner = CliRunner()
MODEL = "best_model_stage_1"
LENGTHS = (1, 2, 5, 12, 40)  # the checkpoint resamples to 12 frames


def sequences(seed: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for length in LENGTHS:
        x = rng.normal(0.4, 0.3, size=(length, 53, 3)).astype(np.float32)
        x[rng.random((length, 53)) < 0.25] = np.nan
        out.append(x)
    return out


def pytorch_logits(folder: Path) -> list[np.ndarray]:
    wrapper = SequenceClassifier(load_model(folder, MODEL).classifier).eval()
    with torch.no_grad():
        return [wrapper(torch.from_numpy(x))[0].numpy() for x in sequences()]


def check_metadata(path: Path, folder: Path, fmt: str) -> None:
    metadata = json.loads(path.read_text(encoding="utf-8"))
    sidecar = read_sidecar(folder, MODEL)
    assert metadata["format"] == fmt and metadata["checkpoint"] == MODEL
    assert metadata["classes"] == list(sidecar.classes) == [f"sign_{k:03d}" for k in range(4)]
    assert metadata["input"]["shape"] == ["frames", 53, 3]  # z given, and dropped inside
    assert metadata["preprocessing"]["coordinates"] == "xy"
    assert metadata["preprocessing"]["steps"][0].startswith("x and y of each landmark")
    assert len(metadata["input"]["joints"]) == 53
    assert metadata["preprocessing"]["frames"] == 12 and metadata["preprocessing"]["motion"]
    # per-part normalisation inside the graph, hand positions appended there
    assert metadata["preprocessing"]["normalise"] == "parts"
    assert "left_hand_position, right_hand_position" in " ".join(
        metadata["preprocessing"]["steps"])
    assert [p["inputs"] for p in metadata["parity"]] == ["random", "test"]
    assert all(p["max_abs_diff"] < 1e-4 and p["top1_agreement"] == 1.0
               for p in metadata["parity"])


def test_torchscript_round_trip_with_any_length(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "signs.pt"
    result = slt("export", MODEL, "--format", "torchscript", "--out", str(out),
                 "--checkpoint-dir", str(tiny_checkpoint), "--samples", "16")
    assert result.exit_code == 0, result.output
    assert "random" in result.stdout and "test" in result.stdout
    assert f"wrote {out}" in result.stderr
    check_metadata(out.with_name("signs.pt.json"), tiny_checkpoint, "torchscript")
    with pytest.warns(DeprecationWarning):  # torch 2.13 deprecates TorchScript (still works)
        module = torch.jit.load(str(out))
    for x, expected in zip(sequences(), pytorch_logits(tiny_checkpoint), strict=True):
        with torch.no_grad():
            logits, probabilities = module(torch.from_numpy(x))
        assert logits.shape == (4,)
        assert np.abs(logits.numpy() - expected).max() < 1e-4
        assert abs(probabilities.sum().item() - 1) < 1e-5


def test_onnx_round_trip_with_any_length(tiny_checkpoint: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "signs.onnx"
    result = slt("export", MODEL, "--format", "onnx", "--out", str(out),
                 "--checkpoint-dir", str(tiny_checkpoint), "--samples", "16")
    assert result.exit_code == 0, result.output
    check_metadata(out.with_name("signs.onnx.json"), tiny_checkpoint, "onnx")
    graph = onnx.load(str(out)).graph
    (landmarks,) = graph.input
    dims = landmarks.type.tensor_type.shape.dim
    assert landmarks.name == "landmarks" and dims[0].dim_param and dims[1].dim_value == 53
    assert [o.name for o in graph.output] == ["logits", "probabilities"]
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for x, expected in zip(sequences(), pytorch_logits(tiny_checkpoint), strict=True):
        logits, probabilities = session.run(None, {"landmarks": x})
        assert np.abs(logits - expected).max() < 1e-4
        assert abs(probabilities.sum() - 1) < 1e-5


def test_default_path_is_an_exports_folder_slt_list_ignores(tiny_checkpoint: Path,
                                                             tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "checkpoints"))
    result = slt("export", MODEL, "--format", "torchscript", "--checkpoint-dir", str(folder),
                 "--samples", "4")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (folder / "exports").iterdir()) == [
        "best_model_stage_1.pt", "best_model_stage_1.pt.json"]
    listing = slt("list", "--checkpoint-dir", str(folder))
    assert listing.exit_code == 0 and "warning" not in listing.stderr
    assert not list(folder.glob("exports/.*"))  # no temporary file left behind
    (tmp_path / "deploy").mkdir()
    into = slt("export", MODEL, "--format", "torchscript", "--checkpoint-dir", str(folder),
               "--samples", "4", "--out", str(tmp_path / "deploy"))
    assert into.exit_code == 0, into.output
    assert (tmp_path / "deploy" / "best_model_stage_1.pt.json").is_file()


def test_without_its_data_the_export_checks_random_input_only(tiny_checkpoint: Path,
                                                              tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "checkpoints"))
    sidecar_file = folder / f"{MODEL}.json"
    sidecar = json.loads(sidecar_file.read_text(encoding="utf-8"))
    sidecar["config"]["data"]["source"] = str(tmp_path / "gone.npz")
    sidecar_file.write_text(json.dumps(sidecar), encoding="utf-8")
    result = slt("export", MODEL, "--format", "torchscript", "--checkpoint-dir", str(folder),
                 "--samples", "4", "--out", str(tmp_path / "m.pt"))
    assert result.exit_code == 0, result.output
    assert "no held-out check: the checkpoint's data cannot be read" in result.stderr
    metadata = json.loads((tmp_path / "m.pt.json").read_text(encoding="utf-8"))
    assert metadata["input"]["shape"] == ["frames", 53, 2]  # 275 features: 55 landmarks x (2+2+1)
    assert [p["inputs"] for p in metadata["parity"]] == ["random"]


def test_missing_onnx_extra_names_the_install_command(tiny_checkpoint: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    result = slt("export", MODEL, "--format", "onnx", "--out", str(tmp_path / "m.onnx"),
                 "--checkpoint-dir", str(tiny_checkpoint))
    assert result.exit_code == 2
    assert "error: ONNX export needs onnxruntime, which is not installed" in result.stderr
    assert "pip install 'slt[onnx]'" in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_file_that_disagrees_with_pytorch_is_not_written(
        tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slt_cli.use import export

    real = export.runner

    def off_by_a_little(fmt: str, blob: bytes):
        run = real(fmt, blob)
        return lambda x: run(x) + np.float32(0.01)

    monkeypatch.setattr(export, "runner", off_by_a_little)
    result = slt("export", MODEL, "--format", "torchscript", "--out", str(tmp_path / "m.pt"),
                 "--checkpoint-dir", str(tiny_checkpoint), "--samples", "4")
    assert result.exit_code == 1
    assert "the torchscript file disagrees with PyTorch by up to 1.00e-02" in result.stderr
    assert "nothing written" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "tflite"], "--format 'tflite': expected onnx or torchscript"),
    (["--format", "torchscript", "--out", "{folder}/m.pt"],
     "exports do not go into the checkpoint folder itself"),
    (["--format", "torchscript", "--samples", "100000000"], "less than or equal to 10000"),
])
def test_bad_export_requests_exit_2(tiny_checkpoint: Path, args: list[str],
                                    message: str) -> None:
    args = [a.replace("{folder}", str(tiny_checkpoint)) for a in args]
    result = slt("export", MODEL, *args, "--checkpoint-dir", str(tiny_checkpoint))
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tiny_checkpoint / "m.pt").exists()


def test_sigterm_while_onnx_traces_exits_143_not_a_failed_export(
        tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.export wraps what interrupts its tracing in errors of its own: a SIGTERM
    there is the run ending (143), not a network the exporter cannot take (2)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from slt_cli.commands import Terminated

    def interrupted_export(*args: object, **kwargs: object) -> None:
        try:
            raise Terminated()
        except Terminated as signal:
            raise RuntimeError("the exporter's own wrapping") from signal

    monkeypatch.setattr(torch.onnx, "export", interrupted_export)
    out = tmp_path / "m.onnx"
    result = slt("export", MODEL, "--format", "onnx", "--out", str(out), "--checkpoint-dir",
                 str(tiny_checkpoint))
    assert result.exit_code == 143, result.output
    assert result.stderr.startswith("error: terminated (SIGTERM)")
    assert "--format torchscript" not in result.stderr
    assert not out.exists()
