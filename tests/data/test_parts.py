"""MediaPipe landmark names, npz selection and zero-fill, per-part normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from slt_cli.common.reporting import Reporter
from slt_cli.data import load_data, load_source
from slt_cli.data.landmarks import POSE_NAMES, Joint, PartsLayout, parse_joint
from slt_cli.data.preprocess import normalise
from slt_cli.data.transforms import mirror_permutation
from slt_cli.errors import DataError
from slt_cli.use.inference import normalise as torch_normalise

# MediaPipe Holistic as recorders write it: pose 0-32, left hand, right hand.
HOLISTIC = (tuple(f"pose_{i}" for i in range(33)) + tuple(f"left_hand_{i}" for i in range(21))
            + tuple(f"right_hand_{i}" for i in range(21)))
LEFT_HAND = slice(33, 54)
RIGHT_HAND = slice(54, 75)


class Notes(Reporter):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def signer(n: int = 4, frames: int = 12, seed: int = 0) -> np.ndarray:
    """(n, frames, 75, 3) Holistic-like sequences: a body, hands near the wrists."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 0.05, size=(n, frames, 75, 3)).astype(np.float32)
    x[:, :, 11] = [0.4, 0.5, 0.0]  # left shoulder
    x[:, :, 12] = [0.6, 0.5, 0.0]  # right shoulder
    x[:, :, 11:13] += rng.normal(0, 0.01, size=(n, frames, 2, 3)).astype(np.float32)
    for side, wrist in ((LEFT_HAND, 15), (RIGHT_HAND, 16)):
        x[:, :, side] = x[:, :, wrist, None] + rng.normal(0, 0.03, size=(n, frames, 21, 3))
    x[:, :, 23:33, 1] = rng.uniform(1.0, 2.0, size=(n, frames, 10))  # legs below the frame
    x[1, 3:6, LEFT_HAND] = np.nan  # an undetected hand
    return x


def parts(x: np.ndarray, joints: tuple[str, ...] = HOLISTIC) -> np.ndarray:
    return normalise(x, PartsLayout.of(joints))


def test_names_parse_in_every_form() -> None:
    assert parse_joint("pose_left_shoulder") == parse_joint("pose_11") == Joint("pose", 11)
    assert parse_joint("right_hand_20") == Joint("right_hand", 20)
    assert parse_joint("face_467") == Joint("face", 467)
    for unknown in ("pose_33", "left_hand_21", "face_468", "pose_011", "left_hand_position",
                    "nose", "hand_3", "pose_"):
        assert parse_joint(unknown) is None, unknown
    assert len(POSE_NAMES) == 33


def test_mirror_swaps_pose_pairs_by_index_and_by_name_and_the_hand_positions() -> None:
    joints = ["pose_0", "pose_11", "pose_12", "pose_15", "pose_16", "pose_left_shoulder",
              "pose_right_shoulder", "left_hand_0", "right_hand_0", "face_61",
              "left_hand_position", "right_hand_position"]
    assert mirror_permutation(joints) == [0, 2, 1, 4, 3, 6, 5, 8, 7, 9, 11, 10]
    prepared = PartsLayout.of(HOLISTIC).prepared_joints
    permutation = mirror_permutation(prepared)
    assert permutation[11] == 12 and permutation[31] == 32 and permutation[0] == 0
    assert permutation[1] == 4 and permutation[9] == 10  # eyes, mouth corners
    assert prepared[permutation[-1]] == "left_hand_position"


def test_parts_ignore_where_the_signer_stands_and_their_size() -> None:
    x = signer()
    moved = x * 1.7 + np.array([0.3, -0.2, 0.1], np.float32)
    out = parts(x)
    assert out.shape == (4, 12, 77, 3)  # two hand positions appended
    np.testing.assert_allclose(parts(moved), out, atol=1e-5)
    assert np.isnan(out[1, 3:6, LEFT_HAND]).all() and np.isnan(out[1, 3:6, -2]).all()
    assert np.isfinite(out[~np.isnan(out)]).all()
    # the shoulders sit at +-0.5 body units either side of the origin
    np.testing.assert_allclose(out[:, :, 11, 0].mean(), -0.5, atol=0.05)


def test_a_hands_own_coordinates_ignore_moving_and_scaling_that_hand() -> None:
    x = signer()
    moved = x.copy()
    wrist = moved[:, :, 54:55]
    moved[:, :, RIGHT_HAND] = (moved[:, :, RIGHT_HAND] - wrist) * 1.4 + wrist + 0.2
    before, after = parts(x), parts(moved)
    np.testing.assert_allclose(after[:, :, RIGHT_HAND], before[:, :, RIGHT_HAND], atol=1e-5)
    np.testing.assert_allclose(after[:, :, :54], before[:, :, :54], atol=1e-6)
    assert not np.allclose(after[:, :, -1], before[:, :, -1])  # its position moved


def test_off_screen_legs_change_neither_hands_nor_body() -> None:
    x = signer()
    far = x.copy()
    far[:, :, 23:33, 1] = 5.0
    before, after = parts(x), parts(far)
    kept = np.r_[0:23, 33:77]
    np.testing.assert_allclose(after[:, :, kept], before[:, :, kept], atol=1e-6)
    # one cloud of points, by contrast, shrinks the hands
    def hand_size(out: np.ndarray) -> float:
        return float(np.nanmean(np.abs(out[:, :, RIGHT_HAND] - out[:, :, 54:55])))

    assert hand_size(normalise(far)) < 0.7 * hand_size(normalise(x))


def test_without_both_shoulders_the_body_falls_back_to_its_own_cloud() -> None:
    x = signer()
    x[0, :, 12] = np.nan  # never both shoulders in sequence 0
    out = parts(x)
    body = np.r_[0:12, 13:33]
    centred = out[0][:, body]
    np.testing.assert_allclose(np.nanmean(centred, axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.nanmean(np.sum(centred**2, -1))), 1.0, atol=1e-5)
    only_hands = normalise(x[:, :, 33:], PartsLayout.of(HOLISTIC[33:]))
    assert only_hands.shape == (4, 12, 44, 3) and np.isfinite(only_hands[0]).all()


def test_unnamed_data_is_normalised_exactly_as_one_cloud(tmp_path: Path) -> None:
    assert PartsLayout.of(None) is None and PartsLayout.of(("a", "b")) is None
    x = signer()
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(4) % 2)
    options = {"frames": 12, "motion": False, "val_fraction": 0.5, "seed": 0}
    by_parts = load_data(str(tmp_path / "d.npz"), **options)
    as_before = load_data(str(tmp_path / "d.npz"), **options, normalise_mode="sequence")
    assert by_parts.joints is None and by_parts.num_joints == 75
    for name in ("train", "val"):
        np.testing.assert_array_equal(by_parts.split(name).x, as_before.split(name).x)


def test_numpy_preparation_and_torch_inference_agree() -> None:
    layout = PartsLayout.of(HOLISTIC)
    x = signer(n=3)
    x[2] = np.nan
    x[2, :, 40] = 0.25  # one still point: every scale floored
    expected = normalise(x, layout)
    got = torch_normalise(torch.from_numpy(x), layout).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, atol=1e-6, equal_nan=True)


def test_npz_with_mediapipe_names_keeps_the_selection(tmp_path: Path) -> None:
    x = signer(n=8)
    path = tmp_path / "holistic.npz"
    np.savez(path, x=x, y=np.arange(8) % 2, joints=np.array(HOLISTIC))
    notes = Notes()
    raw = load_source(str(path), reporter=notes)
    assert raw.x.shape[2] == 56 and raw.joints[0] == "pose_11" and raw.joints[13] == "pose_24"
    assert notes.notes == ["kept 56 of 75 landmarks (hands+pose+lips); set [data] landmarks "
                           "to change"]
    assert load_source(str(path), landmarks="hands").x.shape[2] == 42
    np.testing.assert_array_equal(load_source(str(path), landmarks="left_hand").x,
                                  x[:, :, LEFT_HAND])
    with pytest.raises(DataError, match="keep none of the data's 75 landmarks"):
        load_source(str(path), landmarks="lips")
    odd = tmp_path / "odd.npz"
    np.savez(odd, x=x, y=np.arange(8) % 2, joints=np.array(HOLISTIC[:-1] + ("thumb",)))
    assert load_source(str(odd)).x.shape[2] == 75  # not all MediaPipe names: every joint


def test_zero_filled_landmarks_are_missing_but_a_single_zero_is_kept(tmp_path: Path) -> None:
    x = signer(n=4)
    x[0, 2, LEFT_HAND] = 0.0  # an undetected hand, written as zeros
    x[1, 4, 40] = [0.0, 0.3, 0.0]  # on the image's left edge: a real point
    np.savez(tmp_path / "z.npz", x=x, y=np.arange(4) % 2)
    notes = Notes()
    raw = load_source(str(tmp_path / "z.npz"), reporter=notes)
    assert np.isnan(raw.x[0, 2, LEFT_HAND]).all()
    np.testing.assert_array_equal(raw.x[1, 4, 40], np.float32([0.0, 0.3, 0.0]))
    assert np.isfinite(raw.x[0, 3, LEFT_HAND]).all()
    share = 21 / (4 * 12 * 75 - 3 * 21)  # of the landmarks that were not NaN already
    assert notes.notes == [f"z.npz: {share:.1%} of landmark values were exactly zero and are "
                           "treated as missing"]
