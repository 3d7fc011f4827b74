"""``mediapipe:DIR``: the tutorial's frame folders in every published layout, their
order found from the data, bad trees refused naming the file, and the two real samples
of ../shared/datasets/mediapipe-dev read to the landmarks its npz holds."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from slt_cli.cli import app
from slt_cli.common.reporting import RecordingReporter
from slt_cli.data import ReadOptions, load_source
from slt_cli.data.landmarks import parse_joint
from slt_cli.errors import DataError
from tests.corpora import MP_PART_ORDER, write_mediapipe

REAL = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mediapipe-dev"
ALL = "hands+pose+face"


def expected(parts: dict[str, np.ndarray], joints: tuple[str, ...]) -> np.ndarray:
    """The (frames, J, 3) a reader must give for ``joints``: zero parts as NaN."""
    masked = {}
    for part, block in parts.items():
        masked[part] = block[:, :, :3].astype(np.float64)
        masked[part][(block == 0).all(axis=(1, 2))] = np.nan
    return np.stack([masked[j.part][:, j.index] for j in map(parse_joint, joints)], axis=1)


LAYOUTS = [  # (order, face points, hand values): 1662 in each order, 1692, 1704, 258, 126
    (MP_PART_ORDER, 468, 3),
    (("pose", "left_hand", "right_hand", "face"), 468, 3),
    (("face", "pose", "left_hand", "right_hand"), 468, 3),
    (MP_PART_ORDER, 478, 3),
    (MP_PART_ORDER, 468, 4),
    (("pose", "left_hand", "right_hand"), 468, 3),
    (("left_hand", "right_hand"), 468, 3),
]


@pytest.mark.parametrize(("order", "face_points", "hand_values"), LAYOUTS)
def test_every_layout_reads_to_the_landmarks_written(tmp_path: Path, order: tuple[str, ...],
                                                     face_points: int, hand_values: int) -> None:
    written = write_mediapipe(tmp_path / "mp", order=order, face_points=face_points,
                              hand_values=hand_values, sequences=1, frames=5)
    reporter = RecordingReporter()
    raw = load_source(f"mediapipe:{tmp_path / 'mp'}", landmarks=ALL, reporter=reporter)
    assert f"in the order {'+'.join(order)}" in " ".join(reporter.named("note"))
    assert raw.classes == ("no", "please", "yes")  # folder names lower-cased
    assert raw.signer is None and raw.num_sequences == 3
    assert {parse_joint(name).part for name in raw.joints} == set(order)
    for i, (folder, parts) in enumerate(sorted(written.items(), key=lambda kv: kv[0].lower())):
        assert raw.classes[raw.y[i]] == folder.split("/")[0].lower()
        want = expected(parts, raw.joints)
        np.testing.assert_array_equal(np.isnan(raw.x[i]), np.isnan(want))
        np.testing.assert_allclose(raw.x[i], want, atol=2e-3, equal_nan=True)  # float16 store


def test_a_stated_layout_wins_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    face_last = ("pose", "left_hand", "right_hand", "face")
    write_mediapipe(tmp_path / "mp", order=face_last, signs=("a", "b"), sequences=1)
    spec = f"mediapipe:{tmp_path / 'mp'}"
    raw = load_source(spec, landmarks="hands", options=ReadOptions(layout="+".join(face_last)))
    stated_wrong = load_source(spec, landmarks="hands",
                               options=ReadOptions(layout="+".join(MP_PART_ORDER)))
    assert not np.allclose(np.nan_to_num(raw.x), np.nan_to_num(stated_wrong.x))
    with pytest.raises(DataError, match="does not fit .* frames of 1662 values"):
        load_source(spec, options=ReadOptions(layout="pose+face"))


def test_signers_from_csv_or_from_top_folders(tmp_path: Path) -> None:
    root = tmp_path / "mp"
    write_mediapipe(root, signs=("yes", "no"), sequences=2)
    with open(root / "signers.csv", "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([["folder", "signer"], ["yes", "ann"], ["NO/0", "bob"],
                                    ["no/1", "cy"]])
    raw = load_source(f"mediapipe:{root}", landmarks="hands")
    assert raw.signer.tolist() == [1, 2, 0, 0]  # no/0 bob, no/1 cy, yes/* ann
    assert raw.signer_names == ("ann", "bob", "cy")  # kept in the corpus cache
    merged = tmp_path / "merged"
    write_mediapipe(merged / "ann", signs=("Yes", "No"), sequences=1)
    write_mediapipe(merged / "bob", signs=("yes", "no"), sequences=1, seed=1)
    raw = load_source(f"mediapipe:{merged}", landmarks="hands",
                      options=ReadOptions(signer_from="top"))
    assert raw.classes == ("no", "yes") and raw.signer.tolist() == [0, 0, 1, 1]
    assert raw.signer_names == ("ann", "bob")


FACE_LAST = ("pose", "left_hand", "right_hand", "face")


def test_signers_recorded_in_different_orders_are_each_read_in_their_own(tmp_path: Path
                                                                          ) -> None:
    merged = tmp_path / "merged"
    ann = write_mediapipe(merged / "ann", signs=("yes", "no"), sequences=2)
    bob = write_mediapipe(merged / "bob", order=FACE_LAST, signs=("yes", "no"), sequences=2,
                          seed=1)
    reporter = RecordingReporter()
    raw = load_source(f"mediapipe:{merged}", landmarks=ALL, reporter=reporter,
                      options=ReadOptions(signer_from="top"))
    note = " ".join(reporter.named("note"))
    assert ("each signer's parts in their own order" in note
            and "pose+face+left_hand+right_hand for ann; pose+left_hand+right_hand+face for bob"
            in note), note
    assert raw.signer_names == ("ann", "bob")
    written = [ann[key] for key in ("no/0", "no/1", "yes/0", "yes/1")]
    written += [bob[key] for key in ("no/0", "no/1", "yes/0", "yes/1")]
    for i, parts in enumerate(written):
        want = expected(parts, raw.joints)
        np.testing.assert_allclose(raw.x[i], want, atol=2e-3, equal_nan=True)


def test_a_signer_whose_order_cannot_be_told_is_named_and_can_state_it(tmp_path: Path) -> None:
    merged = tmp_path / "merged"
    write_mediapipe(merged / "ann", signs=("yes", "no"), sequences=1)
    write_mediapipe(merged / "bob", order=FACE_LAST, signs=("yes", "no"), sequences=1)
    rng = np.random.default_rng(0)
    for frame in sorted((merged / "bob").glob("*/*/*.npy")):  # no part where it should be
        np.save(frame, rng.uniform(0.0, 1.0, size=1662))
    result = CliRunner().invoke(app, ["data", "inspect", f"mediapipe:{merged}",
                                      "--signer-from", "top"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {merged / 'bob'}: cannot tell the order of the "
                                    "parts in its 1662-value frames"), result.stderr
    assert f"hint: State its order in {merged / 'bob' / 'layout.json'}" in result.stderr
    assert len(result.stderr.splitlines()) == 2
    (merged / "bob" / "layout.json").write_text(  # what the hint says to write
        '{"format": "slt mediapipe frames", "layout": "pose+left_hand+right_hand+face"}',
        encoding="utf-8")
    reporter = RecordingReporter()
    raw = load_source(f"mediapipe:{merged}", landmarks="hands", reporter=reporter,
                      options=ReadOptions(signer_from="top"))
    assert raw.signer_names == ("ann", "bob")
    assert "pose+left_hand+right_hand+face for bob" in " ".join(reporter.named("note"))


def bad_tree(root: Path, case: str) -> Path:
    """A small tree with one fault; returns the file the error must name."""
    write_mediapipe(root, signs=("a", "b"), sequences=1, frames=4)
    frame = root / "b" / "0" / "2.npy"
    if case == "mixed lengths":
        np.save(frame, np.zeros(258))
    elif case == "not numbers":
        np.save(frame, np.array(["a"] * 1662))
    elif case == "object array":
        np.save(frame, np.array([{"pickled": 1}], dtype=object), allow_pickle=True)
    elif case == "missing frame":
        frame.unlink()
    elif case in ("infinite", "huge"):
        vector = np.zeros(1662)
        vector[7] = np.inf if case == "infinite" else 1e300
        np.save(frame, vector)
    elif case == "two files":
        np.save(frame.with_name("02.npy"), np.zeros(1662))
        return frame.parent
    elif case == "unknown length":
        frame = root / "a" / "0" / "0.npy"
        for f in range(4):
            np.save(root / "a" / "0" / f"{f}.npy", np.ones(1000))
    return frame


@pytest.mark.parametrize(("case", "words"), [
    ("mixed lengths", "holds 258 values, the other frames 1662"),
    ("not numbers", "not numbers"),
    ("object array", "object array; slt never unpickles"),
    ("missing frame", "missing"),
    ("infinite", "value 7 is inf; coordinates beyond ±1e+06 are not keypoints"),
    ("huge", "value 7 is 1e+300; coordinates beyond"),
    ("two files", "are both frame 2"),
    ("unknown length", "slt knows MediaPipe frames of 1662, 1692, 1704, 258, 126 values"),
])
def test_bad_trees_exit_2_naming_the_file(tmp_path: Path, case: str, words: str) -> None:
    named = bad_tree(tmp_path / "mp", case)
    result = CliRunner().invoke(app, ["data", "inspect", f"mediapipe:{tmp_path / 'mp'}"])
    assert result.exit_code == 2, result.output
    assert f"error: {named}" in result.stderr and words in result.stderr
    assert "Traceback" not in result.output


def real_sample(name: str) -> Path:
    root = REAL / name
    if not root.is_dir():
        pytest.skip(f"{root} is not here (development data beside the project)")
    return root


@pytest.fixture(scope="module")
def real_npz() -> dict[str, np.ndarray]:
    if not (REAL / "mediapipe_dev.npz").is_file():
        pytest.skip(f"{REAL} is not here (development data beside the project)")
    with np.load(REAL / "mediapipe_dev.npz", allow_pickle=False) as npz:
        return {key: npz[key] for key in ("x", "y", "classes", "signer", "joints")}


@pytest.fixture
def _cache_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared samples are not ours to write a cache into."""
    monkeypatch.setenv("SLT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.usefixtures("_cache_elsewhere")
@pytest.mark.parametrize(("sample", "signer", "order"), [
    ("MP_Data_sample_tutorial", 16, "pose+face+left_hand+right_hand"),
    ("MP_Data_sample", 10, "pose+left_hand+right_hand+face"),
])
def test_real_samples_read_to_the_npz_landmarks(sample: str, signer: int, order: str,
                                                real_npz: dict[str, np.ndarray]) -> None:
    reporter = RecordingReporter()
    raw = load_source(f"mediapipe:{real_sample(sample)}", landmarks="hands+pose",
                      reporter=reporter)
    assert f"in the order {order}" in " ".join(reporter.named("note"))
    npz = real_npz
    mine = npz["signer"] == signer
    y, classes = npz["y"][mine], tuple(npz["classes"].tolist())
    columns = [list(npz["joints"]).index(f"{j.part}_{j.index}")
               for j in map(parse_joint, raw.joints)]
    x = npz["x"][mine][:, :, columns]
    for i in range(raw.num_sequences):
        ours = raw.x[i, :raw.lengths[i]]
        label = classes.index(raw.classes[raw.y[i]])
        candidates = np.flatnonzero(y == label)
        gaps = [np.nanmax(np.abs(x[c] - ours)) if (np.isnan(x[c]) == np.isnan(ours)).all()
                else np.inf for c in candidates]
        assert min(gaps) < 2e-3, f"{sample} sequence {i} matches no npz sequence of its class"



def test_a_class_folder_named_with_an_escape_sequence_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "mp"
    write_mediapipe(root, signs=("a", "b\x1b[31mred"), sequences=1, frames=4)
    result = CliRunner().invoke(app, ["data", "inspect", f"mediapipe:{root}"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {root}: a class name holds a control character: "
                                    "'b\\x1b[31mred'")
    assert "\x1b[31m" not in result.output


def test_a_signers_csv_that_is_a_fifo_is_refused_not_taken_for_absent(tmp_path: Path) -> None:
    root = tmp_path / "mp"
    write_mediapipe(root)
    os.mkfifo(root / "signers.csv")
    result = CliRunner().invoke(app, ["data", "inspect", f"mediapipe:{root}"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {root / 'signers.csv'}: a FIFO, not a regular "
                                    "file")
