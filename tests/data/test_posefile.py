"""The pose source: a folder of pose-format ``.pose`` files and a labels.csv."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pose_format")

from slt_cli.data import load_data  # noqa: E402
from slt_cli.data.corpus import open_corpus, scan_corpus  # noqa: E402
from slt_cli.errors import DataError  # noqa: E402
from tests.corpora import write_pose_file, write_pose_folder  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pose_folder(tmp_path_factory.mktemp("pose") / "clips", with_split=True)


def test_holistic_files_keep_the_landmark_selection(corpus: Path) -> None:
    store = open_corpus(f"pose:{corpus}", "hands+pose+lips")
    assert len(store) == 18 and store.classes == ("sign0", "sign1", "sign2")
    assert store.frames.shape[1:] == (96, 3)
    assert store.joints[21] == "right_hand_0" and store.joints[42] == "pose_left_shoulder"
    assert store.split.tolist() == ["train"] * 12 + ["val"] * 6
    assert store.signer.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    left = np.isnan(store.frames[:, :21]).all(axis=(1, 2))
    assert 0 < left.mean() < 1  # masked (confidence 0) points are missing, others are not


def test_values_match_the_file(corpus: Path, tmp_path: Path) -> None:
    points = np.random.default_rng(0).uniform(size=(5, 33 + 468 + 21 + 21 + 33, 3))
    points[2, 33 + 468: 33 + 468 + 21] = np.nan  # left hand lost in frame 2
    folder = tmp_path / "one"
    folder.mkdir()
    write_pose_file(folder / "a.pose", points)
    (folder / "labels.csv").write_text("file,label\na.pose,hello\n", encoding="utf-8")
    store = open_corpus(f"pose:{folder}", "left_hand+pose")
    np.testing.assert_allclose(store.frames[:, :21], points[:, 501:522], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(store.frames[:, 21], points[:, 11], rtol=1e-3, atol=1e-3)
    assert np.isnan(store.frames[2, :21]).all() and not np.isnan(store.frames[1]).any()
    assert store.signer is None and store.split is None


def test_own_split_is_kept_when_training_data_is_prepared(corpus: Path) -> None:
    data = load_data(f"pose:{corpus}", frames=10, motion=False, val_fraction=0.2, seed=0)
    assert len(data.splits["train"]) == 12 and len(data.splits["val"]) == 6


def test_other_layouts_keep_every_point_with_mirror_names(tmp_path: Path) -> None:
    from pose_format.pose_header import PoseHeaderComponent

    components = [PoseHeaderComponent(name, [f"p{i}" for i in range(3)], [(0, 1)],
                                      [(0, 0, 0)], "XYC")
                  for name in ("hand_left_keypoints_2d", "hand_right_keypoints_2d")]
    rows = []
    for i in range(4):
        write_pose_file(tmp_path / f"{i}.pose", np.random.default_rng(i).uniform(size=(6, 6, 2)),
                        components)
        rows.append(f"{i}.pose,{'ab'[i % 2]}\n")
    (tmp_path / "labels.csv").write_text("file,label\n" + "".join(rows), encoding="utf-8")
    corpus = scan_corpus(f"pose:{tmp_path}", "hands")
    assert corpus.channels == 2 and corpus.settings == "all"
    assert corpus.joints[0] == "hand_left_keypoints_2d_0"
    from slt_cli.data.transforms import mirror_permutation

    assert mirror_permutation(corpus.joints) == [3, 4, 5, 0, 1, 2]


@pytest.mark.parametrize(("breakage", "named", "words"), [
    (lambda root: (root / "s0/clip1.pose").write_bytes(b"\x00junk"), "s0/clip1.pose",
     "not a readable .pose file"),
    (lambda root: (root / "s0/clip1.pose").unlink(), "s0/clip1.pose", "no such file"),
    (lambda root: (root / "labels.csv").write_text("file,label,split\ns0/clip0.pose,a,dev\n"),
     "labels.csv", "split 'dev'"),
    (lambda root: (root / "labels.csv").write_text("name,label\n"), "labels.csv",
     "missing column(s) file"),
    (lambda root: (root / "labels.csv").unlink(), "clips", "no labels.csv"),
])
def test_bad_folders_name_the_file(tmp_path: Path, breakage, named: str, words: str) -> None:
    root = write_pose_folder(tmp_path / "clips", signers=2, signs=2, repeats=1)
    breakage(root)
    with pytest.raises(DataError) as caught:
        open_corpus(f"pose:{root}", "hands")
    assert named in caught.value.message and words in caught.value.message


def test_a_file_of_another_layout_is_named(tmp_path: Path) -> None:
    from pose_format.pose_header import PoseHeaderComponent

    root = write_pose_folder(tmp_path / "clips", signers=2, signs=2, repeats=1)
    other = [PoseHeaderComponent("BODY", ["a", "b"], [(0, 1)], [(0, 0, 0)], "XYZC")]
    write_pose_file(root / "s1/clip0.pose", np.zeros((4, 2, 3)), other)
    with pytest.raises(DataError, match=r"s1/clip0.pose: its components differ"):
        open_corpus(f"pose:{root}", "hands")


def test_missing_pose_format_names_the_extra(corpus: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pose_format", None)
    with pytest.raises(DataError) as caught:
        scan_corpus(f"pose:{corpus}")
    assert "pose-format" in caught.value.message and '.[pose]' in caught.value.hint
