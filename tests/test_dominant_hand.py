"""``[data] dominant_hand = "right"``: clips whose left hand is seen more are mirrored, in
training, evaluation and the raw path that predict and export take alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from slt_cli.cli import app
from slt_cli.data.transforms import dominant_hand_swap, mirror_clips, right_handed
from slt_cli.run.training import TensorSplit, predict_logits
from slt_cli.store.checkpoints import read_sidecar
from slt_cli.use.inference import load_model
from tests.conftest import TINY_TOML, validation_both_ways

NAMES = ("pose_0", "left_hand_0", "left_hand_1", "right_hand_0", "right_hand_1")


def test_clips_whose_left_hand_is_seen_more_are_mirrored_and_no_others() -> None:
    x = torch.randn(4, 6, 5, 3, generator=torch.Generator().manual_seed(0))
    x[0, :4, 3:] = float("nan")  # right hand missing in 4 of 6 frames: left-dominant
    x[1, :4, 1:3] = float("nan")  # left hand missing: right-dominant
    x[2, :3, 3:] = float("nan")  # left seen in 6 frames, right in 3 ...
    x[2, :2, 1:3] = float("nan")  # ... left in 4: still left-dominant
    # clip 3: both hands in every frame, a tie: kept
    left, right, mirror = dominant_hand_swap(NAMES, "right")
    assert (left, right, mirror) == ([1, 2], [3, 4], [0, 3, 4, 1, 2])
    turned = right_handed(x, left, right, mirror)
    flipped = mirror_clips(x, mirror)
    for clip, mirrored in enumerate([True, False, True, False]):
        want = flipped[clip] if mirrored else x[clip]
        torch.testing.assert_close(turned[clip], want, equal_nan=True)
    # a clip and its mirror image (the same sign by the other hand) become one clip
    torch.testing.assert_close(right_handed(flipped, left, right, mirror)[:3], turned[:3],
                               equal_nan=True)
    assert dominant_hand_swap(NAMES, "keep") is None
    assert dominant_hand_swap(("a", "b"), "right") is None  # no hands to swap


def handed_npz(path: Path) -> Path:
    """Two signs by 6 people, each clip one-handed: half with the left hand, half the right."""
    rng = np.random.default_rng(0)
    count, frames = 48, 8
    y = np.arange(count) % 2
    x = rng.normal(0.5, 0.05, size=(count, frames, len(NAMES), 2)).astype(np.float32)
    motion = np.linspace(0.0, 0.3, frames, dtype=np.float32)[:, None]
    for i in range(count):
        signing, idle = ((1, 2), (3, 4)) if i % 4 < 2 else ((3, 4), (1, 2))
        direction = 1.0 if y[i] == 0 else -1.0
        x[i, :, signing, 1] += direction * motion.T  # the sign moves up or down
        x[i, 2:, idle] = np.nan  # the idle hand drops out of sight
    signer = np.arange(count) % 6
    np.savez(path, x=x, y=y, classes=np.array(["up", "down"]), joints=np.array(NAMES),
             signer=signer)
    return path


def test_a_right_handed_run_scores_alike_in_training_evaluate_and_the_raw_path(
        tmp_path: Path) -> None:
    data = handed_npz(tmp_path / "handed.npz")
    config = tmp_path / "handed.toml"
    config.write_text(TINY_TOML.replace(
        'source = "synthetic:classes=4,signers=6,repeats=3,frames=16"',
        f'source = "{data}"\ndominant_hand = "right"'), encoding="utf-8")
    folder, runner = tmp_path / "checkpoints", CliRunner()
    trained = runner.invoke(app, ["train", "--config", str(config), "--stages", "1",
                                  "--checkpoint-dir", str(folder)])
    assert trained.exit_code == 0, trained.output
    sidecar = read_sidecar(folder, "best_model_stage_1")
    assert sidecar.config.data.dominant_hand == "right"
    shown = runner.invoke(app, ["evaluate", "best_model_stage_1", "--json",
                                "--checkpoint-dir", str(folder)])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["accuracy"] == sidecar.val_accuracy

    model = load_model(folder, "best_model_stage_1")
    assert model.classifier.right_handed
    x, lengths, val, joints = validation_both_ways(sidecar)
    turned = TensorSplit(right_handed(val.x, *dominant_hand_swap(joints, "right")), val.y)
    network = model.classifier.network
    with torch.no_grad():
        from_raw = model.classifier(torch.from_numpy(x), torch.from_numpy(lengths))
    motion = sidecar.config.data.motion
    as_trained = predict_logits(network, turned, motion, 8)
    assert (from_raw - as_trained).abs().max().item() < 1e-5
    assert not torch.allclose(as_trained, predict_logits(network, val, motion, 8))


def test_dominant_hand_takes_keep_or_right(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(TINY_TOML.replace('frames = 12\n', 'frames = 12\ndominant_hand = "left"\n'),
                      encoding="utf-8")
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2
    assert "data.dominant_hand: must be one of keep, right" in result.stderr
