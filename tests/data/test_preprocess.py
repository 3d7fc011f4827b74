from __future__ import annotations

import numpy as np
import torch

from slt_cli.cfg.config import AugmentConfig
from slt_cli.data.preprocess import normalise, resample
from slt_cli.data.transforms import augment, feature_count, features, mirror_permutation


def test_normalise_ignores_where_the_signer_stands_and_their_size() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
    moved = x * 3.5 + np.array([10.0, -4.0, 2.0], dtype=np.float32)
    np.testing.assert_allclose(normalise(x), normalise(moved), atol=1e-5)


def test_normalise_keeps_missing_landmarks_missing() -> None:
    x = np.ones((1, 4, 3, 2), np.float32)
    x[0, 1, 2] = np.nan
    x[0, :, 0] = 2.0
    out = normalise(x)
    assert np.isnan(out[0, 1, 2]).all() and np.isfinite(np.delete(out[0], 1, axis=0)).all()
    assert np.isnan(normalise(np.full((1, 2, 2, 2), np.nan, np.float32))).all()


def test_resample_keeps_the_whole_sign() -> None:
    x = np.full((2, 10, 1, 1), np.nan, np.float32)
    x[0, :5, 0, 0] = np.arange(5)  # length 5: 0..4
    x[1, :, 0, 0] = np.arange(10)  # length 10: 0..9
    out = resample(x, np.array([5, 10]), frames=9)
    np.testing.assert_allclose(out[0, :, 0, 0], np.linspace(0, 4, 9), atol=1e-6)
    np.testing.assert_allclose(out[1, :, 0, 0], np.linspace(0, 9, 9), atol=1e-6)


def test_resample_never_invents_a_missing_value() -> None:
    x = np.zeros((1, 3, 1, 1), np.float32)
    x[0, 1] = np.nan
    out = resample(x, np.array([3]), frames=5)  # positions 0, .5, 1, 1.5, 2
    assert np.isnan(out[0, 1:4, 0, 0]).all() and out[0, 0, 0, 0] == 0 and out[0, 4, 0, 0] == 0


def test_features_mask_missing_instead_of_faking_zeros() -> None:
    x = torch.ones(1, 3, 2, 2)
    x[0, 1, 0] = float("nan")
    out = features(x, motion=True)
    assert out.shape == (1, 3, feature_count(2, 2, motion=True)) == (1, 3, 10)
    assert torch.isfinite(out).all()
    presence = out[0, :, -2:]
    assert presence.tolist() == [[1, 1], [0, 1], [1, 1]]


def test_features_lay_out_coordinates_steps_and_presence_whatever_the_memory_order() -> None:
    x = torch.arange(12.0).view(1, 3, 2, 2) ** 2  # frames 0-2, landmarks a and b, (x, y)
    x[0, 1, 1, 0] = float("nan")  # b's x in frame 1
    out = features(x, motion=True)
    coordinates, steps, present = out[0, :, :4], out[0, :, 4:8], out[0, :, 8:]
    assert coordinates.tolist() == [[0, 1, 4, 9], [16, 25, 0, 49], [64, 81, 100, 121]]
    # The step from the frame before: 0 in frame 0 and wherever either end is missing.
    assert steps.tolist() == [[0, 0, 0, 0], [16, 24, 0, 40], [48, 56, 0, 72]]
    assert present.tolist() == [[1, 1], [1, 0], [1, 1]]
    channels_first = x.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)  # a view
    assert torch.equal(features(channels_first, motion=True), out)
    assert torch.equal(features(x, motion=False), torch.cat([coordinates, present], -1)[None])


def test_mirror_permutation_swaps_named_left_and_right() -> None:
    joints = ["nose", "left_wrist", "right_wrist", "left_hand_0", "right_hand_0"]
    assert mirror_permutation(joints) == [0, 2, 1, 4, 3]
    assert mirror_permutation(["a", "b"]) is None
    assert mirror_permutation(None) is None


def test_augment_is_seeded_and_keeps_nan() -> None:
    x = torch.randn(8, 12, 4, 3)
    x[:, 3, 1] = float("nan")
    settings = AugmentConfig(rotate=20, scale=0.2, shift=0.1, jitter=0.01, speed=0.3,
                             time_mask=0.2, joint_drop=0.1, mirror=0.5)
    first = augment(x, settings, torch.Generator().manual_seed(1), [1, 0, 2, 3])
    again = augment(x, settings, torch.Generator().manual_seed(1), [1, 0, 2, 3])
    other = augment(x, settings, torch.Generator().manual_seed(2), [1, 0, 2, 3])
    assert first.shape == x.shape
    assert torch.equal(torch.nan_to_num(first, 99.0), torch.nan_to_num(again, 99.0))
    assert not torch.equal(torch.nan_to_num(first, 99.0), torch.nan_to_num(other, 99.0))
    assert torch.isnan(first).sum() >= torch.isnan(x).sum() / 2


def test_augment_off_returns_the_batch_untouched() -> None:
    x = torch.randn(2, 5, 3, 2)
    assert augment(x, AugmentConfig(), torch.Generator()) is x


def test_rotation_and_scale_preserve_shape_of_the_pose() -> None:
    x = torch.randn(4, 6, 5, 2)
    out = augment(x, AugmentConfig(rotate=30.0), torch.Generator().manual_seed(0))
    # A rotation keeps every distance between two landmarks.
    def distances(points: torch.Tensor) -> torch.Tensor:
        flat = points.flatten(1, 2)
        return (flat[:, :, None] - flat[:, None]).norm(dim=-1)

    torch.testing.assert_close(distances(out), distances(x), atol=1e-4, rtol=1e-4)


def test_frames_from_the_data_follow_its_lengths() -> None:
    from slt_cli.data.preprocess import FRAMES_CAP, frames_for

    assert frames_for(0, np.full(10, 30)) == 30  # shorter than the cap: not stretched
    assert frames_for(0, np.array([10] * 9 + [100])) == 19  # a few long clips do not decide
    assert frames_for(0, np.ones(5, dtype=np.int64)) == 1  # static signs stay one frame
    assert frames_for(0, np.full(3, 500)) == FRAMES_CAP
    assert frames_for(12, np.full(3, 500)) == 12  # a stated count is kept
