"""The GISLR source: Kaggle's parquet layout, its cache, and its mistakes."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

from slt_cli.common.reporting import RecordingReporter  # noqa: E402
from slt_cli.data import (  # noqa: E402
    gislr,  # noqa: E402
    load_data,
    load_source,
    prepare,
)
from slt_cli.data.cache import cache_root  # noqa: E402
from slt_cli.data.corpus import ensure_store, open_corpus, scan_corpus  # noqa: E402
from slt_cli.data.preprocess import split_labels  # noqa: E402
from slt_cli.errors import DataError  # noqa: E402
from tests.corpora import write_gislr  # noqa: E402

FIRST = "train_landmark_files/10000/0.parquet"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gislr(tmp_path_factory.mktemp("gislr") / "asl")


@pytest.fixture
def own_corpus(corpus: Path, tmp_path: Path) -> Path:
    """A copy the test may change (its cache is its own: another path)."""
    return Path(shutil.copytree(corpus, tmp_path / "asl"))


class Progress(RecordingReporter):
    def task_progress(self, **info: object) -> None:
        self.events.append(("task_progress", info))


def test_reads_the_kaggle_schema_into_named_landmarks(corpus: Path) -> None:
    store = open_corpus(f"gislr:{corpus}", "hands+pose+lips")
    assert len(store) == 18 and store.classes == ("sign0", "sign1", "sign2")
    assert store.frames.dtype == np.float16 and store.frames.shape[1:] == (96, 3)
    assert store.joints[:2] == ("left_hand_0", "left_hand_1")
    assert store.joints[42:44] == ("pose_left_shoulder", "pose_right_shoulder")
    assert store.joints[56] == "face_61"
    # Sequence 0 against its parquet file, landmark by landmark, NaN hands included.
    table = pq.read_table(corpus / FIRST).to_pydict()
    frames = sorted(set(table["frame"]))
    first = store.frames[: store.offsets[1]]
    assert len(first) == len(frames)
    for type_, index, column in (("right_hand", 3, 24), ("pose", 15, 42 + 4), ("face", 61, 56),
                                 ("left_hand", 0, 0)):
        rows = [i for i, (t, k) in enumerate(zip(table["type"], table["landmark_index"],
                                                 strict=True)) if t == type_ and k == index]
        expected = np.array([[table[c][i] for c in "xyz"] for i in rows], np.float32)
        np.testing.assert_allclose(first[:, column], expected, rtol=2e-3, atol=1e-3)
    assert np.isnan(first[:, :21]).all(axis=(1, 2)).any()  # undetected left hand stays NaN
    assert store.signer.tolist() == [0] * 6 + [1] * 6 + [2] * 6


def test_class_indices_follow_the_map_file(own_corpus: Path) -> None:
    (own_corpus / "sign_to_prediction_index_map.json").write_text(
        json.dumps({"sign2": 0, "sign0": 1, "sign1": 2}), encoding="utf-8")
    store = open_corpus(f"gislr:{own_corpus}", "hands")
    assert store.classes == ("sign2", "sign0", "sign1")
    assert store.y[:6].tolist() == [1, 1, 2, 2, 0, 0]  # rows say sign0, sign0, sign1, ...


def test_row_order_does_not_matter(own_corpus: Path) -> None:
    path = own_corpus / FIRST
    before = open_corpus(f"gislr:{own_corpus}", "hands+pose").frames[:20].copy()
    table = pq.read_table(path)
    order = np.random.default_rng(0).permutation(table.num_rows)
    pq.write_table(table.take(order), path)
    after = open_corpus(f"gislr:{own_corpus}", "hands+pose").frames[:20]
    np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize(("landmarks", "count"), [("hands", 42), ("pose", 14), ("lips", 40),
                                                   ("hands+face", 42 + 468),
                                                   ("right_hand+lips+face", 21 + 468)])
def test_landmark_selection(corpus: Path, landmarks: str, count: int) -> None:
    assert len(scan_corpus(f"gislr:{corpus}", landmarks).joints) == count


def test_validation_holds_out_whole_participants_and_splits_are_memory_mapped(
        corpus: Path) -> None:
    data = load_data(f"gislr:{corpus}", frames=12, motion=True, val_fraction=0.34, seed=0)
    train, val = data.splits["train"], data.splits["val"]
    assert isinstance(train.x, np.memmap) and train.x.dtype == np.float32
    assert (len(train), len(val)) == (12, 6)  # 2 of 3 participants train, 1 validates
    assert data.source == f"gislr:{corpus.resolve()}"
    # The same participants and numbers as preparing the whole corpus in memory.
    raw = load_source(f"gislr:{corpus}")
    labels = split_labels(raw.y, raw.signer, None, 0.34, 0)
    assert not set(raw.signer[labels == "val"]) & set(raw.signer[labels == "train"])
    dense = prepare(raw, frames=12, motion=True, val_fraction=0.34, seed=0, source="x")
    np.testing.assert_allclose(np.asarray(val.x), dense.splits["val"].x, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(val.y, dense.splits["val"].y)


def test_parallel_conversion_equals_serial(corpus: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLT_CACHE_DIR", str(tmp_path / "serial"))
    serial = ensure_store(scan_corpus(f"gislr:{corpus}"), workers=1)
    monkeypatch.setenv("SLT_CACHE_DIR", str(tmp_path / "parallel"))
    parallel = ensure_store(scan_corpus(f"gislr:{corpus}"), workers=2, chunk=4)
    np.testing.assert_array_equal(serial.frames, parallel.frames)
    np.testing.assert_array_equal(serial.offsets, parallel.offsets)
    assert serial.missing.tolist() == parallel.missing.tolist()


def test_cache_is_reused_then_rebuilt_when_a_file_changes(own_corpus: Path) -> None:
    spec = f"gislr:{own_corpus}"
    first = Progress()
    store = open_corpus(spec, "hands", first)
    assert first.named("task_progress")[-1]["done"] == 18
    again = Progress()
    assert open_corpus(spec, "hands", again).folder == store.folder
    assert again.events == []  # opened, not converted
    path = own_corpus / FIRST
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    changed = Progress()
    rebuilt = open_corpus(spec, "hands", changed)
    assert rebuilt.folder != store.folder and changed.named("task_progress")
    assert not store.folder.exists()  # the stale store is gone
    assert open_corpus(spec, "hands+pose").folder != rebuilt.folder  # selection is in the key


@pytest.mark.parametrize("damage", ["truncate", "manifest", "index"])
def test_damaged_cache_is_rebuilt_never_trusted(own_corpus: Path, damage: str) -> None:
    spec = f"gislr:{own_corpus}"
    store = open_corpus(spec, "hands")
    expected = np.array(store.frames)
    folder = store.folder
    if damage == "truncate":
        with open(folder / "frames.f16", "r+b") as file:
            file.truncate(100)
    elif damage == "manifest":
        (folder / "manifest.json").write_text("{not json", encoding="utf-8")
    else:
        (folder / "index.npz").write_bytes(b"garbage")
    reporter = Progress()
    again = open_corpus(spec, "hands", reporter)
    assert any("rebuilding the cache" in note for note in reporter.named("note"))
    np.testing.assert_array_equal(np.array(again.frames), expected)


def test_the_cache_goes_to_the_user_cache_folder_never_into_the_data(
        own_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(home))
    store = open_corpus(f"gislr:{own_corpus}", "hands")
    tag = store.folder.parent.name  # the corpus's name and a hash of its resolved path
    assert store.folder.parent.parent == home / ".cache" / "slt" and tag.startswith("asl-")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert open_corpus(f"gislr:{own_corpus}", "hands").folder.parent == tmp_path / "xdg/slt" / tag
    monkeypatch.setenv("SLT_CACHE_DIR", str(tmp_path / "mine"))
    moved = tmp_path / "moved"
    shutil.copytree(own_corpus, moved)
    elsewhere = open_corpus(f"gislr:{moved}", "hands")  # another path: another folder
    assert elsewhere.folder.parent.parent == tmp_path / "mine"
    assert elsewhere.folder.parent.name.startswith("moved-")
    assert not (own_corpus / ".slt-cache").exists() and not (moved / ".slt-cache").exists()


def test_an_earlier_slts_cache_in_the_data_is_read_never_written(
        own_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """slt 0.1 kept its stores in DIR/.slt-cache: a fresh one is still used (no second
    conversion), what it lacks is written to the user's cache, and a stale one is left
    alone, with a note that it can go."""
    spec = f"gislr:{own_corpus}"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    made = open_corpus(spec, "hands").folder
    old = own_corpus / ".slt-cache" / made.name  # where slt 0.1 put the same store
    old.parent.mkdir()
    shutil.move(made, old)
    before = sorted(p.relative_to(own_corpus) for p in own_corpus.rglob("*"))
    reporter = Progress()
    data = load_data(spec, frames=10, motion=True, val_fraction=0.34, seed=0,
                     landmarks="hands", reporter=reporter)
    assert not [e for e in reporter.events if e[0] == "task_progress"
                and str(e[1]["task"]).startswith("converting")]  # read, not converted
    assert sorted(p.relative_to(own_corpus) for p in own_corpus.rglob("*")) == before
    (prepared,) = (tmp_path / "user-cache" / "slt").glob("asl-*/*-prepared/prepared-10-*")
    assert old.name in prepared.parent.name and len(data.splits["train"].y) > 0
    os.utime(own_corpus / FIRST, ns=(1, 1))  # a corpus file changed: the old store is stale
    reporter = Progress()
    store = open_corpus(spec, "hands", reporter)
    assert (tmp_path / "user-cache" / "slt") in store.folder.parents
    assert old.is_dir() and sorted(p.relative_to(own_corpus) for p in own_corpus.rglob("*")
                                   ) == before  # slt's own, but in the user's data: left
    assert any(f"{own_corpus / '.slt-cache'}: caches an earlier slt kept inside the data"
               in note and "deleting it is safe" in note for note in reporter.named("note"))


def _drop_column(path: Path) -> None:
    pq.write_table(pq.read_table(path).drop_columns(["landmark_index"]), path)


@pytest.mark.parametrize(("breakage", "named", "words"), [
    (lambda root: (root / FIRST).unlink(), FIRST, "no such file"),
    (lambda root: _drop_column(root / FIRST), FIRST, "missing column(s) landmark_index"),
    (lambda root: (root / FIRST).write_bytes(b"not parquet"), FIRST, "not a readable parquet"),
    (lambda root: (root / "train.csv").write_text(
        "path,participant_id,sequence_id,sign\na.parquet,1,1,hello\n"), "train.csv",
     "sign 'hello' is not in sign_to_prediction_index_map.json"),
    (lambda root: (root / "train.csv").unlink(), "asl", "no train.csv"),
    (lambda root: (root / "sign_to_prediction_index_map.json").write_text("[1, 2]"),
     "sign_to_prediction_index_map.json", "distinct class index"),
])
def test_bad_corpora_name_the_file(own_corpus: Path, breakage, named: str, words: str) -> None:
    breakage(own_corpus)
    with pytest.raises(DataError) as caught:
        open_corpus(f"gislr:{own_corpus}", "hands")
    assert named in caught.value.message and words in caught.value.message
    assert not list(cache_root(own_corpus).glob(".tmp-*"))  # no half-written store


def test_a_parquet_file_longer_than_any_sign_is_refused_before_it_is_read(
        own_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gislr, "MAX_FRAMES", 2)  # the files hold more frames than this
    with pytest.raises(DataError) as caught:
        open_corpus(f"gislr:{own_corpus}", "hands")
    assert ".parquet" in caught.value.message and "more than 2 frames" in caught.value.message


def test_empty_folder_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no sign_to_prediction_index_map.json"):
        open_corpus(f"gislr:{tmp_path / 'empty'}", "hands")
    with pytest.raises(DataError, match="no such folder"):
        open_corpus(f"gislr:{tmp_path / 'absent'}", "hands")


def test_missing_pyarrow_names_the_extra(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(DataError) as caught:
        scan_corpus(f"gislr:{corpus}")
    assert "pyarrow" in caught.value.message and '.[gislr]' in caught.value.hint


def test_damaged_prepared_splits_are_rebuilt(own_corpus: Path) -> None:
    spec = f"gislr:{own_corpus}"
    first = load_data(spec, frames=10, motion=True, val_fraction=0.34, seed=0)
    expected = np.array(first.splits["train"].x)
    (x_file,) = cache_root(own_corpus).glob("gislr-*/prepared-10-*/train_x.npy")
    with open(x_file, "r+b") as file:
        file.truncate(x_file.stat().st_size // 2)
    reporter = Progress()
    again = load_data(spec, frames=10, motion=True, val_fraction=0.34, seed=0,
                      reporter=reporter)
    np.testing.assert_array_equal(np.array(again.splits["train"].x), expected)
    assert any("rebuilding" in note for note in reporter.named("note"))
    # Another frame count is prepared beside it, from the same store.
    assert load_data(spec, frames=6, motion=True, val_fraction=0.34,
                     seed=0).splits["train"].x.shape[1] == 6
