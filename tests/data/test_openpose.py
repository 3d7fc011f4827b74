"""``openpose:DIR``: per-frame OpenPose JSON in its published schema, read to MediaPipe
names; confidence threshold, person choice; bad clips refused naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from slt_cli.cli import app
from slt_cli.data import ReadOptions, load_source
from slt_cli.data.landmarks import mirror_name
from tests.corpora import write_openpose


def test_clips_read_to_mediapipe_names_in_pixels(tmp_path: Path) -> None:
    written = write_openpose(tmp_path / "op")
    raw = load_source(f"openpose:{tmp_path / 'op'}")  # default hands+pose+lips
    assert raw.classes == ("sign0", "sign1", "sign2") and raw.x.shape[-1] == 2
    assert raw.signer.tolist() == [0, 1] * 3
    joints = list(raw.joints)
    assert "left_hand_0" in joints and "pose_right_wrist" in joints
    assert all(mirror_name(name) in joints for name in joints)  # mirroring pairs every point
    parts = written["clip_1_0"]
    right = raw.x[2, :, joints.index("right_hand_8")]
    want = parts["right_hand"][:, 8, :2] * 640
    want[(parts["right_hand"] == 0).all(axis=(1, 2))] = np.nan
    np.testing.assert_allclose(right, want, rtol=2e-3, equal_nan=True)
    wrist = raw.x[2, :, joints.index("pose_left_wrist")]
    np.testing.assert_allclose(wrist, parts["pose"][:, 15, :2] * 640, rtol=2e-3)


def test_threshold_and_the_most_confident_person(tmp_path: Path) -> None:
    write_openpose(tmp_path / "op", signs=2, clips=1, extra_person=True)
    spec = f"openpose:{tmp_path / 'op'}"
    first = load_source(spec, landmarks="hands")  # the faint person, listed first
    best = load_source(spec, landmarks="hands", options=ReadOptions(person="best"))
    assert np.nanmax(first.x) <= 100 < np.nanmax(best.x)
    gone = load_source(spec, landmarks="hands", options=ReadOptions(min_confidence=0.5))
    assert np.isnan(gone.x).all(axis=(2, 3)).sum() > 0
    assert np.isnan(gone.x).sum() > np.isnan(best.x).sum()


@pytest.mark.parametrize(("case", "words"), [
    ("no people", "no person in any frame"),
    ("missing frame", "frame 3 is missing"),
    ("not openpose", "not an OpenPose frame"),
    ("booleans", "must be 75 numbers"),
    ("not an object", "each of 'people' must be an object of keypoint lists, got list"),
    ("huge", "pose_keypoints_2d point 0 has x = 1e+300; coordinates beyond ±1e+06"),
    ("two files", "are both frame 2"),
])
def test_bad_clips_exit_2_naming_the_file(tmp_path: Path, case: str, words: str) -> None:
    root = tmp_path / "op"
    write_openpose(root, signs=2, clips=1)
    clip = root / "clip_1_0"
    frames = sorted(clip.iterdir())
    if case == "no people":
        for frame in frames:
            frame.write_text(json.dumps({"version": 1.3, "people": []}), encoding="utf-8")
        named = frames[0]
    elif case == "missing frame":
        frames[3].unlink()
        named = clip
    elif case in ("booleans", "not an object", "huge"):
        person = {"pose_keypoints_2d": [True] * 75} if case == "booleans" else [1, 2]
        if case == "huge":
            person = {"pose_keypoints_2d": [1e300] + [1.0] * 74}
        frames[2].write_text(json.dumps({"version": 1.3, "people": [person]}),
                             encoding="utf-8")
        named = frames[2]
    elif case == "two files":
        twin = frames[2].name.replace("_00000000000", "_0000000000")
        (clip / twin).write_text(frames[2].read_text(encoding="utf-8"), encoding="utf-8")
        named = clip
    else:
        frames[2].write_text(json.dumps({"version": 1.3}), encoding="utf-8")
        named = frames[2]
    result = CliRunner().invoke(app, ["data", "inspect", f"openpose:{root}"])
    assert result.exit_code == 2, result.output
    assert f"error: {named}" in result.stderr and words in result.stderr
