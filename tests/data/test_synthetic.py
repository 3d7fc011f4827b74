"""Tests for the synthetic sign generator: layout, determinism, NaN rules, splits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from slt_cli.data.synthetic import JOINTS, POSE_JOINTS, SyntheticSpec, generate
from slt_cli.errors import DataError

SMALL = SyntheticSpec(classes=4, signers=5, repeats=3, frames=16, val_signers=1,
                      test_signers=1, seed=3)
HAND = {side: [JOINTS.index(f"{side}_hand_{i}") for i in range(21)] for side in ("left", "right")}
POSE = list(range(len(POSE_JOINTS)))


@pytest.fixture(scope="module")
def default():
    return generate(SyntheticSpec())


@pytest.fixture(scope="module")
def small():
    return generate(SMALL)


def test_shapes_dtypes_and_names(small):
    n = 4 * 5 * 3
    assert small.x.shape == (n, 16, 53, 3) and small.x.dtype == np.float32
    assert small.y.shape == small.lengths.shape == small.signer.shape == small.split.shape == (n,)
    assert small.y.dtype == small.lengths.dtype == small.signer.dtype == np.int64
    assert small.classes == ("sign_000", "sign_001", "sign_002", "sign_003")
    assert small.joints == JOINTS and len(JOINTS) == 53
    assert JOINTS[:4] == ("pose_nose", "pose_left_eye", "pose_right_eye", "pose_left_shoulder")
    assert JOINTS[11] == "left_hand_0" and JOINTS[-1] == "right_hand_20"
    # Every sided joint has its mirror twin, so a flip augmentation can swap by name.
    for name in JOINTS:
        twin = name.replace("left", "@").replace("right", "left").replace("@", "right")
        assert twin in JOINTS
    assert np.bincount(small.y).tolist() == [15] * 4  # each class once per signer and repeat


def test_default_size_and_lengths(default):
    assert default.x.shape == (2880, 48, 53, 3)
    assert default.lengths.min() >= 24 and default.lengths.max() == 48
    assert len(np.unique(default.lengths)) > 10  # tempo really varies


def test_same_seed_same_data_other_seed_other_data(small):
    again = generate(SMALL)
    np.testing.assert_array_equal(again.x, small.x)  # NaN positions included
    for field in ("y", "lengths", "signer", "split"):
        np.testing.assert_array_equal(getattr(again, field), getattr(small, field))
    other = generate(dataclasses.replace(SMALL, seed=4))
    assert not np.array_equal(np.isnan(other.x), np.isnan(small.x))
    assert np.nanmax(np.abs(np.nan_to_num(other.x) - np.nan_to_num(small.x))) > 0.05


def test_nan_only_in_padding_and_whole_hands(default):
    x, lengths = default.x, default.lengths
    inside = np.arange(x.shape[1])[None, :] < lengths[:, None]
    assert np.isnan(x[~inside]).all()  # padding after each sequence's end
    assert not np.isnan(x[:, :, POSE][inside]).any()  # the body is always found
    for side, idx in HAND.items():
        missing = np.isnan(x[:, :, idx][inside])  # (frames, 21, 3)
        whole = missing.all(axis=(1, 2))
        assert (missing.any(axis=(1, 2)) == whole).all(), side  # a hand is lost whole
        assert 0.02 < whole.mean() < 0.6, side


def test_lost_hands_come_in_bursts(default):
    inside = np.arange(48)[None, :] < default.lengths[:, None]
    lost = np.isnan(default.x[:, :, HAND["right"][0], 0]) & inside
    # A frame after a lost frame is lost far more often than a frame at random.
    after_lost = lost[:, 1:][lost[:, :-1] & inside[:, 1:]].mean()
    assert after_lost > 3 * lost[inside].mean()


def test_coordinates_are_image_like(default):
    xy = default.x[..., :2]
    lo, hi = np.nanpercentile(xy, [1, 99])
    assert lo > -0.1 and hi < 1.1
    left, right = (default.x[:, :, JOINTS.index(f"pose_{s}_shoulder")] for s in ("left", "right"))
    # The camera faces the signer: the signer's left shoulder is on the image's right.
    assert (left[..., 0] > right[..., 0])[~np.isnan(left[..., 0])].mean() > 0.99
    width = np.nanmean(np.linalg.norm(left - right, axis=-1), axis=1)
    hand = default.x[:, :, HAND["right"][0]] - default.x[:, :, HAND["right"][12]]
    hand_length = np.nanmedian(np.linalg.norm(hand, axis=-1), axis=1)
    ratio = np.nanmedian(hand_length / width)
    assert 0.3 < ratio < 0.6  # a hand is about half a shoulder width long
    # Signers differ in size far more than one signer's recordings do.
    per_signer = [width[default.signer == s] for s in range(12)]
    spread_between = np.std([w.mean() for w in per_signer])
    assert spread_between > 3 * np.mean([w.std() for w in per_signer])


def test_splits_are_signer_disjoint_and_cover_every_class(default, small):
    expected = ((default, {"val": {8, 9}, "test": {10, 11}}), (small, {"val": {3}, "test": {4}}))
    for data, held in expected:
        signers = {s: set(data.signer[data.split == s].tolist()) for s in ("train", "val", "test")}
        assert signers["val"] == held["val"] and signers["test"] == held["test"]
        assert not signers["train"] & (signers["val"] | signers["test"])
        for split in ("train", "val", "test"):
            assert set(data.y[data.split == split].tolist()) == set(range(len(data.classes)))


def test_some_signers_are_left_handed(default):
    # The dominant wrist travels; the other rests for most signs. Compare how much each
    # pose wrist moves, per signer.
    moves = {}
    for side in ("left", "right"):
        wrist = default.x[:, :, JOINTS.index(f"pose_{side}_wrist"), :2]
        moves[side] = np.nanstd(wrist, axis=1).sum(-1)
    left_more = np.array([(moves["left"] > moves["right"])[default.signer == s].mean()
                          for s in range(12)])
    lefties = np.flatnonzero(left_more > 0.5)
    assert 1 <= len(lefties) <= 6
    assert (left_more[left_more <= 0.5] < 0.3).all()  # right-handers really use the right
    assert any(default.split[default.signer == s][0] == "train" for s in lefties)


def test_no_test_split_when_asked(small):
    data = generate(dataclasses.replace(SMALL, test_signers=0))
    assert set(data.split.tolist()) == {"train", "val"}
    assert set(data.signer[data.split == "val"].tolist()) == {4}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"classes": 1}, "classes must be >= 2"),
        ({"signers": 2}, "signers (2) must exceed val_signers + test_signers (2)"),
        ({"repeats": 0}, "repeats must be >= 1"),
        ({"frames": 3}, "frames must be >= 4"),
        ({"val_signers": 0}, "val_signers must be >= 1"),
        ({"test_signers": -1}, "test_signers must be >= 0"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"classes": 2.5}, "classes must be an integer, got 2.5"),
        ({"repeats": True}, "repeats must be an integer, got True"),
        ({"classes": 10**5, "signers": 100}, "GiB of memory"),
    ],
)
def test_impossible_specs_are_data_errors(change, words):
    with pytest.raises(DataError) as caught:
        generate(dataclasses.replace(SMALL, **change))
    assert words in str(caught.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(DataError) as caught:
        generate(SyntheticSpec(classes=0, repeats=0, frames=1))
    lines = str(caught.value).splitlines()
    assert [line.split(" must")[0] for line in lines] == [
        "synthetic: classes", "synthetic: repeats", "synthetic: frames"]
