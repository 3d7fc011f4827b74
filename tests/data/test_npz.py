from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slt_cli.data import load_data, load_source
from slt_cli.errors import DataError


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def sequences(n: int = 40, frames: int = 10, joints: int = 3, channels: int = 2) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, frames, joints, channels)).astype(np.float32)
    y = np.arange(n) % 4
    return {"x": x, "y": y}


def test_loads_arrays_and_infers_lengths_from_padding(tmp_path: Path) -> None:
    arrays = sequences()
    arrays["x"][0, 7:] = np.nan  # sequence 0 has 7 real frames
    arrays["x"][1, 2, 0] = np.nan  # a missing landmark is not padding
    raw = load_source(str(write_npz(tmp_path / "d.npz", **arrays)))
    assert raw.x.shape == (40, 10, 3, 2) and raw.x.dtype == np.float32
    assert raw.lengths[0] == 7 and raw.lengths[1] == 10
    assert raw.classes == ("0", "1", "2", "3")
    assert raw.split is None and raw.signer is None


def test_npz_prefix_and_named_classes(tmp_path: Path) -> None:
    arrays = sequences()
    path = write_npz(tmp_path / "d.npz", **arrays, classes=np.array(["a", "b", "c", "d"]))
    assert load_source(f"npz:{path}").classes == ("a", "b", "c", "d")


@pytest.mark.parametrize(("change", "message"), [
    ({"x": np.zeros((4, 3, 2), np.float32)}, "'x' must be a float array"),
    ({"y": np.zeros(39, np.int64)}, "'y' must be integers of shape"),
    ({"y": np.full(40, -1)}, "negative class"),
    ({"classes": np.array(["a"])}, "'classes' names only 1"),
    ({"split": np.array(["train"] * 39 + ["dev"])}, "'split' must be"),
    ({"lengths": np.full(40, 11)}, "'lengths' must be"),
    ({"joints": np.array(["a", "b"])}, "'joints' names 2 landmarks"),
    ({"classes": np.array(["yes", "no", "yes"])}, "'classes' names 'yes' twice"),
    ({"classes": np.array(["a", "b\x1b[2J", "c", "d"])},
     "'classes' holds a name with a control character: 'b\\x1b[2J'"),
])
def test_malformed_files_name_the_file_and_array(tmp_path: Path, change: dict,
                                                 message: str) -> None:
    arrays = {**sequences(), **change}
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as caught:
        load_source(str(path))
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_unknown_arrays_are_a_note_and_ignored(tmp_path: Path) -> None:
    from slt_cli.common.reporting import RecordingReporter

    path = write_npz(tmp_path / "d.npz", **sequences(), fps=np.float64(30),
                     meta=np.array([{"a": 1}], dtype=object))  # never unpickled either
    reporter = RecordingReporter()
    raw = load_source(str(path), reporter=reporter)
    assert raw.num_sequences == 40
    assert any("ignored unknown array(s) fps, meta" in note for note in reporter.named("note"))


def test_missing_x_missing_file_and_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing array 'x'"):
        load_source(str(write_npz(tmp_path / "a.npz", y=np.zeros(3, np.int64))))
    with pytest.raises(DataError, match="no such data file"):
        load_source(str(tmp_path / "absent.npz"))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_source(str(junk))


def test_object_arrays_are_refused_never_unpickled(tmp_path: Path) -> None:
    arrays = sequences()
    path = write_npz(tmp_path / "pickled.npz", **arrays,
                     classes=np.array([{"a": 1}, 2, 3, 4], dtype=object))
    with pytest.raises(DataError, match="is an object array; slt never unpickles data"):
        load_source(str(path))


def test_unknown_source_and_bad_synthetic_options() -> None:
    with pytest.raises(DataError, match="unknown data source 'mnist'"):
        load_source("mnist")
    with pytest.raises(DataError, match="unknown option 'colour=3'"):
        load_source("synthetic:colour=3")
    with pytest.raises(DataError, match="classes must be an integer"):
        load_source("synthetic:classes=many")
    with pytest.raises(DataError, match="classes is given twice"):
        load_source("synthetic:classes=4,classes=6")


def test_own_split_is_kept_and_prepared_to_fixed_length(tmp_path: Path) -> None:
    arrays = sequences()
    split = np.array(["train"] * 24 + ["val"] * 8 + ["test"] * 8)
    path = write_npz(tmp_path / "d.npz", **arrays, split=split)
    data = load_data(str(path), frames=16, motion=True, val_fraction=0.2, seed=0)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 24, "val": 8, "test": 8}
    assert data.splits["train"].x.shape == (24, 16, 3, 2)
    np.testing.assert_array_equal(data.splits["test"].y, arrays["y"][32:])


def test_stratified_split_without_signers(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", **sequences(n=80))
    data = load_data(str(path), frames=8, motion=False, val_fraction=0.25, seed=3)
    assert np.bincount(data.splits["val"].y).tolist() == [5, 5, 5, 5]
    assert "test" not in data.splits
    with pytest.raises(DataError, match="no 'test' split"):
        data.split("test")


def test_signer_independent_split(tmp_path: Path) -> None:
    arrays = sequences(n=80)
    signer = np.repeat(np.arange(8), 10)
    path = write_npz(tmp_path / "d.npz", **arrays, signer=signer)
    raw = load_source(str(path))
    from slt_cli.data.preprocess import assign_splits

    labels = assign_splits(raw, 0.25, seed=1)
    val_people = set(signer[labels == "val"].tolist())
    train_people = set(signer[labels == "train"].tolist())
    assert len(val_people) == 2 and not val_people & train_people
    assert assign_splits(raw, 0.25, seed=1).tolist() == labels.tolist()  # seeded


def test_validation_without_a_trained_class_is_a_note_not_an_error(tmp_path: Path) -> None:
    from slt_cli import RecordingReporter

    arrays = sequences()
    # Class 3's people are all in training: validation can only score classes 0-2.
    arrays["split"] = np.where((np.arange(40) % 5 == 0) & (arrays["y"] != 3), "val", "train")
    reporter = RecordingReporter()
    data = load_data(str(write_npz(tmp_path / "d.npz", **arrays)), frames=8, motion=True,
                     val_fraction=0.2, seed=0, reporter=reporter)
    assert set(data.split("val").y.tolist()) == {0, 1, 2}
    (note,) = reporter.named("note")
    assert "validation has no sequence of class '3'" in note


def test_sequences_with_no_landmark_are_left_out_with_a_note(tmp_path: Path) -> None:
    from slt_cli import RecordingReporter

    arrays = sequences()
    arrays["x"][7] = 0.0  # a clip in which nothing was detected, written as zeros
    arrays["x"][9] = np.nan
    arrays["signer"] = np.arange(40) % 5
    reporter = RecordingReporter()
    raw = load_source(str(write_npz(tmp_path / "d.npz", **arrays)), reporter=reporter)
    assert raw.x.shape[0] == 38 and len(raw.y) == len(raw.lengths) == len(raw.signer) == 38
    assert raw.y.tolist() == [i % 4 for i in range(40) if i not in (7, 9)]
    assert any("left out 2 sequence(s) with no landmark at all" in note and "index 7" in note
               for note in reporter.named("note"))
