"""``slt ensemble``: both methods through the CLI, on tiny checkpoints of real runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slt_cli.models.ensemble import Ensemble
from slt_cli.run.records import build_network
from slt_cli.store.checkpoints import read_sidecar
from tests.cli import slt
from tests.conftest import TINY_TOML

STAGES = ["best_model_stage_1", "best_model_stage_2", "stage_2_augmentation"]


def _train(base: Path, label: str, toml: str, *args: str) -> Path:
    config = base / f"{label}.toml"
    config.write_text(toml, encoding="utf-8")
    folder = base / label
    result = slt("train", "--config", str(config), "--checkpoint-dir", str(folder), "--force",
                 "--epochs-per-stage", "1", *args)
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder: a two-stage conv_transformer run, plus copies of the stage-1 best of
    an mlp run (on data generated with another seed, so other validation sequences), of
    a run on 3 classes and of a run from other initial weights (seed 1)."""
    base = tmp_path_factory.mktemp("ensemble-runs")
    main = _train(base, "main", TINY_TOML)
    mlp_toml = TINY_TOML.replace('name = "conv_transformer"\ndim = 16\ndepth = 1\nheads = 2',
                                 'name = "mlp"')
    mlp = _train(base, "mlp", mlp_toml, "--stages", "1", "--data",
                 "synthetic:classes=4,signers=6,repeats=3,frames=16,seed=1")
    three = _train(base, "three", TINY_TOML.replace("classes=4", "classes=3"), "--stages", "1")
    other_start = _train(base, "seed1", TINY_TOML, "--stages", "1", "--seed", "1")
    for folder, copy in ((mlp, "mlp_member"), (three, "three_classes"),
                         (other_start, "seed1_member")):
        for suffix in (".json", ".safetensors"):
            shutil.copy(folder / f"best_model_stage_1{suffix}", main / f"{copy}{suffix}")
    return main


@pytest.fixture
def folder(runs: Path, tmp_path: Path) -> Path:
    """A private copy of the runs' folder, so each test may add to it."""
    return Path(shutil.copytree(runs, tmp_path / "checkpoints"))


def make(folder: Path, *args: str) -> object:
    return slt("ensemble", *args, "--checkpoint-dir", str(folder))


def evaluated(folder: Path, name: str) -> dict:
    result = slt("evaluate", name, "--json", "--checkpoint-dir", str(folder))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_logits_ensemble_is_saved_scored_and_listed(folder: Path) -> None:
    result = make(folder, *STAGES, "--name", "avg3")
    assert result.exit_code == 0, result.output
    assert "logits ensemble" in result.stdout and "stage_2_augmentation" in result.stdout
    assert "note:" not in result.stderr  # one run: every member validated on the same split
    sidecar = read_sidecar(folder, "avg3")
    assert sidecar.stage_name == "ensemble" and sidecar.parent is None
    assert list(sidecar.members) == STAGES and sidecar.epoch == 0
    assert sidecar.stage_idx == 2
    members = [read_sidecar(folder, name) for name in STAGES]
    assert sidecar.model["name"] == "ensemble"
    assert sidecar.model["settings"]["members"] == [m.model for m in members]
    assert sidecar.training_time == pytest.approx(sum(m.training_time for m in members),
                                                     abs=2e-3)
    report = evaluated(folder, "avg3")
    assert report["accuracy"] == sidecar.val_accuracy
    assert report["loss"] == pytest.approx(sidecar.val_loss, rel=1e-6)
    # The table's numbers are the sidecar's, each member scored on the same sequences.
    assert f"{sidecar.val_accuracy:.4f}" in result.stdout
    assert f"{members[0].val_accuracy:.4f}" in result.stdout
    listed = {r["name"]: r for r in json.loads(slt("list", "--json", "--checkpoint-dir",
                                                   str(folder)).stdout)}
    assert listed["avg3"]["stage_name"] == "ensemble"
    assert listed["avg3"]["val_accuracy"] == sidecar.val_accuracy


def test_logits_ensemble_averages_the_members_probabilities(folder: Path) -> None:
    assert make(folder, *STAGES[:2], "--name", "pair").exit_code == 0
    sidecar = read_sidecar(folder, "pair")
    network = build_network(sidecar.model, seed=0)
    assert isinstance(network, Ensemble) and len(network.members) == 2
    network.load_state_dict(load_file(folder / "pair.safetensors"))
    network.eval()
    singles = []
    for name in STAGES[:2]:
        member = build_network(read_sidecar(folder, name).model, seed=0)
        member.load_state_dict(load_file(folder / f"{name}.safetensors"))
        singles.append(member.eval())
    x = torch.randn(5, 12, sidecar.model["in_features"])
    with torch.no_grad():
        mean = torch.stack([m(x).softmax(dim=-1) for m in singles]).mean(dim=0)
        torch.testing.assert_close(network(x).exp(), mean, rtol=1e-5, atol=1e-6)


def test_weights_ensemble_is_the_exact_mean_and_trains_further(folder: Path,
                                                               tiny_toml: Path) -> None:
    result = make(folder, "best_model_stage_1", "best_model_stage_2.safetensors", "--name",
                  "soup", "--method", "weights")
    assert result.exit_code == 0, result.output
    assert "weights ensemble" in result.stdout
    sidecar = read_sidecar(folder, "soup")
    assert sidecar.members == ("best_model_stage_1", "best_model_stage_2")
    assert sidecar.model == read_sidecar(folder, "best_model_stage_1").model
    soup = load_file(folder / "soup.safetensors")
    first, second = (load_file(folder / f"best_model_stage_{i}.safetensors") for i in (1, 2))
    assert soup.keys() == first.keys()
    for key, value in soup.items():
        assert torch.equal(value, torch.stack([first[key], second[key]]).mean(dim=0)), key
    assert not torch.equal(soup[next(iter(soup))], first[next(iter(soup))])
    assert evaluated(folder, "soup")["accuracy"] == sidecar.val_accuracy
    more = slt("continue", "soup", "--type", "fine_tune", "--config", str(tiny_toml),
               "--checkpoint-dir", str(folder))
    assert more.exit_code == 0, more.output
    assert read_sidecar(folder, "soup_fine_tune").parent == "soup"


def test_members_of_other_architectures_average_predictions_not_weights(
        folder: Path, tiny_toml: Path) -> None:
    refused = make(folder, "best_model_stage_2", "mlp_member", "--name", "mixed",
                   "--method", "weights")
    assert refused.exit_code == 2
    assert ("--method weights needs one architecture, but mlp_member differs from "
            "best_model_stage_2 (mlp vs conv_transformer)") in refused.stderr
    assert "--method logits" in refused.stderr
    result = make(folder, "best_model_stage_2", "mlp_member", "--name", "mixed")
    assert result.exit_code == 0, result.output
    assert "mlp_member was validated on other sequences than best_model_stage_2" in result.stderr
    assert read_sidecar(folder, "mixed").config.run.seed == 0  # the first's data
    assert evaluated(folder, "mixed")["accuracy"] == read_sidecar(folder, "mixed").val_accuracy
    more = slt("continue", "mixed", "--type", "fine_tune", "--config", str(tiny_toml),
               "--checkpoint-dir", str(folder))
    assert more.exit_code == 0, more.output


def test_averaging_weights_of_separate_runs_is_saved_with_a_warning(folder: Path) -> None:
    result = make(folder, "best_model_stage_2", "seed1_member", "--name", "soup",
                  "--method", "weights")
    assert result.exit_code == 0, result.output
    saved = read_sidecar(folder, "soup").val_accuracy
    assert saved < read_sidecar(folder, "seed1_member").val_accuracy
    assert f"the averaged weights score {saved:.4f}, below every member" in result.stderr
    assert "for separate runs use --method logits" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["best_model_stage_2", "three_classes", "--name", "x"],
     "three_classes does not share the data layout of best_model_stage_2: other classes "
     "(3 classes vs 4)"),
    (["best_model_stage_2", "three_classes", "--name", "x", "--method", "weights"],
     "three_classes does not share the data layout"),
    (["best_model_stage_2", "--name", "x"], "an ensemble needs at least two members, got 1"),
    (["best_model_stage_2", "best_model_stage_2", "--name", "x"],
     "member best_model_stage_2 is named more than once"),
    (["best_model_stage_2", "best_model_stage_9", "--name", "x"],
     "no checkpoint named 'best_model_stage_9'"),
    (["best_model_stage_1", "best_model_stage_2", "--name", "../x"], "is not a checkpoint name"),
    (["best_model_stage_1", "best_model_stage_2", "--name", "x", "--method", "median"],
     "--method 'median': expected logits or weights"),
])
def test_bad_requests_exit_2_and_save_nothing(folder: Path, args: list[str],
                                              message: str) -> None:
    before = sorted(p.name for p in folder.iterdir())
    result = make(folder, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in folder.iterdir() if p.name != ".slt.lock") == [
        name for name in before if name != ".slt.lock"]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("normalise", "parts", "other normalisation ([data] normalise) ('parts' vs 'sequence')"),
    ("dominant_hand", "right", "other [data] dominant_hand ('right' vs 'keep')"),
])
def test_members_prepared_otherwise_are_refused(folder: Path, key: str, value: str,
                                                message: str) -> None:
    """Members are scored on the first member's prepared clips, so a member whose
    clips were prepared otherwise (same landmarks and frames) would be scored on
    input it never saw."""
    for suffix in (".json", ".safetensors"):
        shutil.copy(folder / f"seed1_member{suffix}", folder / f"prepared{suffix}")
    sidecar = folder / "prepared.json"
    values = json.loads(sidecar.read_text(encoding="utf-8"))
    values["config"]["data"][key] = value
    sidecar.write_text(json.dumps(values), encoding="utf-8")
    result = make(folder, "best_model_stage_2", "prepared", "--name", "x")
    assert result.exit_code == 2, result.output
    assert f"prepared does not share the data layout of best_model_stage_2: {message}" in (
        " ".join(result.stderr.split()))
    assert not (folder / "x.safetensors").exists()


def test_a_member_whose_frames_came_from_the_data_is_taken(folder: Path) -> None:
    """``[data] frames = 0`` takes the count from the data: a member asked for it and
    given the same 12 frames as the others prepares its clips alike."""
    for suffix in (".json", ".safetensors"):
        shutil.copy(folder / f"seed1_member{suffix}", folder / f"auto{suffix}")
    sidecar = folder / "auto.json"
    values = json.loads(sidecar.read_text(encoding="utf-8"))
    assert values["model"]["num_frames"] == values["config"]["data"]["frames"] == 12
    values["config"]["data"]["frames"] = 0
    sidecar.write_text(json.dumps(values), encoding="utf-8")
    result = make(folder, "best_model_stage_2", "auto", "--name", "x")
    assert result.exit_code == 0, result.output
    assert (folder / "x.safetensors").is_file()


def test_an_existing_name_is_never_overwritten(folder: Path) -> None:
    kept = (folder / "best_model_stage_2.safetensors").read_bytes()
    sidecar = read_sidecar(folder, "best_model_stage_2")
    result = make(folder, *STAGES[:2], "--name", "best_model_stage_2")
    assert result.exit_code == 2
    assert "a checkpoint named best_model_stage_2 already exists" in result.stderr
    assert (folder / "best_model_stage_2.safetensors").read_bytes() == kept
    assert read_sidecar(folder, "best_model_stage_2") == sidecar
