"""``slt extract``, ``slt predict`` on a clip and ``slt live``, through the stand-in of
``tests/video_standin.py`` (no MediaPipe, no OpenCV); the real clips of the shared
datasets only when mediapipe and the folder are there."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from slt_cli.common.extras import installed
from tests import video_standin
from tests.cli import slt
from tests.video_standin import Detector, write_clip

MODEL = "best_model_stage_1"
REAL_CLIPS = Path("/work/shared/datasets/videos")


@pytest.fixture(autouse=True)
def standin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slt_cli.video.backend.load_backend", video_standin.backend)
    monkeypatch.setattr(Detector, "frames_seen", 0)
    monkeypatch.setattr(Detector, "stop_after", None)


def clips(root: Path) -> Path:
    write_clip(root / "yes" / "a.mp4", 5)
    write_clip(root / "yes" / "b.MP4", 4)
    write_clip(root / "no" / "c.mp4", 6)
    return root


def test_extract_writes_frame_folders_that_read_back_without_a_layout(tmp_path: Path) -> None:
    source, out = clips(tmp_path / "videos"), tmp_path / "MP_Data"
    (source / "no" / "broken.mp4").write_bytes(b"\x00not a video")
    result = slt("extract", str(source), "--out", str(out), "--jobs", "2")
    assert result.exit_code == 2
    assert "broken.mp4: cannot be decoded" in result.stderr
    assert "error: 1 of 4 clip(s) could not be decoded" in result.stderr
    frames = sorted(p.name for p in (out / "yes" / "a").iterdir())
    assert frames == [f"{i}.npy" for i in range(5)]
    first, second = (np.load(out / "yes" / "a" / f"{i}.npy") for i in (0, 1))
    assert first.shape == (1662,) and first.dtype == np.float32
    truth = video_standin.landmarks(0)
    assert np.allclose(first[:132], truth["pose"].ravel())  # pose x, y, z, visibility
    assert np.allclose(first[132:1536], truth["face"][:, :3].ravel())
    assert not second[1536:1599].any() and second[1599:].any()  # no left hand: zeros
    layout = json.loads((out / "layout.json").read_text())
    assert layout["layout"] == "pose+face+left_hand+right_hand"
    assert "left hand" in result.stdout and "0.60" in result.stdout  # a: frames 0, 2, 4 of 5
    inspected = slt("data", "inspect", f"mediapipe:{out}", "--json")
    assert inspected.exit_code == 0, inspected.output
    summary = json.loads(inspected.stdout)
    assert (summary["sequences"], summary["classes"]) == (3, 2)
    assert "as layout.json states" in inspected.stderr
    (source / "no" / "broken.mp4").unlink()
    seen = Detector.frames_seen
    again = slt("extract", str(source), "--out", str(out))
    assert again.exit_code == 0, again.output
    assert "3 clip(s) were there already" in again.stderr and Detector.frames_seen == seen


def test_extract_to_npz_keeps_signers_names_and_missing_parts(tmp_path: Path) -> None:
    for signer in ("ann", "bob"):
        clips(tmp_path / "videos" / signer)
    out = tmp_path / "clips.npz"
    result = slt("extract", str(tmp_path / "videos"), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["output"] for r in rows][:2] == ["ann/no/c", "ann/yes/a"]
    assert rows[0]["detected"]["left_hand"] == 0.5
    with np.load(out) as data:
        assert data["x"].shape == (6, 6, 543, 3) and data["x"].dtype == np.float32
        assert list(data["classes"]) == ["no", "yes"] and list(data["y"][:3]) == [0, 1, 1]
        assert list(data["signer"]) == ["ann"] * 3 + ["bob"] * 3
        assert list(data["lengths"][:3]) == [6, 5, 4]
        joints = list(data["joints"])
        left = joints.index("left_hand_0")
        assert np.isnan(data["x"][0, 1, left]).all() and not np.isnan(data["x"][0, 0, left]).any()
        assert np.isnan(data["x"][1, 5]).all()  # padding after a's 5 frames
        assert "pose_left_wrist" in joints
    assert not list(tmp_path.glob(".clips.npz*"))  # the parts are gone
    refused = slt("extract", str(tmp_path / "videos"), "--out", str(out))
    assert refused.exit_code == 2 and "--overwrite" in refused.stderr


def test_a_stopped_extract_leaves_whole_clips_only_and_carries_on(tmp_path: Path) -> None:
    source, out = clips(tmp_path / "videos"), tmp_path / "out"
    dead = out / "yes" / ".b.slt-999999999-0123abcd.tmp"  # what a killed run left
    dead.mkdir(parents=True)
    (dead / "0.npy").write_bytes(b"x")
    (out / "layout.json").write_text(json.dumps({"format": "slt mediapipe frames",
                                                 "layout": "pose+face+left_hand+right_hand"}))
    Detector.stop_after = 8  # c (6 frames) done, then a stops at its 3rd frame
    stopped = slt("extract", str(source), "--out", str(out))
    assert stopped.exit_code == 130 and "carries on" in stopped.stderr
    assert (out / "no" / "c").is_dir() and not (out / "yes" / "a").exists()
    assert not [p for p in out.rglob(".*") if p.name != "layout.json"]
    Detector.stop_after = None
    again = slt("extract", str(source), "--out", str(out))
    assert again.exit_code == 0 and "1 clip(s) were there already" in again.stderr


@pytest.mark.parametrize(("setup", "message"), [
    ("link", "is a symbolic link"),
    ("foreign", "holds files slt extract did not write"),
])
def test_extract_refuses_an_output_it_may_not_write(tmp_path: Path, setup: str,
                                                    message: str) -> None:
    source, out = clips(tmp_path / "videos"), tmp_path / "out"
    if setup == "link":
        (tmp_path / "elsewhere").mkdir()
        out.symlink_to(tmp_path / "elsewhere")
    else:
        (out / "yes" / "1").mkdir(parents=True)
    result = slt("extract", str(source), "--out", str(out))
    assert result.exit_code == 2 and message in result.stderr
    assert Detector.frames_seen == 0


def test_extract_without_the_extra_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real backend, with mediapipe seen as absent
    monkeypatch.setattr("slt_cli.common.extras.installed", lambda module: False)
    result = slt("extract", str(tmp_path / "a.mp4"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: slt extract (MediaPipe Holistic) needs mediapipe")
    assert "pip install 'slt[video]'" in result.stderr


def test_predict_on_a_clip_scores_the_whole_clip_and_every_window(
        tmp_path: Path, tiny_checkpoint: Path) -> None:
    clip = write_clip(tmp_path / "hello.mp4", 20)
    result = slt("predict", MODEL, str(clip), "--json", "--checkpoint-dir", str(tiny_checkpoint))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["window"] is None and len(rows) == 1 + 20 - 12 + 1
    assert rows[1]["window"] == {"start": 0, "end": 12} and rows[-1]["window"]["end"] == 20
    assert all(len(row["top"]) == 4 for row in rows)
    table = slt("predict", MODEL, str(clip), "--checkpoint-dir", str(tiny_checkpoint))
    assert table.exit_code == 0 and "all frames" in table.stdout and "frames " in table.stdout


def test_live_on_a_clip_prints_changes_and_writes_json_lines(
        tmp_path: Path, tiny_checkpoint: Path) -> None:
    clip, lines = write_clip(tmp_path / "hello.mp4", 20), tmp_path / "live.jsonl"
    result = slt("live", MODEL, "--source", str(clip), "--threshold", "0", "--smooth", "2",
                 "--jsonl", str(lines), "--checkpoint-dir", str(tiny_checkpoint))
    assert result.exit_code == 0, result.output
    assert "20 frames in" in result.stderr and "frames/s" in result.stderr
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(records) == 20 and records[10]["top"] == [] and records[11]["sign"]
    assert records[11]["seconds"] == pytest.approx(11 / 25)
    assert records[11]["sign"] in result.stdout and "frame     11" in result.stdout
    again = slt("live", MODEL, "--source", str(clip), "--jsonl", str(lines),
                "--checkpoint-dir", str(tiny_checkpoint))
    assert again.exit_code == 2 and "--force" in again.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.skipif(not (installed("mediapipe") and REAL_CLIPS.is_dir()),
                    reason="needs slt[video] and the shared clips")
def test_real_clip_parts_as_the_datasets_readme_measured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = slt("extract", str(REAL_CLIPS / "slp-pose_SOUP.mp4"), "--out",
                 str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["frames"] == 41
    shares = row["detected"]
    assert shares["pose"] == 1.0 and shares["face"] == 1.0
    assert shares["left_hand"] == pytest.approx(0.98, abs=0.05)
    assert shares["right_hand"] == pytest.approx(0.85, abs=0.05)
