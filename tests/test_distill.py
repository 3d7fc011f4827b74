"""``slt distill``: the loss, that a student learns its teacher, budgets, lineage, bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.cli import slt
from tests.conftest import TINY_TOML


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with TINY_TOML's first stage trained (2 epochs) and the config."""
    root = tmp_path_factory.mktemp("taught")
    (root / "tiny.toml").write_text(TINY_TOML, encoding="utf-8")
    result = slt("train", "--config", str(root / "tiny.toml"), "--stages", "1",
                 "--checkpoint-dir", str(root / "ck"))
    assert result.exit_code == 0, result.output
    return root


def test_loss_is_cross_entropy_at_alpha_zero_and_kl_at_one() -> None:
    from slt_cli.run.teaching import distillation_loss

    torch.manual_seed(0)
    student, teacher = torch.randn(6, 5), torch.randn(6, 5)
    hard = F.cross_entropy(student, torch.arange(6) % 5, reduction="none")
    assert torch.equal(distillation_loss(student, teacher, hard, 0.0, 3.0), hard)
    assert torch.allclose(distillation_loss(teacher, teacher, hard, 1.0, 3.0), torch.zeros(6),
                          atol=1e-6)
    expected = 9.0 * F.kl_div(F.log_softmax(student / 3, -1), F.log_softmax(teacher / 3, -1),
                              reduction="none", log_target=True).sum(-1)
    mixed = distillation_loss(student, teacher, hard, 0.5, 3.0)
    assert torch.allclose(mixed, 0.5 * expected + 0.5 * hard, atol=1e-5)


def test_a_student_agrees_with_its_teacher_more_than_the_control(taught: Path,
                                                                 tmp_path: Path) -> None:
    """Trained on the teacher's soft targets, the student reproduces the teacher's
    decisions on the training clips more often than the same network on labels alone."""
    from slt_cli.cfg.config import load_config
    from slt_cli.data import load_configured
    from slt_cli.run.records import build_network
    from slt_cli.run.training import TensorSplit, predict_logits
    from slt_cli.store.checkpoints import load_weights, read_sidecar
    from slt_cli.use.distill import distill

    folder = tmp_path / "ck"
    shutil.copytree(taught / "ck", folder)
    config = load_config(taught / "tiny.toml")
    student = {"name": "mlp"}
    for name, alpha in (("student", 1.0), ("control", 0.0)):
        distill(config, ["best_model_stage_1"], name, student=student, alpha=alpha,
                temperature=2.0, epochs=3, stage_idx=1, checkpoint_dir=folder, device="cpu",
                measure=False)
    sidecar = read_sidecar(folder, "best_model_stage_1")
    data = load_configured(sidecar.config.data, sidecar.config.run.seed)
    train = TensorSplit.from_split(data.splits["train"], torch.device("cpu"))

    def decisions(name: str) -> torch.Tensor:
        record = read_sidecar(folder, name)
        network = build_network(record.model, seed=0)
        network.load_state_dict(load_weights(folder, name, record))
        return predict_logits(network, train, data.motion, 64).argmax(-1)

    teacher = decisions("best_model_stage_1")
    agree = {name: (decisions(name) == teacher).float().mean().item()
             for name in ("student", "control")}
    assert agree["student"] > agree["control"], agree


def test_distill_saves_a_student_with_its_lineage_and_enforces_budgets(
        taught: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two teachers (an ensemble of them); the ONNX export and its timing are
    ``measure_footprint``'s, tested through ``slt export``'s own tests: here it reports
    fixed figures, so the budgets' arithmetic is what is checked, in no time."""
    import slt_cli.use.distill
    from slt_cli.use.distill import Footprint

    measured: list[str] = []

    def footprint(folder: Path, name: str) -> Footprint:
        measured.append(name)
        return Footprint(folder / "exports" / f"{name}.onnx", size_mb=0.25, ms_per_sequence=0.5)

    monkeypatch.setattr(slt_cli.use.distill, "measure_footprint", footprint)
    folder = tmp_path / "ck"
    shutil.copytree(taught / "ck", folder)
    common = ("--config", str(taught / "tiny.toml"), "--checkpoint-dir", str(folder),
              "--epochs", "1", "--student", "tiny")
    over = slt("distill", "best_model_stage_1", "stage_1_baseline", "--name", "pupil",
               "--alpha", "0.5", "--temperature", "2", "--max-mb", "0.2", "--max-ms", "0.4",
               *common)
    assert over.exit_code == 3, over.output
    assert ("pupil misses its budget: 0.250 MB > --max-mb 0.2; 0.500 ms per sequence > "
            "--max-ms 0.4") in over.output
    saved = json.loads((folder / "pupil.json").read_text(encoding="utf-8"))  # kept
    teachers = {t["name"]: t["weights_sha256"] for t in saved["distilled"]["teachers"]}
    assert teachers == {
        name: json.loads((folder / f"{name}.json").read_text())["weights_sha256"]
        for name in ("best_model_stage_1", "stage_1_baseline")}
    assert (saved["distilled"]["alpha"], saved["distilled"]["temperature"]) == (0.5, 2.0)
    assert saved["distilled"]["parameters"] > 0 and saved["stage_name"] == "distilled"
    within = slt("distill", "stage_1_baseline", "--name", "pupil2", "--max-mb", "0.25",
                 "--max-ms", "1", *common)
    assert within.exit_code == 0, within.output
    assert "0.250 MB, 0.500 ms per sequence" in within.output
    assert measured == ["pupil", "pupil2"]
    listed = {r["name"]: r for r in json.loads(
        slt("list", "--json", "--checkpoint-dir", str(folder)).stdout)}
    assert listed["pupil2"]["teachers"] == ["stage_1_baseline"]
    assert "teachers" not in listed["stage_1_baseline"]
    assert "teachers: best_model_stage_1, stage_1_baseline" in slt(
        "list", "--checkpoint-dir", str(folder)).output
    students = json.loads(slt("analyze", "--json", "--checkpoint-dir", str(folder)).stdout)[
        "students"]
    assert [s["checkpoint"] for s in students] == ["pupil", "pupil2"]
    assert students[1]["teachers"] == ["stage_1_baseline"]
    assert "pupil2" in slt("evaluate", "pupil2", "--checkpoint-dir", str(folder)).output


@pytest.mark.parametrize(("args", "message"), [
    (["--alpha", "1.5"], "--alpha 1.5: must be between 0 and 1"),
    (["--temperature", "0"], "--temperature 0.0: must be > 0"),
    (["--student", "huge"], "unknown student preset 'huge'"),
    (["--max-ms", "-1"], "--max-ms -1.0: must be > 0"),
])
def test_bad_numbers_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = slt("distill", "best_model_stage_1", "--name", "s", *args,
                 "--checkpoint-dir", str(tmp_path))
    assert result.exit_code == 2 and message in result.output, result.output


def test_teachers_of_different_layouts_exit_2(taught: Path, tiny_checkpoint: Path,
                                              tmp_path: Path) -> None:
    folder = tmp_path / "ck"
    shutil.copytree(taught / "ck", folder)
    for suffix in (".json", ".safetensors"):  # per-part normalisation: other features
        shutil.copy(tiny_checkpoint / f"best_model_stage_1{suffix}", folder / f"parts{suffix}")
    result = slt("distill", "best_model_stage_1", "parts", "--name", "s",
                 "--checkpoint-dir", str(folder))
    assert result.exit_code == 2, result.output
    assert "parts does not share the data layout of best_model_stage_1" in result.output
    assert not (folder / "s.json").exists()


def test_a_budget_without_the_onnx_extra_exits_2_before_training(
        taught: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import slt_cli.common.extras

    monkeypatch.setattr(slt_cli.common.extras, "installed", lambda module: module != "onnx")
    result = slt("distill", "best_model_stage_1", "--name", "s", "--max-mb", "40",
                 "--checkpoint-dir", str(taught / "ck"))
    assert result.exit_code == 2 and "ONNX export needs onnx" in result.output, result.output
    assert not (taught / "ck" / "s.json").exists()


def test_a_student_sidecar_with_a_broken_lineage_is_named(taught: Path) -> None:
    from slt_cli.errors import CheckpointError
    from slt_cli.store.sidecar import Distillation, Sidecar, Teacher

    raw = json.loads((taught / "ck" / "best_model_stage_1.json").read_text())
    lineage = Distillation((Teacher("a", "0" * 64),), 0.7, 3.0, 100)
    record = Sidecar.from_json({**raw, "distilled": lineage.to_json()})
    assert record.distilled == lineage
    assert Sidecar.from_json(record.to_json()) == dataclasses.replace(record)
    with pytest.raises(CheckpointError, match="distilled.alpha"):
        Sidecar.from_json({**raw, "distilled": {**lineage.to_json(), "alpha": 2.0}})
