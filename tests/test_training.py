from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slt_cli import Trainer, load_config
from slt_cli.run.training import LossHead
from slt_cli.store.checkpoints import load_weights, read_sidecar


def test_mixup_loss_blends_the_two_labels_by_the_clip_weights() -> None:
    torch.manual_seed(0)
    head = LossHead(nn.Linear(6, 4))
    inputs, targets = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 0])
    partners, weights = torch.tensor([1, 1, 3, 0, 2]), torch.tensor([1.0, 0.5, 0.75, 0.6, 1.0])
    loss, correct = head(inputs, targets, partners=partners, weights=weights)
    logits = head.model(inputs)
    own = F.cross_entropy(logits, targets, reduction="none")
    other = F.cross_entropy(logits, partners, reduction="none")
    assert torch.allclose(loss, weights * own + (1 - weights) * other)
    assert torch.equal(correct, logits.argmax(-1) == targets)  # accuracy counts the own label
    plain, _ = head(inputs, targets)
    assert torch.allclose(plain, own)


def test_flat_gradients_are_the_gradients_and_clip_as_torch_does() -> None:
    """Backward fills the buffer's views with the same numbers torch would allocate,
    zeroing empties them (no accumulation across steps), and clipping scales them as
    ``clip_grad_norm_`` does, to the last bit; a norm under the bound is left alone."""
    from slt_cli.models import build_model
    from slt_cli.run.optimizer import FlatGradients

    torch.manual_seed(0)
    model = build_model("conv_transformer", in_features=12, num_classes=3, num_frames=6).eval()
    reference = copy.deepcopy(model)
    inputs, targets = torch.randn(4, 6, 12), torch.tensor([0, 1, 2, 1])
    flat = FlatGradients(model.parameters())
    for _ in range(2):  # the second step must not add to the first
        model.zero_grad(set_to_none=True)  # as torch's optimisers do: zero() mends it
        flat.zero()
        F.cross_entropy(model(inputs), targets).backward()
    F.cross_entropy(reference(inputs), targets).backward()
    ours, theirs = list(model.parameters()), list(reference.parameters())
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours, theirs, strict=True))
    assert all(a.grad.data_ptr() == v.data_ptr() for a, v in zip(ours, flat.views, strict=True))
    norm = float(torch.linalg.vector_norm(flat.buffer))
    flat.clip(norm / 4)
    nn.utils.clip_grad_norm_(theirs, norm / 4)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours, theirs, strict=True))
    before = flat.buffer.clone()
    flat.clip(norm)  # already at a quarter of it
    assert torch.equal(flat.buffer, before)


def test_a_stage_with_mixup_and_shear_trains_and_repeats_exactly(tiny_toml: Path,
                                                                   tmp_path: Path) -> None:
    config = load_config(tiny_toml)
    augmentation = dataclasses.replace(
        config.stages[1], augment=dataclasses.replace(config.stages[1].augment,
                                                      mixup=0.5, shear=0.2))
    config = dataclasses.replace(config, stages=(config.stages[0], augmentation))
    states = []
    for folder in (tmp_path / "a", tmp_path / "b"):
        result = Trainer(config, checkpoint_dir=folder).train(force=True)
        sidecar = read_sidecar(folder, "stage_2_augmentation")
        assert sidecar.config.stage.augment.mixup == 0.5
        states.append(load_weights(folder, "stage_2_augmentation", sidecar))
    assert result.stages[1].val_accuracy > 0
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.slow  # torch.compile takes a minute or two on a small CPU
def test_compiled_training_on_the_cpu_saves_unprefixed_fp32_weights(tiny_toml: Path,
                                                                     tmp_path: Path) -> None:
    config = load_config(tiny_toml)
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, compile=True))
    config = dataclasses.replace(config, stages=config.stages[:1])
    Trainer(config, checkpoint_dir=tmp_path, device="cpu").train()
    sidecar = read_sidecar(tmp_path, "best_model_stage_1")
    tensors = load_weights(tmp_path, "best_model_stage_1", sidecar)
    assert not any(key.startswith(("_orig_mod.", "module.")) for key in tensors)
    assert all(t.dtype == torch.float32 for t in tensors.values() if t.is_floating_point())
    scored = Trainer(config, checkpoint_dir=tmp_path, device="cpu").evaluate("best_model_stage_1")
    assert scored.accuracy == pytest.approx(sidecar.val_accuracy, abs=1e-6)


def test_step_ema_matches_torch_averaged_model_bit_for_bit() -> None:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from slt_cli.run.averaging import StepEma

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3))
    ours = StepEma(model, decay=0.9)
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for _ in range(5):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        ours.update_parameters(model)
        theirs.update_parameters(model)
    assert int(ours.n_averaged) == int(theirs.n_averaged) == 5
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    first = next(model.parameters())
    assert not torch.equal(ours.module[0].weight, first)  # an average, not a copy
    # Its state is torch's, key for key (the model it follows is no part of it), so a
    # fresh average restores it: what resuming an EMA stage does.
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    fresh = StepEma(nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3)), 0.9)
    fresh.load_state_dict(ours.state_dict())
    assert torch.equal(fresh.module[0].weight, ours.module[0].weight)
