"""Test-time mirror averaging, drop path, late dropout and the data-sized model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slt_cli.cfg.config import StageConfig, parse_config
from slt_cli.cli import app
from slt_cli.data.transforms import mean_probabilities, mirror_clips, mirror_permutation
from slt_cli.errors import ConfigError
from slt_cli.models import build_model, model_setting_problems, resolved_settings
from slt_cli.models.conv_transformer import data_sized
from slt_cli.models.layers import DropBranch
from slt_cli.run.training import TensorSplit, predict_logits, set_dropout, stage_dropout
from slt_cli.store.checkpoints import read_sidecar
from slt_cli.use.inference import load_model, predict_probabilities
from tests.conftest import TINY_TOML, validation_both_ways

NAMES = ("pose_nose", "left_hand_0", "right_hand_0", "left_hand_1", "right_hand_1")


def network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("conv_transformer", in_features=5 * 3 * 2 + 5, num_classes=4,
                       num_frames=6, dim=16, depth=1, heads=2)


def clips(seed: int = 1) -> torch.Tensor:
    x = torch.randn(7, 6, 5, 3, generator=torch.Generator().manual_seed(seed))
    x[0, 2, 1] = float("nan")  # a missing landmark stays missing in the mirror
    return x


def test_mirror_averaging_is_the_mean_of_the_two_passes_and_blind_to_mirroring() -> None:
    model, x = network(), clips()
    mirror = mirror_permutation(NAMES)
    assert mirror == [0, 2, 1, 4, 3]
    flipped = mirror_clips(x, mirror)
    assert torch.equal(flipped[:, :, 1, 1:].nan_to_num(), x[:, :, 2, 1:].nan_to_num())
    assert torch.equal(flipped[:, :, 2, 0].nan_to_num(), -x[:, :, 1, 0].nan_to_num())
    assert torch.equal(mirror_clips(flipped, mirror).nan_to_num(), x.nan_to_num())
    y = torch.zeros(len(x), dtype=torch.long)
    plain = predict_logits(model, TensorSplit(x, y), True, 4)
    of_mirror = predict_logits(model, TensorSplit(flipped, y), True, 4)
    averaged = predict_logits(model, TensorSplit(x, y), True, 4, mirror=mirror)
    expected = (plain.softmax(-1) + of_mirror.softmax(-1)) / 2
    torch.testing.assert_close(averaged.softmax(-1), expected)
    torch.testing.assert_close(mean_probabilities(plain, of_mirror), averaged)
    assert not torch.allclose(plain.softmax(-1), expected)  # the mirror pass counts
    # A clip and its mirror image get the same scores.
    torch.testing.assert_close(
        predict_logits(model, TensorSplit(flipped, y), True, 4, mirror=mirror), averaged)


def test_drop_path_is_the_identity_in_eval_mode_and_at_rate_zero() -> None:
    model, x = network(), clips().nan_to_num()
    from slt_cli.data.transforms import features

    inputs = features(x, True)
    model.eval()
    reference = model(inputs)
    set_dropout(model, 0.0, drop_path=0.9)
    torch.testing.assert_close(model(inputs), reference)  # eval: nothing dropped
    model.train()
    set_dropout(model, 0.0, drop_path=0.0)
    torch.testing.assert_close(model(inputs), reference)  # rate 0: nothing dropped
    set_dropout(model, 0.0, drop_path=0.9)
    assert not torch.allclose(model(inputs), reference)
    branches = [m.dropout for m in model.modules() if isinstance(m, DropBranch)]
    assert branches and all(m.p == 0.9 for m in branches)
    assert model.head.dropout.p == 0.0  # drop path leaves plain dropout alone
    set_dropout(model, 0.3)  # without a drop path rate, every dropout gets the rate
    assert model.head.dropout.p == 0.3 and all(m.p == 0.3 for m in branches)


def test_late_dropout_switches_on_after_its_share_of_the_epochs() -> None:
    stage = StageConfig(name="s", epochs=10, dropout=0.2)
    assert [stage_dropout(stage, e) for e in (1, 10)] == [(0.2, 0.2), (0.2, 0.2)]
    late = dataclasses.replace(stage, late_dropout=0.5, late_dropout_start=0.4, drop_path=0.1)
    rates = [stage_dropout(late, epoch) for epoch in range(1, 11)]
    assert rates == [(0.0, 0.1)] * 4 + [(0.5, 0.1)] * 6


@pytest.mark.parametrize(("line", "key"), [
    ("drop_path = 1.5", "stages[0].drop_path"),
    ("drop_path = -0.5", "stages[0].drop_path"),
    ("late_dropout = -0.1", "stages[0].late_dropout"),
    ("late_dropout_start = 1.0", "stages[0].late_dropout_start"),
])
def test_bad_regulariser_settings_are_refused_by_key(line: str, key: str) -> None:
    text = TINY_TOML.replace('lr = 3e-3\n', f'lr = 3e-3\n{line}\n', 1)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.toml")
    assert f"t.toml: {key}:" in str(caught.value)


def test_auto_size_follows_the_data_and_explicit_sizes_stay() -> None:
    tiny, large = data_sized(40, 5), data_sized(80_000, 250)
    assert tiny == data_sized(900, 5) == {"dim": 64, "depth": 2}  # never below the default
    assert data_sized(5_000, 20)["dim"] == 96 and large == {"dim": 192, "depth": 3}
    assert model_setting_problems("conv_transformer", {"dim": "auto", "depth": "auto"}) == []
    assert model_setting_problems("conv_transformer", {"dim": "big"}) == [
        "model.dim: must be an integer between 1 and 4096, got 'big'"]
    assert model_setting_problems("gru", {"hidden": "auto"})  # only sized models take it
    sized = resolved_settings("conv_transformer", {"dim": "auto", "depth": 3},
                              sequences=5_000, classes=20)
    assert sized["dim"] == 96 and sized["depth"] == 3
    with pytest.raises(ConfigError, match="heads"):
        resolved_settings("conv_transformer", {"dim": "auto", "heads": 5},
                          sequences=40, classes=5)


def test_a_mirror_averaged_run_records_it_and_evaluate_and_predict_follow(
        tmp_path: Path) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(
        TINY_TOML.replace("seed = 0\n", "seed = 0\nmirror_average = true\n", 1)
        .replace('dim = 16\n', 'dim = "auto"\n').replace("lr = 3e-3\n",
                                                         "lr = 3e-3\ndrop_path = 0.05\n", 1),
        encoding="utf-8")
    folder = tmp_path / "checkpoints"
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--config", str(config), "--stages", "1",
                                 "--checkpoint-dir", str(folder)])
    assert result.exit_code == 0, result.output
    sidecar = read_sidecar(folder, "best_model_stage_1")
    assert sidecar.config.run.mirror_average is True
    assert sidecar.config.stage.drop_path == 0.05
    assert sidecar.model["settings"]["dim"] == 64  # 4 classes x ~30 sequences: smallest
    evaluation = runner.invoke(app, ["evaluate", "best_model_stage_1", "--split", "val",
                                     "--json", "--checkpoint-dir", str(folder)])
    assert evaluation.exit_code == 0, evaluation.output
    assert json.loads(evaluation.stdout)["accuracy"] == pytest.approx(sidecar.val_accuracy)
    model = load_model(folder, "best_model_stage_1")
    assert model.classifier.mirrored
    # The raw path (predict, export) averages as the trainer's scoring does.
    x, lengths, val, joints = validation_both_ways(sidecar)
    with torch.no_grad():
        raw_logits = model.classifier(torch.from_numpy(x), torch.from_numpy(lengths))
    mirror = mirror_permutation(joints)
    trained = predict_logits(model.classifier.network, val, True, 8, mirror=mirror)
    assert (raw_logits - trained).abs().max().item() < 1e-5
    assert not torch.allclose(trained, predict_logits(model.classifier.network, val, True, 8))
    probabilities = predict_probabilities(model, x, lengths)
    np.testing.assert_allclose(probabilities, trained.softmax(-1).numpy(), atol=1e-5)


def test_an_export_of_a_mirror_averaged_checkpoint_averages_inside_the_graph(
        tmp_path: Path) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(TINY_TOML.replace("seed = 0\n", "seed = 0\nmirror_average = true\n", 1),
                      encoding="utf-8")
    folder, runner = tmp_path / "checkpoints", CliRunner()
    trained = runner.invoke(app, ["train", "--config", str(config), "--stages", "1",
                                  "--epochs-per-stage", "1", "--checkpoint-dir", str(folder)])
    assert trained.exit_code == 0, trained.output
    out = tmp_path / "signs.pt"
    result = runner.invoke(app, ["export", "best_model_stage_1", "--format", "torchscript",
                                 "--out", str(out), "--checkpoint-dir", str(folder),
                                 "--samples", "8"])
    assert result.exit_code == 0, result.output
    metadata = json.loads(out.with_name("signs.pt.json").read_text(encoding="utf-8"))
    assert metadata["preprocessing"]["mirror_average"] is True
    assert any("mirror averaging" in step for step in metadata["preprocessing"]["steps"])
    x = np.random.default_rng(3).normal(0.4, 0.3, size=(9, 53, 3)).astype(np.float32)
    model = load_model(folder, "best_model_stage_1")
    expected = predict_probabilities(model, x[None], np.array([9]))[0]
    with pytest.warns(DeprecationWarning):
        module = torch.jit.load(str(out))
    with torch.no_grad():
        _, probabilities = module(torch.from_numpy(x))
    np.testing.assert_allclose(probabilities.numpy(), expected, atol=1e-5)
    model.classifier.mirrored = False  # the plain pass alone scores otherwise
    assert not np.allclose(predict_probabilities(model, x[None], np.array([9]))[0], expected)


def test_awp_steps_along_the_gradient_at_perturbed_weights_and_puts_them_back() -> None:
    from slt_cli.run.regularisers import adversarial_weights

    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    x, target = torch.randn(8, 3), torch.randint(0, 2, (8,))

    def gradient_of_loss() -> None:
        layer.zero_grad()
        torch.nn.functional.cross_entropy(layer(x), target).backward()

    before = layer.weight.detach().clone(), layer.bias.detach().clone()
    gradient_of_loss()
    clean = layer.weight.grad.clone()
    step = clean * (0.5 * before[0].norm() / clean.norm())
    with adversarial_weights(list(layer.parameters()), 0.5):
        torch.testing.assert_close(layer.weight.detach(), before[0] + step)
        assert torch.equal(layer.bias.detach(), before[1])  # biases stay
        gradient_of_loss()
    torch.testing.assert_close(layer.weight.detach(), before[0])  # put back
    assert not torch.allclose(layer.weight.grad, clean)  # the perturbed point's gradient


def test_a_stage_with_awp_trains(tiny_toml: Path, tmp_path: Path) -> None:
    tiny_toml.write_text(tiny_toml.read_text(encoding="utf-8").replace(
        "lr = 3e-3\n", "lr = 3e-3\nawp = 0.1\n", 1), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", "--config", str(tiny_toml), "--stages", "1",
                                      "--checkpoint-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert read_sidecar(tmp_path / "c", "best_model_stage_1").config.stage.awp == 0.1


def test_an_ensemble_of_mirror_averaged_members_mirror_averages(tmp_path: Path) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(TINY_TOML.replace("seed = 0\n", "seed = 0\nmirror_average = true\n", 1),
                      encoding="utf-8")
    folder, runner = tmp_path / "checkpoints", CliRunner()
    trained = runner.invoke(app, ["train", "--config", str(config), "--force",
                                  "--epochs-per-stage", "1", "--checkpoint-dir", str(folder)])
    assert trained.exit_code == 0, trained.output
    made = runner.invoke(app, ["ensemble", "best_model_stage_1", "best_model_stage_2",
                               "--name", "both", "--checkpoint-dir", str(folder)])
    assert made.exit_code == 0, made.output
    sidecar = read_sidecar(folder, "both")
    assert sidecar.config.run.mirror_average is True
    evaluation = runner.invoke(app, ["evaluate", "both", "--split", "val", "--json",
                                     "--checkpoint-dir", str(folder)])
    assert evaluation.exit_code == 0, evaluation.output
    assert json.loads(evaluation.stdout)["accuracy"] == pytest.approx(sidecar.val_accuracy)
    assert load_model(folder, "both").classifier.mirrored
